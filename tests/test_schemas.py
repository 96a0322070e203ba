"""Caller JSON Schemas to Azure's strict subset: conversions, refusals naming keyword and pointer, limits,
caching per hash, and validation against the original schema (stripped constraints still enforced)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from shared.errors import InvalidParameter
from shared.extraction import Invoice, TableGrid, model_format
from shared.multi import Synthesis
from shared.schemas import (
    SchemaRefused,
    compile_schema,
    schema_hash,
    to_strict_schema,
    validate_instance,
)
from shared.schemas import strict as schemas

RECEIPT = json.loads((Path(__file__).parent / "fixtures" / "extraction" / "receipt.schema.json").read_text())


def test_nested_objects_arrays_optional_refs_and_enums_convert():
    strict = to_strict_schema(RECEIPT)
    assert strict == {
        "title": "receipt",
        "type": "object",
        "properties": {
            "merchant": {"type": "string", "description": "Must satisfy: minLength 1."},
            "date": {"type": ["string", "null"], "description": 'Must satisfy: format "date".'},
            "store_code": {"type": ["string", "null"],
                           "description": 'Must satisfy: pattern "^[A-Z]{3}-[0-9]{4}$".'},
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "description": "Must satisfy: minItems 1."},
            "payment": {"anyOf": [{"enum": ["cash", "card"]}, {"type": "null"}]},
            "total": {"type": "number", "description": "Must satisfy: minimum 0."},
        },
        "required": ["merchant", "date", "store_code", "items", "payment", "total"],
        "additionalProperties": False,
        "$defs": {"item": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
            "required": ["name", "price"],
            "additionalProperties": False,
        }},
    }
    assert list(strict["properties"]) == list(RECEIPT["properties"])  # the model writes keys in this order
    assert compile_schema(RECEIPT).stripped == (
        "/properties/merchant/minLength", "/properties/date/format", "/properties/store_code/pattern",
        "/properties/items/minItems", "/properties/total/minimum",
    )


def test_optional_nested_object_typed_enum_const_and_ref_to_root_become_nullable():
    schema = {"type": "object", "properties": {
        "size": {"type": "string", "enum": ["S", "M"]},
        "kind": {"const": "box"},
        "inner": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "one of two"},
        "child": {"$ref": "#"},
        "maybe": {"type": ["string", "null"]},
    }}
    props = to_strict_schema(schema)["properties"]
    assert props["size"] == {"anyOf": [{"type": "string", "enum": ["S", "M"]}, {"type": "null"}]}
    assert props["kind"] == {"anyOf": [{"const": "box"}, {"type": "null"}]}
    assert props["inner"] == {"type": ["object", "null"], "properties": {"a": {"type": "integer"}},
                              "required": ["a"], "additionalProperties": False}
    assert props["either"] == {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}],
                               "description": "one of two"}
    assert props["child"] == {"anyOf": [{"$ref": "#"}, {"type": "null"}]}
    assert props["maybe"] == {"type": ["string", "null"]}


def test_oneof_is_sent_as_anyof_and_annotations_are_dropped():
    schema = {"type": "object", "required": ["v"], "$comment": "x", "properties": {
        "v": {"oneOf": [{"type": "string"}, {"type": "number"}], "default": 1, "examples": [1], "x-ui": "slider"},
    }}
    assert to_strict_schema(schema)["properties"]["v"] == {"anyOf": [{"type": "string"}, {"type": "number"}]}


@pytest.mark.parametrize(
    ("schema", "keyword", "pointer"),
    [
        ({"type": "object", "properties": {"tags": {"type": "object", "properties": {}, "patternProperties": {}}}},
         "patternProperties", "/properties/tags/patternProperties"),
        ({"type": "object", "properties": {}, "additionalProperties": True}, "additionalProperties",
         "/additionalProperties"),
        ({"type": "object", "properties": {"m": {"type": "object", "properties": {},
                                                 "additionalProperties": {"type": "string"}}}},
         "additionalProperties", "/properties/m/additionalProperties"),
        ({"type": "object", "properties": {"free": {"type": "object"}}}, "properties", "/properties/free"),
        ({"type": "object", "properties": {"p": {"type": "array", "prefixItems": [{"type": "string"}]}}},
         "prefixItems", "/properties/p/prefixItems"),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "items", "/properties/a/items"),
        ({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 1}]}}},
         "allOf", "/properties/a/allOf"),
        ({"type": "object", "properties": {"a": {"description": "anything"}}}, "type", "/properties/a"),
        ({"type": "object", "properties": {"a": True}}, "schema", "/properties/a"),
        ({"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}, "$ref",
         "/properties/a/$ref"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "$ref", "/properties/a/$ref"),
        ({"type": "object", "properties": {"a": {"type": "object", "properties": {}, "$defs": {}}}}, "$defs",
         "/properties/a/$defs"),
        ({"type": "object", "properties": {"a": {"type": "string", "requried": True}}}, "requried",
         "/properties/a/requried"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "required", "/required"),
        ({"type": "array", "items": {"type": "string"}}, "type", "/"),
        ({"anyOf": [{"type": "object", "properties": {}}]}, "type", "/"),
    ],
)
def test_unsupported_schemas_are_refused_naming_keyword_and_pointer(schema, keyword, pointer):
    with pytest.raises(SchemaRefused) as caught:
        to_strict_schema(schema)
    problem = caught.value.to_problem()
    assert problem["status"] == 400 and problem["parameter"] == "schema"
    assert problem["keyword"] == keyword and problem["pointer"] == pointer
    assert repr(keyword) in problem["detail"]


def test_a_schema_that_is_not_json_schema_is_refused():
    with pytest.raises(InvalidParameter, match="not a valid JSON Schema at /properties/a"):
        to_strict_schema({"type": "object", "properties": {"a": {"type": "strin"}}})
    with pytest.raises(InvalidParameter, match="must be a JSON object"):
        to_strict_schema([{"type": "object"}])  # type: ignore[arg-type]


def _nested(levels: int) -> dict:
    node: dict = {"type": "object", "properties": {"leaf": {"type": "string"}}, "required": ["leaf"]}
    for _ in range(levels - 1):
        node = {"type": "object", "properties": {"child": node}, "required": ["child"]}
    return node


def test_nesting_depth_five_passes_and_six_is_refused_with_its_pointer():
    to_strict_schema(_nested(5))
    with pytest.raises(SchemaRefused) as caught:
        to_strict_schema(_nested(6))
    assert "nested 6 levels deep" in caught.value.detail and "allow 5" in caught.value.detail
    assert caught.value.pointer == "/properties/child" * 5


def test_recursive_schemas_are_followed_once():
    tree = {"type": "object", "properties": {"name": {"type": "string"},
                                             "children": {"type": "array", "items": {"$ref": "#"}}}}
    assert to_strict_schema(tree)["properties"]["children"]["type"] == ["array", "null"]


def test_property_enum_and_size_limits():
    many = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(101)}}
    with pytest.raises(InvalidParameter, match=r"101 object properties.*at most 100"):
        to_strict_schema(many)
    to_strict_schema({"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(100)}})
    enums = {"type": "object", "properties": {"e": {"enum": list(range(501))}}}
    with pytest.raises(InvalidParameter, match="501 enum values"):
        to_strict_schema(enums)
    huge = {"type": "object", "properties": {"e": {"type": "string", "description": "x" * 200_000}}}
    with pytest.raises(InvalidParameter, match="characters long"):
        to_strict_schema(huge)


def test_conversion_is_cached_per_hash_of_the_canonical_json():
    schemas._compile.cache_clear()
    first = compile_schema(RECEIPT)
    reordered = json.loads(json.dumps(RECEIPT, sort_keys=True))  # keys sorted, properties order too
    reordered["properties"] = RECEIPT["properties"]  # properties order matters; the rest does not
    again = compile_schema(copy.deepcopy(reordered))
    assert again is first and to_strict_schema(RECEIPT) is first.strict
    assert schemas._compile.cache_info().misses == 1
    assert schema_hash(reordered) == first.hash == schema_hash(RECEIPT)
    swapped = {**RECEIPT, "properties": dict(reversed(list(RECEIPT["properties"].items())))}
    assert schema_hash(swapped) != first.hash  # another output order is another request


def test_validation_uses_the_original_schema_with_stripped_constraints():
    good = {"merchant": "Kiosk", "date": "2024-02-29", "store_code": "ABC-1234",
            "items": [{"name": "tea", "price": 2.5}], "payment": "card", "total": 2.5}
    assert validate_instance(RECEIPT, good) == []
    bad = {**good, "merchant": "", "date": "29/02/2024", "store_code": "abc", "items": [], "total": -1}
    errors = validate_instance(RECEIPT, bad)
    assert any(e.startswith("$.merchant:") and "non-empty" in e for e in errors)
    assert any(e.startswith("$.date:") and "'date'" in e for e in errors)
    assert any(e.startswith("$.store_code:") and "does not match" in e for e in errors)
    assert any(e.startswith("$.items:") for e in errors)
    assert any(e.startswith("$.total:") and "minimum" in e for e in errors)


def test_check_drops_the_models_absent_nulls_but_not_required_ones():
    compiled = compile_schema(RECEIPT)
    reply = {"merchant": "Kiosk", "date": None, "store_code": None, "items": [{"name": "tea", "price": 2}],
             "payment": None, "total": 2}
    data, errors = compiled.check(reply)
    assert data == {"merchant": "Kiosk", "items": [{"name": "tea", "price": 2}], "total": 2}
    assert errors == []
    data, errors = compiled.check({**reply, "total": None})
    assert data["total"] is None and errors == ["$.total: None is not of type 'number'"]


def test_oneof_exclusivity_is_checked_locally():
    schema = {"type": "object", "required": ["v"],
              "properties": {"v": {"oneOf": [{"type": "number"}, {"type": "integer"}]}}}
    assert validate_instance(schema, {"v": 1.5}) == []
    assert validate_instance(schema, {"v": 2}) != []  # both branches match


@pytest.mark.parametrize("model", [Invoice, TableGrid, Synthesis])
def test_our_own_schemas_are_within_the_strict_subset_and_limits(model):
    fmt, digest = model_format(model, "x")
    assert fmt["json_schema"]["strict"] is True and len(digest) == 64
    to_strict_schema(fmt["json_schema"]["schema"])
