"""Caller schemas that could stall or crash the service (issue 9): backtracking patterns, $ref loops."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from shared import schemas
from shared.schemas import SchemaRefused, compile_schema
from tests.aoai_double import Reply

EVIL = "^(a+)+$"
EVIL_INPUT = "a" * 30 + "b"  # minutes for a backtracking engine; microseconds for RE2


def obj(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), **extra}


@pytest.fixture
def png_b64(corpus) -> str:
    return base64.b64encode((corpus / "chelsea.png").read_bytes()).decode()


# -- patterns -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_catastrophic_pattern_is_checked_in_linear_time():
    compiled = compile_schema(obj({"code": {"type": "string", "pattern": EVIL}}))
    data, errors = compiled.check({"code": EVIL_INPUT})
    assert data == {"code": EVIL_INPUT}
    assert len(errors) == 1 and "does not match" in errors[0]
    assert compiled.check({"code": "aaaa"})[1] == []


@pytest.mark.timeout(30)
def test_patterns_under_property_names_and_unions_are_linear_too():
    schema = obj({"tags": {"type": "array", "items": {"anyOf": [{"type": "string", "pattern": EVIL},
                                                               {"type": "integer"}]}}})
    errors = compile_schema(schema).errors({"tags": [EVIL_INPUT, 3, "aa"]})
    assert len(errors) == 1 and "$.tags[0]" in errors[0]


@pytest.mark.parametrize(("pattern", "pointer"), [
    ("^(?=x)\\w+$", "/properties/code/pattern"),  # lookahead
    ("^(a)\\1$", "/properties/code/pattern"),  # backreference
])
def test_a_pattern_re2_cannot_compile_is_refused_naming_the_pointer(pattern, pointer):
    with pytest.raises(SchemaRefused) as refused:
        compile_schema(obj({"code": {"type": "string", "pattern": pattern}}))
    assert refused.value.pointer == pointer and refused.value.keyword == "pattern"
    assert refused.value.status == 400 and "linear time" in refused.value.detail


def test_a_pattern_in_a_definition_is_refused_with_its_pointer():
    schema = obj({"a": {"$ref": "#/$defs/code"}}, **{"$defs": {"code": {"type": "string", "pattern": "(?<=a)b"}}})
    with pytest.raises(SchemaRefused) as refused:
        compile_schema(schema)
    assert refused.value.pointer == "/$defs/code/pattern"


@pytest.mark.timeout(60)
async def test_the_api_answers_an_evil_pattern_without_stalling(make_settings, make_client, aoai, png_b64):
    aoai.enqueue(Reply.ok(json.dumps({"code": EVIL_INPUT})), Reply.ok(json.dumps({"code": EVIL_INPUT})))
    client = await make_client(make_settings())
    schema = obj({"code": {"type": "string", "pattern": EVIL}})
    response = await client.post("/api/extract", json={"image": png_b64, "schema": schema})
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["type"] == "/problems/extraction-failed" and "does not match" in body["errors"][0]


async def test_the_api_refuses_an_uncompilable_pattern_with_400(make_settings, make_client, aoai, png_b64):
    client = await make_client(make_settings())
    schema = obj({"code": {"type": "string", "pattern": "^(?!x)"}})
    response = await client.post("/api/extract", json={"image": png_b64, "schema": schema})
    assert response.status_code == 400 and response.json()["pointer"] == "/properties/code/pattern"
    assert aoai.requests == []


# -- $ref loops -----------------------------------------------------------------------------

LOOPS = {
    "two definitions": (obj({"x": {"$ref": "#/$defs/a"}}, **{"$defs": {"a": {"$ref": "#/$defs/b"},
                                                                        "b": {"$ref": "#/$defs/a"}}}),
                        {"/$defs/a/$ref", "/$defs/b/$ref"}),
    "itself": (obj({"x": {"$ref": "#/$defs/a"}}, **{"$defs": {"a": {"$ref": "#/$defs/a"}}}), {"/$defs/a/$ref"}),
    "a union branch": (obj({"x": {"$ref": "#/$defs/a"}}, **{"$defs": {"a": {"anyOf": [
        {"type": "string"}, {"$ref": "#/$defs/a"}]}}}), {"/$defs/a/anyOf/1/$ref"}),
}


@pytest.mark.parametrize("name", LOOPS)
def test_a_ref_loop_is_refused_at_conversion_naming_the_pointer(name):
    schema, pointers = LOOPS[name]
    with pytest.raises(SchemaRefused) as refused:
        compiled = compile_schema(schema)
        compiled.check({"x": 1})  # before: compiled fine, then RecursionError here
    assert refused.value.keyword == "$ref" and refused.value.pointer in pointers
    assert "loop" in refused.value.detail


@pytest.mark.parametrize("name", LOOPS)
async def test_the_api_answers_a_ref_loop_with_400(make_settings, make_client, aoai, png_b64, name):
    aoai.enqueue(Reply.ok(json.dumps({"x": 1})), Reply.ok(json.dumps({"x": 1})))
    client = await make_client(make_settings())
    response = await client.post("/api/extract", json={"image": png_b64, "schema": LOOPS[name][0]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "/problems/invalid-parameter" and body["pointer"] in LOOPS[name][1]


def test_recursion_through_properties_and_items_is_still_allowed():
    tree = obj({"root": {"$ref": "#/$defs/node"}}, **{"$defs": {"node": obj({
        "name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}})}})
    compiled = compile_schema(tree)
    good = {"root": {"name": "a", "children": [{"name": "b", "children": []}]}}
    assert compiled.check(good)[1] == []
    assert compiled.check({"root": {"name": 1, "children": []}})[1] != []


def test_a_deeply_nested_reply_is_an_error_not_a_crash():
    from shared.extraction import parse_reply
    from shared.providers.base import Completion, Usage

    completion = Completion(text="[" * 100_000 + "]" * 100_000, model="m", usage=Usage(1, 1), finish_reason="stop")
    value, errors = parse_reply(completion, 100, compile_schema(obj({"x": {"type": "string"}})).check)
    assert value is None and errors


# -- off the event loop ----------------------------------------------------------------------


async def test_replies_are_validated_off_the_event_loop(make_settings, make_client, aoai, png_b64, monkeypatch):
    seen: list[int] = []
    original = schemas.CompiledSchema.errors

    def spy(self, instance):
        seen.append(threading.get_ident())
        return original(self, instance)

    monkeypatch.setattr(schemas.CompiledSchema, "errors", spy)
    aoai.enqueue(Reply.ok(json.dumps({"code": "abc"})))
    client = await make_client(make_settings())
    response = await client.post("/api/extract", json={"image": png_b64, "schema": obj({"code": {"type": "string"}})})
    assert response.status_code == 200, response.text
    assert seen and threading.get_ident() not in seen
