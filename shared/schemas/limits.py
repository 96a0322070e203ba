"""The size limits of Azure OpenAI strict structured outputs, checked before a schema is sent.

Why a module of its own: the limits are counted on the strict form, through ``$ref`` s, with the path to
the offending object, which is a walk of its own; :mod:`shared.schemas.strict` keeps to converting and
validating. The figures come from the Azure docs ("Structured outputs: supported schemas and
limitations") and OpenAI's guide they defer to: 100 object properties in total, 5 levels of object
nesting (root = 1; arrays and unions add no level; a recursive ``$ref`` is followed once), 500 enum
values and 15,000 characters of property names, definition names, enum and const strings.

Errors are :class:`SchemaTooLarge`, which :mod:`shared.schemas.strict` turns into its 400s (like
:mod:`shared.schemas.safety`'s ``UnsafeSchema``); of ours it needs only :mod:`shared.schemas.pointers`.
"""

from __future__ import annotations

from typing import Any

from shared.schemas.pointers import pointer, resolve_local

MAX_DEPTH = 5
MAX_PROPERTIES = 100
MAX_ENUM_VALUES = 500
MAX_STRING_CHARS = 15_000

#: Levels of object nesting under a node, and the path (JSON pointer tokens) to its deepest object.
Found = tuple[int, list[str]]


class SchemaTooLarge(Exception):
    """Over one of the limits: ``pointer`` (a JSON pointer, ``None`` for totals) says where, ``keyword`` what."""

    def __init__(self, pointer: str | None, keyword: str, reason: str) -> None:
        super().__init__(reason)
        self.pointer, self.keyword, self.reason = pointer, keyword, reason


def check_limits(strict: dict[str, Any]) -> None:
    """Raise :class:`SchemaTooLarge` if the strict form is over a limit (each definition counted once)."""
    properties = enums = chars = 0
    stack: list[Any] = [strict]
    for key in ("$defs", "definitions"):
        chars += sum(len(name) for name in strict.get(key, {}))
        stack.extend(strict.get(key, {}).values())
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("properties"), dict):
            properties += len(node["properties"])
            chars += sum(len(name) for name in node["properties"])
            stack.extend(node["properties"].values())
        values = node["enum"] if isinstance(node.get("enum"), list) else []
        enums += len(values)
        chars += sum(len(v) for v in values if isinstance(v, str))
        chars += len(node["const"]) if isinstance(node.get("const"), str) else 0
        stack.append(node.get("items"))
        stack.extend(node.get("anyOf") or ())
    for count, limit, what, keyword in (
        (properties, MAX_PROPERTIES, "object properties", "properties"),
        (enums, MAX_ENUM_VALUES, "enum values", "enum"),
        (chars, MAX_STRING_CHARS, "characters of names, enum and const values", "properties"),
    ):
        if count > limit:
            raise SchemaTooLarge(None, keyword, f"has {count} {what}; strict structured outputs allow at most {limit}")
    depth, where = _depth(strict, strict, {}, frozenset())
    if depth > MAX_DEPTH:
        reason = f"objects are nested {depth} levels deep; strict structured outputs allow {MAX_DEPTH}"
        raise SchemaTooLarge(pointer(where), "properties", reason)


def _depth(root: dict[str, Any], node: Any, memo: dict[str, Found], active: frozenset[str]) -> Found:
    """Levels of object nesting under ``node`` and the path to the deepest object (through $refs).

    Objects count, arrays and unions do not; a reference already being expanded counts 0 (so a
    recursive schema is followed once), and each reference is measured once (``memo``).
    """
    if not isinstance(node, dict):
        return 0, []
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in active:
            return 0, []
        if ref not in memo:
            memo[ref] = _depth(root, resolve_local(root, ref), memo, active | {ref})
        return memo[ref]
    best: Found = (0, [])
    children = [(["items"], node.get("items"))]
    children += [(["anyOf", str(i)], branch) for i, branch in enumerate(node.get("anyOf") or ())]
    for tokens, child in children:
        levels, path = _depth(root, child, memo, active)
        if levels > best[0]:
            best = (levels, [*tokens, *path])
    if isinstance(node.get("properties"), dict):
        inner: Found = (0, [])
        for name, sub in node["properties"].items():
            levels, path = _depth(root, sub, memo, active)
            if levels > inner[0]:
                inner = (levels, ["properties", name, *path])
        if inner[0] + 1 > best[0]:
            best = (inner[0] + 1, inner[1])
    return best
