"""What makes a caller's JSON Schema safe to run on every request: linear-time patterns, no ``$ref`` loops.

A caller's ``pattern`` (and ``patternProperties`` key) would otherwise run on Python's backtracking
``re``: ``^(a+)+$`` against thirty ``a`` and a ``b`` takes minutes. Here every pattern is compiled
with RE2 (``google-re2``), which matches in time linear in the input, and a pattern RE2 cannot
compile (lookarounds, backreferences) is refused with a 400 naming its JSON pointer
(:func:`refuse_unsafe`). :func:`linear_time_validator` is the jsonschema validator class whose
``pattern`` and ``patternProperties`` keywords use those compiled patterns.

``$ref`` chains that come back to where they started without descending into the instance
(``a -> b -> a``, or a union branch that refers to its own schema) make a validator recurse until
``RecursionError``; they are refused too, naming the ``$ref`` that closes the loop.

Validation is still CPU work: callers run it in a worker thread (:mod:`shared.extraction`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import re2
from jsonschema import validators
from jsonschema.exceptions import ValidationError

from shared.schemas.pointers import pointer, ref_path

#: Keywords whose value is one subschema applied to the SAME instance (a loop through them never ends).
_SAME_INSTANCE = ("not", "if", "then", "else")
_SAME_INSTANCE_LISTS = ("anyOf", "oneOf", "allOf")
#: Keywords whose value is one subschema applied to a part of the instance.
_DESCENDING = ("items", "additionalProperties", "additionalItems", "contains", "propertyNames",
               "unevaluatedItems", "unevaluatedProperties")
_DESCENDING_MAPS = ("properties", "patternProperties", "dependentSchemas")
_DEFINITIONS = ("$defs", "definitions")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


class UnsafeSchema(Exception):
    """What :func:`refuse_unsafe` found: the JSON pointer, the keyword and why (the caller makes it a 400)."""

    def __init__(self, pointer: str, keyword: str, reason: str) -> None:
        super().__init__(f"{keyword} at {pointer or '/'}: {reason}")
        self.pointer, self.keyword, self.reason = pointer, keyword, reason


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The RE2 form of a JSON Schema pattern; raises ``re2.error`` when RE2 cannot take it."""
    return re2.compile(pattern, _OPTIONS)


def subschemas(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every schema object in ``node`` with its path, ``node`` first (data under enum/const is not visited)."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key in (*_SAME_INSTANCE, *_DESCENDING):
        yield from subschemas(node.get(key), (*path, key))
    for key in (*_SAME_INSTANCE_LISTS, "items", "prefixItems"):
        if isinstance(node.get(key), list):
            for index, item in enumerate(node[key]):
                yield from subschemas(item, (*path, key, str(index)))
    for key in (*_DESCENDING_MAPS, *_DEFINITIONS):
        if isinstance(node.get(key), dict):
            for name, item in node[key].items():
                yield from subschemas(item, (*path, key, name))


def _check_patterns(root: dict[str, Any]) -> None:
    for path, node in subschemas(root):
        found = [((*path, "pattern"), "pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
        keys = node["patternProperties"] if isinstance(node.get("patternProperties"), dict) else {}
        found += [((*path, "patternProperties", key), "patternProperties", key) for key in keys]
        for where, keyword, pattern in found:
            try:
                compile_pattern(pattern)
            except re2.error as exc:
                raw = exc.args[0] if exc.args else exc
                reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                raise UnsafeSchema(pointer(where), keyword,
                                   f"{pattern!r} cannot be matched in linear time ({reason}); lookarounds and "
                                   "backreferences are not supported") from None


def _same_instance_edges(path: tuple[str, ...], node: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path of a schema applied to the same instance, the keyword's pointer that leads there)."""
    ref = node.get("$ref")
    if isinstance(ref, str) and (target := ref_path(ref)) is not None:
        yield target, pointer((*path, "$ref"))
    for key in _SAME_INSTANCE:
        if isinstance(node.get(key), dict):
            yield (*path, key), pointer((*path, key))
    for key in _SAME_INSTANCE_LISTS:
        for index, item in enumerate(node.get(key) if isinstance(node.get(key), list) else ()):
            if isinstance(item, dict):
                yield (*path, key, str(index)), pointer((*path, key, str(index)))


def _check_ref_loops(root: dict[str, Any]) -> None:
    nodes = dict(subschemas(root))
    done: set[tuple[str, ...]] = set()

    def visit(path: tuple[str, ...], active: dict[tuple[str, ...], None]) -> None:
        active[path] = None
        for target, via in _same_instance_edges(path, nodes[path]):
            if target in active:
                cycle = [*list(active)[list(active).index(target):], target]
                shown = " -> ".join(pointer(p) or "#" for p in cycle)
                raise UnsafeSchema(via, "$ref", f"the references form a loop that never reaches a value ({shown})")
            if target in nodes and target not in done:
                visit(target, active)
        del active[path]
        done.add(path)

    for path in nodes:
        if path not in done:
            visit(path, {})


def refuse_unsafe(schema: dict[str, Any]) -> None:
    """Raise :class:`UnsafeSchema` for a pattern RE2 cannot compile or a ``$ref`` loop; else nothing."""
    _check_patterns(schema)
    _check_ref_loops(schema)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not compile_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
                        ) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if compile_pattern(pattern).search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


@functools.cache
def linear_time_validator(validator_class: type) -> type:
    """``validator_class`` with ``pattern`` and ``patternProperties`` matched by RE2."""
    return validators.extend(validator_class, {"pattern": _pattern, "patternProperties": _pattern_properties})
