"""Document understanding for the offline engine: invoices and tables from OCR boxes.

Why this exists: :mod:`shared.offline.engine` turns pixels into text boxes (recognition); this module
turns boxes into structured data (interpretation), so each stays one concern and the parsers work
and are tested without the OCR engine. Every value comes from a recognised box, and every extractor
returns ``None`` rather than a guess (a wrong invoice total is worse than a missing one).

Decisions, and why:

* **Geometry, not language**: lines come from :func:`~shared.offline.engine.group_lines`; table columns
  are the x-ranges that the cells of multi-cell lines cover (vertical gutters separate them); labels
  are matched by patterns (which accept the missing spaces the recogniser produces) and their values
  are read on the same line to the right, or directly below.
* **Values** (dates, amounts, currencies) are read by :mod:`shared.offline.values`; any JSON Schema is
  filled by :mod:`shared.offline.forms` with the label helpers below.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from shared.offline.engine import TextBox, group_lines
from shared.offline.labels import FIELDS, label_pattern
from shared.offline.values import date_order, find_currency, parse_amount, parse_date

# --- label: value -----------------------------------------------------------------------------------


def neighbour_right(box: TextBox, line: list[TextBox]) -> TextBox | None:
    """The next box to the right on the same line, if the gap is under ten line heights."""
    after = [b for b in line if b.left >= box.right - 0.5 * box.height and b is not box]
    nearest = min(after, key=lambda b: b.left, default=None)
    return nearest if nearest is not None and nearest.left - box.right < 10 * box.height else None


def neighbour_below(box: TextBox, lines: list[list[TextBox]], index: int) -> TextBox | None:
    """The box on the next line that overlaps ``box`` horizontally the most, if the gap is small."""
    if index + 1 >= len(lines):
        return None
    below = [(min(b.right, box.right) - max(b.left, box.left), b) for b in lines[index + 1]]
    overlap, best = max(below, key=lambda pair: pair[0], default=(0.0, None))
    if best is None or overlap <= 0 or best.top - box.bottom > 1.5 * box.height:
        return None
    return best


def labelled_values(lines: list[list[TextBox]], label: re.Pattern[str], *, below: bool = True,
                    skip: frozenset[int] = frozenset()) -> list[tuple[TextBox, list[tuple[str, TextBox]]]]:
    """For each box starting with ``label``, in page order: the label box and its value candidates.

    Candidates, best first: the rest of the label's own box, the box to its right, and (if ``below``) the
    box directly under it; the caller keeps the first that parses. Boxes whose ``id`` is in ``skip``
    (table headers and rows) are never labels.
    """
    found = []
    for index, line in enumerate(lines):
        for box in line:
            match = label.match(box.text)
            if match is None or id(box) in skip:
                continue
            rest = box.text[match.end():].strip(" :#.-\t")
            candidates = [(rest, box)] if rest else []
            for other in (neighbour_right(box, line), neighbour_below(box, lines, index) if below else None):
                if other is not None:
                    candidates.append((other.text, other))
            found.append((box, candidates))
    return found


def first_parsed(candidates: list[tuple[str, TextBox]], parse: Any) -> tuple[Any, TextBox] | None:
    """The first candidate ``parse`` accepts, as (value, the box it was read from); None if none does."""
    for text, box in candidates:
        value = parse(text)
        if value is not None:
            return value, box
    return None


def union_box(boxes: list[TextBox], separator: str = " ") -> TextBox:
    """One box around several (a cell OCR split in two, an address over several lines)."""
    left, top = min(b.left for b in boxes), min(b.top for b in boxes)
    right, bottom = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return TextBox(separator.join(b.text for b in boxes), min(b.confidence for b in boxes),
                   ((left, top), (right, top), (right, bottom), (left, bottom)))


# --- tables -----------------------------------------------------------------------------------------


def column_spans(lines: list[list[TextBox]]) -> list[tuple[float, float]]:
    """X-ranges covered by the cells of multi-cell lines, merged where they overlap: one per column."""
    intervals = sorted((b.left, b.right) for line in lines if len(line) > 1 for b in line)
    spans: list[list[float]] = []
    for left, right in intervals:
        if spans and left < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], right)
        else:
            spans.append([left, right])
    return [(left, right) for left, right in spans]


def _column_of(box: TextBox, spans: list[tuple[float, float]]) -> int:
    overlaps = [min(box.right, r) - max(box.left, left) for left, r in spans]
    best = max(range(len(spans)), key=lambda i: overlaps[i])
    if overlaps[best] > 0:
        return best
    return min(range(len(spans)), key=lambda i: abs(box.center[0] - (spans[i][0] + spans[i][1]) / 2))


def build_table(lines: list[list[TextBox]]) -> tuple[list[str], list[dict[str, TextBox | None]]]:
    """Header names and rows of cell boxes (None for an empty cell) from lines whose first is the header.

    A single-box line that spans several columns (a caption, a note) is not a row.
    """
    spans = column_spans(lines)
    if not spans or not lines:
        return [], []
    grid: list[list[list[TextBox]]] = []
    for line in lines:
        cells: list[list[TextBox]] = [[] for _ in spans]
        for box in line:
            cells[_column_of(box, spans)].append(box)
        crossing = sum(1 for left, right in spans if min(line[0].right, right) - max(line[0].left, left) > 0)
        if len(line) == 1 and crossing > 1:
            continue
        grid.append(cells)
    names: list[str] = []
    for i, cell in enumerate(grid[0]):  # names as the extraction layer makes them: "Column 2", "Qty (2)"
        name = base = " ".join(b.text for b in cell).strip(" :") or f"Column {i + 1}"
        n = 1
        while name in names:
            n += 1
            name = f"{base} ({n})"
        names.append(name)
    rows = []
    for cells in grid[1:]:
        rows.append({name: (union_box(cell) if len(cell) > 1 else cell[0]) if cell else None
                     for name, cell in zip(names, cells, strict=True)})
    return names, rows


def _table_lines(lines: list[list[TextBox]]) -> list[list[TextBox]]:
    """Drop the single-box lines (titles) above the first multi-box line, which is the header."""
    first = next((i for i, line in enumerate(lines) if len(line) > 1), 0)
    return lines[first:]


def table_from_boxes(boxes: list[TextBox]) -> dict[str, Any]:
    """``{"columns": [...], "rows": [{column: text or None}]}`` rebuilt from the boxes' geometry."""
    columns, rows = build_table(_table_lines(group_lines(boxes)))
    return {"columns": columns,
            "rows": [{k: v.text if v else None for k, v in row.items()} for row in rows]}


def table_provenance(boxes: list[TextBox]) -> dict[str, Any]:
    """Provenance for :func:`table_from_boxes`: ``rows[i].<column>`` -> the cell's box."""
    _, rows = build_table(_table_lines(group_lines(boxes)))
    return {f"rows[{i}].{k}": v.as_provenance() for i, row in enumerate(rows) for k, v in row.items() if v}


# --- invoices ---------------------------------------------------------------------------------------


def _label(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"\s*(?:{pattern})(?![a-z])", re.I)


LABELS = {
    # Invoice numbers, dates and amounts in every language of shared.offline.labels (one table per language).
    **{field: label_pattern(field) for field in FIELDS},
    "tax_id": _label(r"vat\s*(?:no\b\.?|number|reg\w*(?:\s*no\b\.?)?|id)|tax\s*(?:id|no\b\.?|number)|tin|ein|abn"),
    # A colon is required after the common words, or "From 1 March" and "Customer No: 12" would be names.
    "vendor": _label(r"(?:from|vendor|seller|supplier)\s*:|sold\s*by|bill\s*from"),
    "customer": _label(r"bill(?:ed)?\s*to|invoice\s*to|sold\s*to|(?:customer|client)\s*:"),
}
_ITEM_FIELDS = (("unit_price", r"unit\s*price|price|rate|unit\s*cost|each"),
                ("quantity", r"qty|quantity|units?|hours|hrs"), ("total", r"(?:line\s*)?total|amount|sum"),
                ("description", r"desc\w*|items?|product|service|details"))
_SUMMARY = ("subtotal", "tax", "total", "amount_due")
_INVOICE_WORDS = re.compile(r"\s*(?:tax\s*)?(?:invoice|receipt|bill|statement)\s*$", re.I)
_REFERENCE = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,39}", re.I)


_CENTS = re.compile(r"\d[.,]\d{2}(?!\d)")


def parse_money(text: str) -> float | None:
    """An amount written as money (with cents: ``120.00``, ``1.589,80``), else None.

    Invoice sums are printed with two decimals; a bare integer next to a "Total" or "Summe" label is a
    quantity, a column number or a count far more often than a sum, and a wrong total is worse than none.
    """
    return parse_amount(text) if _CENTS.search(text) else None


def _reference(text: str) -> str | None:
    match = _REFERENCE.match(text.strip())
    return match[0].rstrip(".") if match and any(c.isdigit() for c in match[0]) else None


def _tax_id(text: str) -> str | None:
    value = text.strip()[:30]
    valid = re.fullmatch(r"[A-Z0-9][A-Z0-9 .-]+", value, re.I) and sum(c.isdigit() for c in value) >= 4
    return value if valid else None


def _line_items(lines: list[list[TextBox]]) -> tuple[list[dict[str, Any]], dict[str, Any], frozenset[int]]:
    """Line items from a table whose header names quantity, unit price and total; else nothing."""
    for start, header in enumerate(lines):
        fields: dict[int, str] = {}
        for i, box in enumerate(header):
            field = next((f for f, p in _ITEM_FIELDS if re.match(rf"\s*(?:{p})\b", box.text, re.I)), None)
            if field and field not in fields.values():
                fields[i] = field
        if len(header) < 3 or not {"quantity", "unit_price", "total"} <= set(fields.values()):
            continue
        end, height = start + 1, statistics.median(b.height for b in header)
        while end < len(lines) and not any(LABELS[f].match(b.text) for b in lines[end] for f in _SUMMARY):
            if min(b.top for b in lines[end]) - max(b.bottom for b in lines[end - 1]) > 3 * height:
                break
            end += 1
        names, rows = build_table(lines[start:end])
        by_name = {names[_column_of(header[i], column_spans(lines[start:end]))]: f for i, f in fields.items()}
        items, provenance = [], {}
        for row in rows:
            item: dict[str, Any] = dict.fromkeys(("description", "quantity", "unit_price", "total"))
            for name, cell in row.items():
                field = by_name.get(name)
                value = None if cell is None or field is None else (
                    cell.text if field == "description" else parse_amount(cell.text))
                if value is not None:
                    item[field] = int(value) if field == "quantity" and float(value).is_integer() else value
                    provenance[f"line_items[{len(items)}].{field}"] = cell.as_provenance()
            if item["description"] is not None or item["total"] is not None:
                items.append(item)
        used = frozenset(id(b) for line in lines[start:end] for b in line)
        return items, provenance, used
    return [], {}, frozenset()


def _party(lines: list[list[TextBox]], name: TextBox) -> TextBox | None:
    """The address under a party's name: up to 4 left-aligned lines right below, until a label."""
    index = next(i for i, line in enumerate(lines) if any(b is name for b in line))
    parts, last = [], name
    for line in lines[index + 1:index + 5]:
        box = next((b for b in line if abs(b.left - name.left) < name.height), None)
        if box is None or box.top - last.bottom > name.height or ":" in box.text or any(
                p.match(box.text) for p in LABELS.values()):
            break
        parts.append(box)
        last = box
    return union_box(parts, ", ") if parts else None


def invoice_from_boxes(boxes: list[TextBox]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Invoice fields found in the OCR boxes (None where not found reliably) and their provenance.

    Provenance maps a field path (``total``, ``vendor.name``, ``line_items[0].total``) to the box the
    value was read from. The vendor's name is the labelled one (From:, Vendor:, Sold by...) or else a
    heading in the first two lines: larger than the median text (x1.15), letters only, not a label and
    not "Invoice". Amounts take the last labelled value on the page (totals come last), other fields
    the first; labels inside the line-item table (its "Total" header) are ignored.
    """
    lines = group_lines(boxes)
    items, provenance, table = _line_items(lines)
    order = date_order([b.text for b in boxes])
    parsers: dict[str, Any] = {
        "invoice_number": _reference,
        "invoice_date": lambda t: parse_date(t, day_first=order), "due_date": lambda t: parse_date(t, day_first=order),
        "subtotal": parse_money, "tax": parse_money, "total": parse_money, "amount_due": parse_money,
        "tax_id": _tax_id, "vendor": lambda t: t.strip() or None, "customer": lambda t: t.strip() or None,
    }
    found: dict[str, tuple[Any, TextBox]] = {}
    for field, parse in parsers.items():
        hits = [hit for _, candidates in labelled_values(lines, LABELS[field], skip=table)
                if (hit := first_parsed(candidates, parse)) is not None]
        if hits:  # amounts: the last on the page (totals come last); the rest: the first
            found[field] = hits[-1] if field in _SUMMARY else hits[0]
    if "total" not in found and "amount_due" in found:
        found["total"] = found["amount_due"]
    if "vendor" not in found and boxes:
        body = statistics.median(b.height for b in boxes)
        heading = next((b for line in lines[:2] for b in line if b.height >= 1.15 * body and ":" not in b.text
                        and re.fullmatch(r"[^\d]*[a-z]{2}[^\d]*", b.text, re.I) and not _INVOICE_WORDS.match(b.text)
                        and not any(p.match(b.text) for p in LABELS.values())), None)
        if heading is not None:
            found["vendor"] = (heading.text, heading)
    currency, currency_box = find_currency(boxes)
    if currency_box is not None:
        found["currency"] = (currency, currency_box)
    for party in ("vendor", "customer"):
        if party in found and (address := _party(lines, found[party][1])) is not None:
            found[f"{party}_address"] = (address.text, address)

    def take(field: str, path: str) -> Any:
        if field not in found:
            return None
        value, box = found[field]
        provenance[path] = box.as_provenance()
        return value

    data = {
        "vendor": {"name": take("vendor", "vendor.name"), "address": take("vendor_address", "vendor.address"),
                   "tax_id": take("tax_id", "vendor.tax_id")},
        "customer": {"name": take("customer", "customer.name"),
                     "address": take("customer_address", "customer.address")},
        "invoice_number": take("invoice_number", "invoice_number"),
        "invoice_date": take("invoice_date", "invoice_date"), "due_date": take("due_date", "due_date"),
        "line_items": items, "subtotal": take("subtotal", "subtotal"), "tax": take("tax", "tax"),
        "total": take("total", "total"), "currency": take("currency", "currency"),
    }
    return data, provenance
