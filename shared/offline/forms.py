"""Any JSON Schema filled from OCR boxes by the offline engine: ``label: value`` text matched to properties.

Only top-level scalar properties are filled, and only from a label whose words are close to the
property's name or title; every value must coerce to the property's type, format, enum and pattern,
else it stays null (see :func:`fill_schema_from_boxes`). Labels are found with the helpers of
:mod:`shared.offline.documents`, values read by :mod:`shared.offline.values`.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from shared.offline.documents import first_parsed, neighbour_below, neighbour_right
from shared.offline.engine import TextBox, group_lines
from shared.offline.values import date_order, parse_amount, parse_date

_ABBREVIATIONS = {"no": "number", "nr": "number", "num": "number", "qty": "quantity", "amt": "amount",
                  "tel": "phone", "addr": "address", "ref": "reference", "dob": "date of birth"}
_MATCH = 0.85
_BOOLEANS = {"yes": True, "y": True, "true": True, "x": True, "✓": True, "no": False, "n": False, "false": False}


def _forms(text: str) -> set[str]:
    """A label or property name as plain words (camelCase and snake_case split, abbreviations expanded),
    and squeezed without spaces, because the recogniser often drops spaces ("VATNo")."""
    tokens = re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text).replace("#", " no ").lower())
    words = " ".join(_ABBREVIATIONS.get(t, t) for t in tokens)
    return {form for form in (words, "".join(tokens)) if form}


def _label_score(label: str, names: list[str]) -> float:
    pairs = [(a, b) for a in _forms(label) for name in names for b in _forms(name)]
    return max((difflib.SequenceMatcher(None, a, b).ratio() for a, b in pairs), default=0.0)


def _scalar(prop: dict[str, Any]) -> dict[str, Any] | None:
    """The property's single non-null scalar branch (``type`` or ``anyOf``), else None."""
    branches = prop.get("anyOf") or [prop]
    scalars = []
    for branch in branches:
        types = branch.get("type") if isinstance(branch, dict) else None
        types = [types] if isinstance(types, str) else list(types or [])
        outer = {k: v for k, v in prop.items() if k != "anyOf"}  # a description around the anyOf counts
        scalars += [{**outer, **branch, "type": t} for t in types if t != "null"]
    kept = [s for s in scalars if s["type"] in ("string", "number", "integer", "boolean")]
    return kept[0] if len(kept) == 1 == len(scalars) else None


def _is_date(spec: dict[str, Any]) -> bool:
    """``format: date``, also in the strict form sent to models, which moves it into the description."""
    return spec.get("format") == "date" or bool(re.search(r'\bformat "date"', str(spec.get("description", ""))))


def _coerce(text: str, spec: dict[str, Any], order: bool | None) -> Any:
    kind, text = spec["type"], text.strip()
    if kind == "boolean":
        return _BOOLEANS.get(text.lower())
    if kind in ("number", "integer"):
        value = parse_amount(text)
        if kind == "integer":
            return int(value) if value is not None and value.is_integer() else None
        return value
    value: Any = parse_date(text, day_first=order) if _is_date(spec) else text or None
    if value is not None and "enum" in spec:
        value = next((e for e in spec["enum"] if isinstance(e, str) and e.lower() == value.lower()), None)
    if value is not None and "pattern" in spec and not re.search(spec["pattern"], value):
        return None
    return value


def _empty(prop: Any) -> Any:
    """What an unfilled property becomes: [] for arrays, an object of empties for objects, else None."""
    kind = prop.get("type") if isinstance(prop, dict) else None
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    if "array" in kinds and "null" not in kinds:
        return []
    if "object" in kinds and "null" not in kinds:
        return {k: _empty(v) for k, v in (prop.get("properties") or {}).items()}
    return None


def fill_schema_from_boxes(schema: dict[str, Any], boxes: list[TextBox]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Top-level scalar properties filled from ``label: value`` text whose label matches the property.

    A label matches when its words (``Invoice No.`` -> "invoice number") are close to the property's
    name or title (ratio >= 0.85). Labels with a colon take the rest of their box, the box to the right
    or the one below; labels without take only the box to the right, and for a plain string only on a
    two-box line (else a table header would give its neighbour header as the value). The value must
    coerce to the property's type, format (``date``), enum and pattern; two equally good labels
    disagreeing give null.
    """
    lines = group_lines(boxes)
    order = date_order([b.text for b in boxes])
    labelled: list[tuple[str, list[tuple[str, TextBox]], bool]] = []  # label, candidates, any string ok
    for index, line in enumerate(lines):
        for box in line:
            label, colon, rest = box.text.partition(":")
            if colon and rest.strip():
                labelled.append((label, [(rest, box)], True))
            elif colon or len(box.text) <= 40:
                after = [neighbour_right(box, line), neighbour_below(box, lines, index) if colon else None]
                labelled.append((label, [(b.text, b) for b in after if b is not None], bool(colon) or len(line) == 2))
    data: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        spec = _scalar(prop) if isinstance(prop, dict) else None
        data[name] = _empty(prop)
        if spec is None:
            continue
        names = [name, str(prop.get("title") or "")]
        scored = []
        free_text = spec["type"] == "string" and not ({"enum", "pattern"} & spec.keys() or _is_date(spec))
        for label, candidates, strings_ok in labelled:
            score = _label_score(label, names) if strings_ok or not free_text else 0.0
            hit = first_parsed(candidates, lambda t, s=spec: _coerce(t, s, order)) if score >= _MATCH else None
            if hit is not None:
                scored.append((score, hit))
        if not scored:
            continue
        best = max(score for score, _ in scored)
        values = {repr(hit[0]) for score, hit in scored if score == best}
        if len(values) == 1:
            value, box = next(hit for score, hit in scored if score == best)
            data[name] = value
            provenance[name] = box.as_provenance()
    return data, provenance
