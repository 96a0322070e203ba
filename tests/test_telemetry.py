"""Telemetry: spans and structured logs per model call and per answer, checked with OpenTelemetry's in-memory
exporter; the Azure Monitor setup itself in a subprocess that cannot reach the network.

The global tracer provider can be set once per process (OpenTelemetry refuses to replace it), so this module
installs one SDK provider for the session and records spans only while a test holds the ``spans`` fixture.
FastAPI 0.165 traces requests itself once a provider is installed (``fastapi.telemetry``), so the HTTP server
span needs no ``FastAPIInstrumentor`` here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import azure.functions as func
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared.analysis_options import AnalysisOptions
from shared.errors import ModelBadResponse
from shared.http.app import create_app
from shared.providers.base import VisionRequest
from shared.services import Services
from shared.telemetry import configure_telemetry, join_current_trace
from tests.aoai_double import Reply
from tests.conftest import complete, upload

REPO = Path(__file__).resolve().parent.parent
EXPORTER = InMemorySpanExporter()


class _WhileRecording(SpanProcessor):
    """Hands ended spans to :data:`EXPORTER` only during a test that asked for them."""

    recording = False

    def on_end(self, span) -> None:
        if self.recording:
            EXPORTER.export((span,))


RECORDER = _WhileRecording()


@pytest.fixture(scope="session")
def _provider() -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(RECORDER)


@pytest.fixture
def spans(_provider):
    EXPORTER.clear()
    RECORDER.recording = True
    yield EXPORTER
    RECORDER.recording = False
    EXPORTER.clear()


@pytest.fixture
def records(caplog):
    """The ``shared.telemetry`` records of the test: message -> list of records."""
    caplog.set_level(logging.INFO, logger="shared.telemetry")

    def of(message: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "shared.telemetry" and r.getMessage() == message]

    return of


def model_spans(exporter) -> list:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]


def ancestors(span, exporter) -> list:
    """The span's parents, nearest first, among the recorded spans."""
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}
    found = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        found.append(span)
    return found


async def test_a_model_call_has_one_span_with_the_usage_and_one_log_record(make_settings, aoai, prepared, spans,
                                                                           records):
    aoai.enqueue(Reply.ok("Teal.", prompt_tokens=99, completion_tokens=2))
    await complete(make_settings(), VisionRequest(prompt="What colour? secret-prompt", images=(prepared,),
                                                  max_tokens=30))
    [span] = model_spans(spans)
    assert span.name == "chat gpt-4o" and span.kind == SpanKind.CLIENT
    attributes = dict(span.attributes)
    assert attributes["gen_ai.system"] == "az.ai.openai" and attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (99, 2)
    assert attributes["vision.deployment"] == "gpt-4o" and attributes["vision.attempts"] == 1
    assert attributes["vision.throttled"] == 0 and attributes["vision.charge_estimate"] > 30
    assert attributes["vision.cost_usd"] > 0 and "vision.admission_wait_seconds" in attributes
    assert span.status.status_code != StatusCode.ERROR
    assert not [v for v in attributes.values() if "secret-prompt" in str(v) or "base64" in str(v)]

    [record] = records("model call")
    assert (record.deployment, record.model, record.provider) == ("gpt-4o", "gpt-4o-2024-08-06", "azure_openai")
    assert (record.prompt_tokens, record.completion_tokens, record.attempts, record.throttled) == (99, 2, 1, 0)
    assert record.cost_usd == attributes["vision.cost_usd"] and record.charge_estimate > 30
    assert record.outcome == "ok" and isinstance(record.latency_ms, int)
    assert isinstance(record.admission_wait_seconds, float)
    assert "secret-prompt" not in json.dumps(vars(record), default=str)


async def test_a_failed_call_marks_its_span_as_an_error_and_logs_the_error_type(make_settings, aoai, prepared,
                                                                                spans, records):
    aoai.enqueue(Reply.error(400, "BadRequest", "Invalid image data"))
    with pytest.raises(ModelBadResponse):
        await complete(make_settings(), VisionRequest(prompt="What?", images=(prepared,), max_tokens=30))
    [span] = model_spans(spans)
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "ModelBadResponse"
    assert span.attributes["error.type"] == "ModelBadResponse" and span.attributes["vision.charge_estimate"] > 0
    assert not span.events  # no exception message recorded: it may quote what the service was sent
    [record] = records("model call")
    assert (record.outcome, record.error_type) == ("error", "ModelBadResponse")
    assert record.charge_estimate > 0 and not hasattr(record, "prompt_tokens")


async def test_an_http_request_span_parents_the_model_call(make_settings, make_client, aoai, png_bytes, spans,
                                                           records):
    client = await make_client(make_settings())
    response = await client.post("/api/analyze?detail=low&code=function-key-123", content=png_bytes,
                                 headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    [call] = model_spans(spans)
    [server] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.context.trace_id == call.context.trace_id
    assert server in ancestors(call, spans)
    assert server.attributes["http.route"] == "/api/analyze"
    [answer] = records("answer")
    assert (answer.cache_hit, answer.joined, answer.deployment) == (False, False, "gpt-4o")
    assert not hasattr(answer, "task")  # none asked: fields without a value are left out
    assert answer.cost_usd == response.json()["estimated_cost_usd"] > 0


async def test_a_request_under_a_functions_invocation_joins_its_trace(make_settings, spans):
    """The worker runs each invocation in the host's trace context; the request span must not start a new trace
    (unless the caller sent its own ``traceparent``, which wins)."""
    app = create_app(make_settings())
    middleware = func.AsgiMiddleware(join_current_trace(app))
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    try:
        with trace.get_tracer("host").start_as_current_span("invocation") as host:
            plain = await middleware.handle_async(
                func.HttpRequest(method="GET", url="http://localhost/api/health", headers={}, body=b""), None)
            traced = await middleware.handle_async(func.HttpRequest(
                method="GET", url="http://localhost/api/health", headers={"traceparent": caller}, body=b""), None)
    finally:
        await app.state.services.aclose()
    assert plain.status_code == traced.status_code == 200
    first, second = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert first.parent.span_id == host.get_span_context().span_id
    assert first.context.trace_id == host.get_span_context().trace_id
    assert format(second.context.trace_id, "032x") == caller.split("-")[1]

async def test_a_cache_hit_is_logged_and_makes_no_model_call(make_settings, make_analyzer, aoai, png_bytes, spans,
                                                             records):
    analyzer = make_analyzer(make_settings())
    analyzer.cache = MemoryCache()
    first = await analyzer.analyze(png_bytes, AnalysisOptions(task="ocr"))
    assert len(model_spans(spans)) == 1
    spans.clear()
    second = await analyzer.analyze(png_bytes, AnalysisOptions(task="ocr"))
    assert (first["cached"], second["cached"]) == (False, True)
    assert model_spans(spans) == [] and len(aoai.requests) == 1
    miss, hit = records("answer")
    assert (miss.cache_hit, miss.task, miss.cost_usd > 0, miss.prompt_tokens > 0) == (False, "ocr", True, True)
    assert (hit.cache_hit, hit.task, hit.cost_usd, hit.prompt_tokens) == (True, "ocr", 0.0, 0)
    assert hit.deployment == "gpt-4o" and hit.provider == "azure_openai" and isinstance(hit.latency_ms, int)
    assert len(records("model call")) == 1


class MemoryCache:
    """The two calls the analyzer makes of a cache."""

    def __init__(self) -> None:
        self.stored: dict[str, dict] = {}

    async def aget(self, key):
        return self.stored.get(key)

    async def aput(self, key, value):
        self.stored[key] = value

    def close(self):
        pass


async def test_a_blob_invocation_span_parents_the_model_call(make_settings, storage_connection_string, containers,
                                                             aoai, png_bytes, spans):
    settings = make_settings(AzureWebJobsStorage=storage_connection_string, **containers)
    async with Services(settings) as services:
        pipeline = services.pipeline
        pipeline.ensure_containers()
        blob = upload(pipeline, "describe/cat.png", png_bytes)
        outcome = await pipeline.handle(blob)
    assert outcome.status == "succeeded"
    [call] = model_spans(spans)
    [invocation] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    assert invocation.name == f"blob {containers['VISION_INPUT_CONTAINER']}"
    assert invocation in ancestors(call, spans)
    assert dict(invocation.attributes) == {
        "vision.blob_name": "describe/cat.png", "vision.container": containers["VISION_INPUT_CONTAINER"],
        "vision.attempt": 1, "vision.outcome": "succeeded"}


# -- configuration, in a fresh interpreter: the real distro, nothing sent ---------------------------------

#: Runs configure_telemetry in a process of its own. A socket guard refuses (and reports) any connection or
#: name lookup beyond loopback, the distro's side channels are off, and the process ends with os._exit, so no
#: exporter ever flushes.
CONFIGURE = textwrap.dedent("""
    import io, json, logging, os, socket, sys
    attempts = []
    LOOPBACK = {"127.0.0.1", "::1", "localhost"}
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            attempts.append(str(address[0])); raise OSError("network refused by the test")
        return real_connect(self, address)
    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK and host is not None:
            attempts.append(str(host)); raise OSError("name lookup refused by the test")
        return real_getaddrinfo(host, *args, **kwargs)
    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
    from azure.core.credentials import AccessToken, AccessTokenInfo
    from azure.identity import ManagedIdentityCredential  # a token without asking the metadata endpoint
    ManagedIdentityCredential.get_token = lambda self, *scopes, **kw: AccessToken("fake", 4102444800)
    ManagedIdentityCredential.get_token_info = lambda self, *scopes, **kw: AccessTokenInfo("fake", 4102444800)
    captured = io.StringIO()
    handler = logging.StreamHandler(captured); handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler); logging.getLogger().setLevel(logging.DEBUG)

    from opentelemetry import trace
    from shared.telemetry import configure_telemetry
    out = {"unset": configure_telemetry({}), "distro_imported": "azure.monitor.opentelemetry" in sys.modules,
           "provider_before": type(trace.get_tracer_provider()).__name__}
    if sys.argv[1] == "worker":  # the Functions worker configured the SDK before importing the app
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
    import azure.monitor.opentelemetry as distro
    calls, real = [], distro.configure_azure_monitor
    distro.configure_azure_monitor = lambda **kw: (calls.append(sorted(kw)), real(**kw))[1]
    env = json.loads(sys.argv[2])
    out["first"], out["second"] = configure_telemetry(env), configure_telemetry(env)
    out["calls"] = calls
    provider = trace.get_tracer_provider()
    out["provider_after"] = type(provider).__name__
    processors = provider._active_span_processor._span_processors
    out["processors"] = [type(p).__name__ for p in processors]
    exporters = [p.span_exporter for p in processors if hasattr(p, "span_exporter")]
    out["credential"] = [type(e._credential).__name__ for e in exporters]
    with trace.get_tracer("t").start_as_current_span("s", attributes={"url.query": "code=abc123&detail=low"}) as s:
        out["url_query"] = s.attributes["url.query"]
    out["logged"] = captured.getvalue()
    out["attempts"] = attempts
    print(json.dumps(out)); sys.stdout.flush(); os._exit(0)
""")
FAKE = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/;" \
       "LiveEndpoint=http://127.0.0.1:9/"
#: The distro's side channels (its own statistics, remote configuration, the Azure VM metadata probe) off.
QUIET = {"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
         "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true", "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel"}


def configure_in_a_fresh_process(mode: str, env: dict[str, str]) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "PYTHON_APPLICATION"))}
    environ.update({**QUIET, "PYTHONPATH": str(REPO)})
    run = subprocess.run([sys.executable, "-c", CONFIGURE, mode, json.dumps(env)], cwd=REPO, env=environ,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_nothing_is_configured_without_a_connection_string(_provider):
    before = trace.get_tracer_provider()
    assert configure_telemetry({}) is False
    assert configure_telemetry({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is False
    assert trace.get_tracer_provider() is before


def test_configured_once_keyless_with_the_managed_identity_and_nothing_sent():
    out = configure_in_a_fresh_process("own", {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": FAKE,
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=6f1b2a43-95c3-4a4e-9d1e-2f3c4b5a6d7e"})
    assert (out["unset"], out["distro_imported"], out["provider_before"]) == (False, False, "ProxyTracerProvider")
    assert (out["first"], out["second"]) == (True, True)
    assert out["calls"] == [["connection_string", "credential", "span_processors"]]  # once
    assert out["provider_after"] == "TracerProvider" and "RedactUrls" in out["processors"]
    assert out["credential"] == ["ManagedIdentityCredential"]
    assert out["url_query"] == "code=***&detail=low"
    assert "00000000-0000-0000-0000-000000000000" not in out["logged"]
    assert "Entra ID" in out["logged"]
    assert out["attempts"] == []


def test_the_functions_worker_configuration_is_kept_and_only_redaction_added():
    out = configure_in_a_fresh_process("worker", {"APPLICATIONINSIGHTS_CONNECTION_STRING": FAKE,
                                                  "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"})
    assert (out["first"], out["second"], out["calls"]) == (True, True, [])
    assert out["processors"] == ["RedactUrls"] and out["url_query"] == "code=***&detail=low"
    assert out["attempts"] == []
