"""The OpenAPI document says what the API does (issue 9): its limits, its answers, checked by Schemathesis.

Schemathesis generates requests from the document and runs them against the app in-process (ASGI),
once with Azure OpenAI (the test double, answering structured requests with a valid minimal
instance of the schema it was sent) and once offline (the local engine), with the results route on
Azurite. Every answer must be documented (status, content type, body schema) and none may be a
server error, except, offline, the documented 501 for what the engine cannot do. Examples are
bounded and derandomized, so the run is short and repeatable.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.analysis_options import MAX_PROMPT_CHARS
from shared.config import Settings
from shared.http.app import create_app
from tests.aoai_double import Reply

MAX_EXAMPLES = 20
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
CONFIG = schemathesis.Config.from_dict({"generation": {"mode": "positive", "deterministic": True}})


def server_error(status: int, body: bytes, allowed: frozenset[str]) -> str | None:
    """Why a 5xx answer is a failure, or None (not a 5xx, or a problem ``type`` this run allows)."""
    if status < 500:
        return None
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError):
        kind = None
    return None if kind in allowed else f"server error {status}: {body[:600]!r}"


def fuzz_operation(operation, allowed: frozenset[str]) -> tuple[list[str], int]:
    """The failures (one line each) of ``MAX_EXAMPLES`` generated requests to one operation, and the count."""
    failures: list[str] = []
    calls = 0

    @hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @hypothesis.given(case=operation.as_strategy())
    def run(case) -> None:
        nonlocal calls
        calls += 1
        response = case.call()
        why = server_error(response.status_code, response.content, allowed)
        if why:
            failures.append(f"{operation.label}: {why}")
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: every failure is reported together
            failures.append(f"{operation.label}: {str(group).strip()[:1500]}")

    run()
    return failures, calls


def fuzz(app, allowed: frozenset[str] = frozenset()) -> tuple[list[str], int]:
    """Failures (the first few per operation) and the number of requests made, over every operation."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app, config=CONFIG)
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        found, made = fuzz_operation(result.ok(), allowed)
        failures += found[:3]
        calls += made
    return failures, calls


def minimal(schema: Any, root: dict[str, Any]) -> Any:
    """The smallest instance of a strict structured-outputs schema: null where allowed, else empty values."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        node: Any = root
        for token in schema["$ref"].lstrip("#/").split("/"):
            node = node[token] if token else node
        return minimal(node, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "anyOf" in schema:
        nullable = [b for b in schema["anyOf"] if isinstance(b, dict) and b.get("type") == "null"]
        return None if nullable else minimal(schema["anyOf"][0], root)
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "null" in types:
        return None
    empty = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": []}
    if types and types[0] in empty:
        return empty[types[0]]
    return {name: minimal(sub, root) for name, sub in schema.get("properties", {}).items()}


def structured_answers(request) -> Reply | None:
    """The double's answer to a structured-outputs request: a valid minimal instance of the schema."""
    fmt = (request.body or {}).get("response_format") or {}
    if fmt.get("type") != "json_schema":
        return None
    schema = fmt["json_schema"]["schema"]
    return Reply.ok(json.dumps(minimal(schema, schema)))


@pytest.fixture
def storage(storage_connection_string) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"AzureWebJobsStorage": storage_connection_string, "VISION_INPUT_CONTAINER": f"in-{tag}",
            "VISION_RESULTS_CONTAINER": f"out-{tag}", "VISION_QUARANTINE_CONTAINER": f"bad-{tag}",
            "VISION_CACHE_ENABLED": "false"}


def run_app(settings: Settings, allowed: frozenset[str] = frozenset()) -> tuple[list[str], int]:
    app = create_app(settings)
    try:
        return fuzz(app, allowed)
    finally:
        asyncio.run(app.state.services.aclose())


@pytest.mark.timeout(300)
def test_fuzz_with_the_model_double(make_settings, storage, aoai):
    aoai.set_responder(structured_answers)
    failures, calls = run_app(make_settings(**storage))
    assert failures == [], "\n\n".join(failures)
    assert calls >= 8 * 5


@pytest.mark.timeout(300)
def test_fuzz_offline(storage):
    offline = Settings.from_mapping({**storage, "VISION_PROVIDER": "local"})
    failures, calls = run_app(offline, allowed=frozenset({"/problems/not-supported"}))
    assert failures == [], "\n\n".join(failures)
    assert calls >= 8 * 5


# -- what the document says ---------------------------------------------------------------------


@pytest.fixture
def document(make_settings):
    return create_app(make_settings(VISION_MAX_IMAGES="6", VISION_MAX_OUTPUT_TOKENS="2048")).openapi()


def body_properties(operation: dict, media: str) -> dict:
    return operation["requestBody"]["content"][media]["schema"]["properties"]


def test_limits_come_from_the_settings(document):
    for path in ("/api/analyze", "/api/extract", "/api/extract/invoice", "/api/compare", "/api/sequence"):
        operation = document["paths"][path]["post"]
        query = {p["name"]: p["schema"] for p in operation["parameters"]}
        form = body_properties(operation, "multipart/form-data")
        for where in (query, form):
            assert where["max_tokens"]["minimum"] == 1 and where["max_tokens"]["maximum"] == 2048, path
            assert where["prompt"]["maxLength"] == MAX_PROMPT_CHARS, path
    for path in ("/api/compare", "/api/sequence"):
        files = body_properties(document["paths"][path]["post"], "multipart/form-data")["file"]
        assert (files["minItems"], files["maxItems"]) == (2, 6)


def test_default_limits_when_settings_are_broken():
    document = create_app(Settings.from_mapping({})).openapi()
    analyze = document["paths"]["/api/analyze"]["post"]
    assert body_properties(analyze, "multipart/form-data")["max_tokens"]["maximum"] == 4096


def test_results_and_health_are_documented_as_they_answer(document):
    results = document["paths"]["/api/results/{name}"]["get"]["responses"]
    assert "422" not in results and "HTTPValidationError" not in document["components"]["schemas"]
    assert set(results) == {"200", "404", "500", "502", "503"}
    assert "application/problem+json" in results["404"]["content"]
    assert results["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ResultDocument")
    health = document["paths"]["/api/health"]["get"]["responses"]
    assert health["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/HealthResponse")
    assert health["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Misconfigured")


@pytest.mark.parametrize("path", ["/api/analyze", "/api/extract/invoice", "/api/extract/table", "/api/compare",
                                  "/api/sequence"])
async def test_a_prompt_over_the_limit_is_400(make_settings, make_client, aoai, corpus, path):
    client = await make_client(make_settings())
    image = (corpus / "chelsea.png").read_bytes()
    files = [("file", ("a.png", image, "image/png"))] * (2 if path in ("/api/compare", "/api/sequence") else 1)
    response = await client.post(path, files=files, data={"prompt": "x" * (MAX_PROMPT_CHARS + 1)})
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == "prompt" and aoai.requests == []
