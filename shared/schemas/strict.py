"""A caller's JSON Schema, made into what Azure OpenAI strict structured outputs accept, and checked after.

Strict mode (``response_format`` ``json_schema`` with ``strict: true``; api-version 2024-10-21,
gpt-4o 2024-08-06) takes a subset of JSON Schema. What the Azure docs ("Structured outputs:
supported schemas and limitations") and OpenAI's guide they defer to say, and what we do:

* **Every property required, ``additionalProperties: false`` on every object.** A property the
  caller left optional becomes nullable instead (``"type": [t, "null"]``, or ``anyOf`` with
  ``{"type": "null"}`` around enums, consts and ``$ref``): null is the model's only way to say
  "absent". :meth:`CompiledSchema.check` drops those nulls again, so the data we return is valid
  against the caller's own schema.
* **Unsupported assertions are stripped, and kept**: ``minLength maxLength pattern format minimum
  maximum exclusiveMinimum exclusiveMaximum multipleOf minItems maxItems uniqueItems contains
  minContains maxContains minProperties maxProperties propertyNames`` and ``not if then else
  dependentRequired``. Removing an assertion only widens what the model may produce; the local
  validator runs the *original* schema, so a violation still fails and becomes a re-ask carrying the
  error. The constraint is also appended to the property's ``description`` so the model can aim for it.
* **Refused, naming the keyword and its JSON pointer** (:class:`SchemaRefused`, a 400): what would
  change the *shape* strict mode can generate, where no local check can make up for it:
  ``patternProperties``, ``additionalProperties`` other than false (free-form keys), ``prefixItems``
  and array-form ``items`` (tuples), ``unevaluated*``, ``dependentSchemas``, ``allOf``, objects
  without ``properties``, arrays without ``items``, schemas without a ``type``, non-local or
  non-``$defs`` ``$ref``, nested ``$defs``, ``$anchor``/``$dynamicRef``, unknown keywords (typos
  such as ``requried`` would otherwise do nothing). ``oneOf`` is sent as ``anyOf`` (exclusivity is
  checked locally). The root must be an object, not ``anyOf``.
* **Safe to run**: patterns are matched by RE2 in linear time, and one RE2 cannot compile is refused;
  ``$ref`` loops that never reach a value are refused (:mod:`shared.schemas.safety`), both naming the
  pointer. Checking a reply is CPU work: :mod:`shared.extraction` runs it off the event loop.
* **Limits** (:mod:`shared.schemas.limits`): 100 object properties in total, 5 levels of object
  nesting, 500 enum values and 15,000 characters of names and strings; too deep is refused naming the
  pointer of the deepest object.

Conversion is cached per SHA-256 of the schema's canonical JSON (keys sorted, except the order of
``properties``, which decides the order the model writes them in), together with the compiled
jsonschema validator, so a schema used on every request is converted and compiled once per process.
The cached dicts are shared: treat them as read-only.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError

from shared.errors import InvalidParameter
from shared.schemas.limits import SchemaTooLarge, check_limits
from shared.schemas.pointers import pointer, resolve_local
from shared.schemas.safety import UnsafeSchema, linear_time_validator, refuse_unsafe

MAX_SCHEMA_CHARS = 100_000  # our own bound on what a caller may send
MAX_ERRORS = 20

STRIPPED = frozenset({
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "uniqueItems", "contains", "minContains",
    "maxContains", "minProperties", "maxProperties", "propertyNames", "not", "if", "then", "else",
    "dependentRequired",
})
_HINTED = STRIPPED - {"contains", "propertyNames", "not", "if", "then", "else", "dependentRequired"}
_DROPPED = frozenset({"default", "examples", "$comment", "readOnly", "writeOnly", "deprecated",
                      "contentEncoding", "contentMediaType", "$schema"})
_REFUSED = {
    "patternProperties": "keys matching a pattern cannot be generated in strict mode; list the properties",
    "unevaluatedProperties": "is not supported in strict mode",
    "unevaluatedItems": "is not supported in strict mode",
    "prefixItems": "tuples are not supported in strict mode; use an object",
    "additionalItems": "tuples are not supported in strict mode; use an object",
    "dependentSchemas": "conditional shapes are not supported in strict mode",
    "dependencies": "conditional shapes are not supported in strict mode",
    "allOf": "is not supported in strict mode; merge the schemas into one",
    "$anchor": "is not supported; use $defs and #/$defs/... references",
    "$dynamicRef": "is not supported; use $defs and #/$defs/... references",
    "$dynamicAnchor": "is not supported; use $defs and #/$defs/... references",
    "$recursiveRef": "is not supported; use $defs and #/$defs/... references",
    "$recursiveAnchor": "is not supported; use $defs and #/$defs/... references",
}
_STRUCTURAL = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                         "anyOf", "oneOf", "$ref", "$defs", "definitions", "description", "title", "$id"})


class SchemaRefused(InvalidParameter):
    """A 400 naming the schema keyword and where it is (a JSON pointer into the caller's schema)."""

    def __init__(self, pointer: str, keyword: str, reason: str) -> None:
        where = pointer or "the root"
        super().__init__("schema", f"{keyword!r} at {where}: {reason}")
        self.context.update(keyword=keyword, pointer=pointer or "/")
        self.keyword, self.pointer = keyword, pointer or "/"


def _canonical(node: Any, *, schema: bool = True) -> Any:
    """Keys sorted (so equal schemas hash equal) except the names in ``properties``, whose order matters."""
    if isinstance(node, list):
        return [_canonical(item, schema=schema) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key in sorted(node):
        value = node[key]
        if schema and key == "properties" and isinstance(value, dict):
            out[key] = {name: _canonical(sub) for name, sub in value.items()}
        elif schema and key in ("$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: _canonical(value[name]) for name in sorted(value)}
        elif key in ("enum", "const", "default", "examples"):
            out[key] = _canonical(value, schema=False)
        else:
            out[key] = _canonical(value, schema=schema)
    return out


def canonical_json(schema: Any) -> str:
    """The canonical JSON text of a schema; refuses non-objects and oversized or absurdly deep input."""
    if not isinstance(schema, dict):
        raise InvalidParameter("schema", f"must be a JSON object; got {type(schema).__name__}")
    try:
        text = json.dumps(_canonical(schema), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise InvalidParameter("schema", "is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise InvalidParameter("schema", f"is not JSON: {exc}") from None
    if len(text) > MAX_SCHEMA_CHARS:
        raise InvalidParameter("schema", f"is {len(text)} characters long; the limit is {MAX_SCHEMA_CHARS}")
    return text


def schema_hash(schema: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON: the schema's identity in cache keys."""
    return hashlib.sha256(canonical_json(schema).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CompiledSchema:
    """One caller schema: its hash, the strict form to send, and the validator of the original."""

    hash: str
    original: dict[str, Any]
    strict: dict[str, Any]
    stripped: tuple[str, ...]  # JSON pointers of constraints only we check
    validator: Any

    def errors(self, instance: Any) -> list[str]:
        """Readable violations of the ORIGINAL schema (``$.path: message``), at most ``MAX_ERRORS``."""
        found = sorted(self.validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
        return [f"{e.json_path}: {e.message[:300]}" for e in found[:MAX_ERRORS]]

    def check(self, reply: Any) -> tuple[Any, list[str]]:
        """The model's reply with "absent" nulls dropped, and its violations of the original schema."""
        data = self._prune(self.original, reply, 0)
        return data, self.errors(data)

    def _resolve(self, node: Any) -> Any:
        for _ in range(16):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node
            node = resolve_local(self.original, node["$ref"])
        return node

    def _prune(self, node: Any, value: Any, depth: int) -> Any:
        node = self._resolve(node)
        if not isinstance(node, dict) or depth > 64:
            return value
        if isinstance(value, dict) and isinstance(node.get("properties"), dict):
            required = set(node.get("required") or ())
            out = {}
            for name, item in value.items():
                sub = node["properties"].get(name)
                if item is None and sub is not None and name not in required and not self._accepts(sub, None):
                    continue  # the model's "absent": the original schema never allowed null here
                out[name] = self._prune(sub, item, depth + 1) if sub is not None else item
            return out
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [self._prune(node["items"], item, depth + 1) for item in value]
        for key in ("anyOf", "oneOf"):
            for branch in node.get(key) or ():
                candidate = self._prune(branch, value, depth + 1)
                if self._accepts(branch, candidate):
                    return candidate
        return value

    def _accepts(self, node: Any, value: Any) -> bool:
        return bool(self.validator.evolve(schema=node).is_valid(value))


class _Converter:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.stripped: list[str] = []

    def convert(self, node: Any, path: list[str], *, optional: bool = False) -> dict[str, Any]:
        where = pointer(path)
        if not isinstance(node, dict):
            raise SchemaRefused(where, "schema", "boolean schemas (true/false) are not supported; give a type")
        out: dict[str, Any] = {}
        hints: list[str] = []
        for key, value in node.items():
            if key in _DROPPED or key.startswith("x-"):
                continue
            if key in STRIPPED:
                self.stripped.append(pointer([*path, key]))
                if key in _HINTED:
                    hints.append(f"{key} {json.dumps(value, ensure_ascii=False)}")
                continue
            if key in _REFUSED:
                raise SchemaRefused(pointer([*path, key]), key, _REFUSED[key])
            if key not in _STRUCTURAL:
                raise SchemaRefused(pointer([*path, key]), key, "unknown keyword (misspelt?)")
        if "$id" in node and path:
            raise SchemaRefused(pointer([*path, "$id"]), "$id", "is only allowed at the root")
        for key in ("$defs", "definitions"):
            if key in node and path:
                raise SchemaRefused(pointer([*path, key]), key, "put definitions at the root")
        if "$ref" in node:
            out = self._ref(node, path)
        else:
            self._shape(node, path, out)
        if "title" in node and "$ref" not in node:
            out["title"] = node["title"]
        description = node.get("description")
        if hints:
            note = "Must satisfy: " + ", ".join(hints) + "."
            description = f"{description} ({note})" if description else note
        if description and "$ref" not in node:
            out["description"] = description
        return _nullable(out) if optional else out

    def _ref(self, node: dict[str, Any], path: list[str]) -> dict[str, Any]:
        ref = node["$ref"]
        where = pointer([*path, "$ref"])
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith(("#/$defs/", "#/definitions/"))):
            raise SchemaRefused(where, "$ref", f"only '#' and '#/$defs/...' references are supported; got {ref!r}")
        if resolve_local(self.root, ref) is None:
            raise SchemaRefused(where, "$ref", f"{ref!r} does not resolve inside the schema")
        others = set(node) & (_STRUCTURAL - {"$ref", "description", "title"})
        if others:
            keyword = sorted(others)[0]
            raise SchemaRefused(pointer([*path, keyword]), keyword, "cannot be combined with $ref; use anyOf")
        return {"$ref": ref}

    def _shape(self, node: dict[str, Any], path: list[str], out: dict[str, Any]) -> None:
        types = node.get("type")
        type_set = {types} if isinstance(types, str) else set(types or ())
        unions = [key for key in ("anyOf", "oneOf") if key in node]
        if not type_set and not unions and "enum" not in node and "const" not in node:
            raise SchemaRefused(pointer(path), "type", "every schema needs a type (or anyOf, enum, const, $ref)")
        if len(unions) > 1:
            raise SchemaRefused(pointer([*path, "oneOf"]), "oneOf", "give either anyOf or oneOf, not both")
        if types is not None:
            out["type"] = types
        for key in ("enum", "const"):
            if key in node:
                out[key] = node[key]
        if unions:
            branches = node[unions[0]]
            out["anyOf"] = [self.convert(b, [*path, unions[0], str(i)]) for i, b in enumerate(branches)]
        if "object" in type_set or "properties" in node:
            self._object(node, path, out)
        if "array" in type_set or "items" in node:
            items = node.get("items")
            if not isinstance(items, dict):
                tuple_form = isinstance(items, list)
                reason = "tuples are not supported; give one schema" if tuple_form else "say what the items are"
                raise SchemaRefused(pointer([*path, "items"]), "items", reason)
            out["items"] = self.convert(items, [*path, "items"])

    def _object(self, node: dict[str, Any], path: list[str], out: dict[str, Any]) -> None:
        properties = node.get("properties")
        if not isinstance(properties, dict):
            raise SchemaRefused(pointer(path), "properties",
                                "objects need their properties listed (strict mode has no free-form objects)")
        extra = node.get("additionalProperties", False)
        if extra is not False:
            raise SchemaRefused(pointer([*path, "additionalProperties"]), "additionalProperties",
                                "only false is supported: strict mode cannot generate keys it was not given")
        required = node.get("required") or []
        unknown = [name for name in required if name not in properties]
        if unknown:
            raise SchemaRefused(pointer([*path, "required"]), "required",
                                f"names {unknown[0]!r}, which is not in properties")
        out["properties"] = {
            name: self.convert(sub, [*path, "properties", name], optional=name not in required)
            for name, sub in properties.items()
        }
        out["required"] = list(properties)
        out["additionalProperties"] = False


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Let an optional property be null, the strict-mode way to leave it out."""
    types = schema.get("type")
    plain = "enum" not in schema and "const" not in schema and "$ref" not in schema and "anyOf" not in schema
    if plain and isinstance(types, str) and types != "null":
        return {**schema, "type": [types, "null"]}
    if plain and isinstance(types, list):
        return schema if "null" in types else {**schema, "type": [*types, "null"]}
    if "anyOf" in schema and set(schema) <= {"anyOf", "description", "title"}:
        if any(branch.get("type") == "null" for branch in schema["anyOf"]):
            return schema
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    if types == "null":
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


@functools.lru_cache(maxsize=256)
def _compile(canonical: str) -> CompiledSchema:
    original = json.loads(canonical)
    validator_class = validators.validator_for(original, default=Draft202012Validator)
    try:
        validator_class.check_schema(original)
    except SchemaError as exc:
        where = pointer([str(p) for p in exc.absolute_path]) or "the root"
        raise InvalidParameter("schema", f"is not a valid JSON Schema at {where}: {exc.message[:300]}") from None
    if original.get("type") != "object" or "anyOf" in original or "oneOf" in original:
        raise SchemaRefused("", "type", 'the root must be {"type": "object", "properties": {...}}')
    converter = _Converter(original)
    strict = converter.convert(original, [])
    for key in ("$defs", "definitions"):
        if isinstance(original.get(key), dict):
            strict[key] = {name: converter.convert(sub, [key, name]) for name, sub in original[key].items()}
    try:
        refuse_unsafe(original)  # patterns RE2 cannot take, $ref loops (shared.schemas.safety)
    except UnsafeSchema as exc:
        raise SchemaRefused(exc.pointer, exc.keyword, exc.reason) from None
    try:
        check_limits(strict)  # Azure's and OpenAI's size limits (shared.schemas.limits)
    except SchemaTooLarge as exc:
        if exc.pointer is None:
            raise InvalidParameter("schema", exc.reason) from None
        raise SchemaRefused(exc.pointer, exc.keyword, exc.reason) from None
    validator_class = linear_time_validator(validator_class)
    validator = validator_class(original, format_checker=validator_class.FORMAT_CHECKER)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return CompiledSchema(digest, original, strict, tuple(converter.stripped), validator)


def compile_schema(schema: dict[str, Any]) -> CompiledSchema:
    """The cached :class:`CompiledSchema` of a caller's schema; raises :class:`InvalidParameter` (400)."""
    try:
        return _compile(canonical_json(schema))
    except RecursionError:
        raise InvalidParameter("schema", "is nested too deeply") from None


def to_strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The strict form to send as ``json_schema.schema`` (cached per hash; do not mutate it)."""
    return compile_schema(schema).strict


def validate_instance(schema: dict[str, Any], instance: Any) -> list[str]:
    """Violations of the caller's ORIGINAL schema, stripped constraints included; [] when valid."""
    return compile_schema(schema).errors(instance)
