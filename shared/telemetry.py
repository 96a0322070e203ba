"""Telemetry: one span and one structured log per model call and per answer, exported to Application Insights.

Why logs *and* spans: the log records carry the numbers (tokens, cost, retries, throttle waits, cache hits)
as ``extra=`` fields, which become ``customDimensions`` of Application Insights' ``traces`` table (KQL); the
spans tie them together (HTTP request or blob invocation -> model call) and give each record its operation id.
Without ``APPLICATIONINSIGHTS_CONNECTION_STRING`` nothing is installed and the OpenTelemetry API is a no-op.
No prompt, image or secret goes into a span attribute or a log field: names, counts, durations and prices.

Sources:

* Azure Monitor OpenTelemetry distro (``configure_azure_monitor``; it instruments FastAPI, httpx, requests,
  urllib3 and the Azure SDK, and attaches its log handler to the root logger):
  https://learn.microsoft.com/python/api/overview/azure/monitor-opentelemetry-readme
* Functions with OpenTelemetry (host.json ``"telemetryMode": "OpenTelemetry"``; with the app setting
  ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` the Python worker itself calls
  ``configure_azure_monitor()`` before it imports ``function_app.py`` and makes each invocation's code run
  under the host's trace context, so the host does not duplicate the worker's logs):
  https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto?pivot=programming-language-python
* Entra ID ingestion (``APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD;ClientId=<uami>``, read
  by the exporter itself, or a ``credential=`` passed in):
  https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication?tabs=python
* GenAI semantic conventions for the span attributes: https://opentelemetry.io/docs/specs/semconv/gen-ai/
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.errors import redact
from shared.tokens import estimate_cost

if TYPE_CHECKING:
    from shared.providers.base import Completion

log = logging.getLogger(__name__)

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
#: Set in Azure (infra/app/function.bicep): the Functions Python worker configures the distro itself.
WORKER_TELEMETRY = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"

#: A proxy until a provider is installed, then that provider's tracer; a no-op without an SDK.
tracer = trace.get_tracer("shared")

#: Our providers' names -> the GenAI conventions' ``gen_ai.system`` values.
GEN_AI_SYSTEMS = {"azure_openai": "az.ai.openai", "openai_compatible": "openai"}
#: URL attributes the HTTP instrumentations record; a function key sent as ``?code=`` must not stay in them.
URL_ATTRIBUTES = ("url.query", "url.full", "http.url", "http.target")

_lock = threading.Lock()
_configured = False


def configure_telemetry(environ: Mapping[str, str] | None = None) -> bool:
    """Export traces and logs to Application Insights when its connection string is set; True if exported.

    Once per process (later calls return at once). Without the connection string nothing is imported or
    installed and the answer is False. When the Functions worker already configured the distro (its
    ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`` setting), or anything else installed an SDK tracer
    provider, it is not configured twice: only the URL redaction is added to that provider.

    Keyless: ``Authorization=AAD`` in the authentication string selects a managed identity credential
    (the user-assigned one named by ``ClientId``), as the exporter would from the process environment;
    reading it here makes ``environ`` the whole input. The connection string is never logged.
    """
    global _configured
    env = os.environ if environ is None else environ
    connection_string = (env.get(CONNECTION_STRING) or "").strip()
    if not connection_string:
        return False
    with _lock:
        if _configured:
            return True
        provider = trace.get_tracer_provider()
        sdk = hasattr(provider, "add_span_processor")  # not the API's proxy: someone installed an SDK provider
        if sdk or (env.get(WORKER_TELEMETRY) or "").strip().lower() == "true":
            if sdk:
                provider.add_span_processor(_url_redaction())
            how = "set up already in this process, by the Functions worker"
        else:
            from azure.monitor.opentelemetry import configure_azure_monitor

            credential = _credential(env.get(AUTHENTICATION_STRING) or "")
            configure_azure_monitor(connection_string=connection_string, credential=credential,
                                    span_processors=[_url_redaction()])
            how = "Entra ID" if credential is not None else "instrumentation key"
        # Our per-call records are INFO; the root logger (where the distro's handler sits) defaults to WARNING.
        if logging.getLogger("shared").level == logging.NOTSET:
            logging.getLogger("shared").setLevel(logging.INFO)
        _configured = True
    log.info("telemetry: exporting traces and logs to Application Insights (%s)", how)
    return True


def _credential(authentication: str) -> Any:
    """A managed identity credential when the authentication string says ``Authorization=AAD``, else None."""
    pairs = {k.strip().lower(): v.strip() for k, sep, v in (p.partition("=") for p in authentication.split(";")) if sep}
    if pairs.get("authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=pairs.get("clientid") or None)  # None: the system-assigned identity


def _url_redaction() -> Any:
    """A span processor masking secrets (``code=`` function keys, signatures) in URL attributes at span start.

    The HTTP instrumentations set these attributes when the span starts and redact only a few cloud
    signatures themselves; a function key in the query string would otherwise reach ``requests.url``.
    """
    from opentelemetry.sdk.trace import SpanProcessor

    class RedactUrls(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            attributes = span.attributes or {}
            for name in URL_ATTRIBUTES:
                value = attributes.get(name)
                if isinstance(value, str) and (masked := redact(value)) != value:
                    span.set_attribute(name, masked)

    return RedactUrls()


def _failed(span: Any, exc: BaseException) -> str:
    """Mark ``span`` failed with the exception's type only: messages may quote what the service was sent."""
    error_type = type(exc).__name__
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))
    return error_type


@dataclass
class ModelCall:
    """What :func:`model_call_span` learns about one model call; :meth:`record` fills it from the answer."""

    deployment: str
    model: str
    provider: str
    span: Any = field(repr=False)
    #: The quota charge estimated before the call (known even when the call fails).
    charge_estimate: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def record(self, completion: Completion) -> None:
        """Tokens, cost, retries and waits of a successful call, on the span and in the log record."""
        usage, call = completion.usage, completion.call or {}
        cost = estimate_cost(usage.prompt_tokens, usage.completion_tokens, completion.pricing_model or self.model)
        self.fields.update({
            "deployment": completion.deployment or self.deployment, "model": completion.model,
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "cost_usd": round(cost, 6), "attempts": call.get("attempts"), "throttled": call.get("throttled"),
            "admission_wait_seconds": call.get("admission_wait_seconds"),
            "charge_estimate": call.get("charge_estimate", self.charge_estimate),
        })
        self.span.set_attributes(_present({
            "gen_ai.response.model": completion.model,
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "gen_ai.response.finish_reasons": [completion.finish_reason] if completion.finish_reason else None,
            **{f"vision.{name}": self.fields[name] for name in (
                "deployment", "attempts", "throttled", "admission_wait_seconds", "charge_estimate", "cost_usd")},
        }))


@contextmanager
def model_call_span(*, deployment: str, model: str, provider: str) -> Iterator[ModelCall]:
    """A span (``chat {deployment}``) around one model call, and ONE ``model call`` log record when it ends.

    The log's fields: deployment, model, provider, prompt_tokens, completion_tokens, cost_usd, latency_ms,
    attempts, throttled, admission_wait_seconds, charge_estimate, outcome (``ok`` or ``error``) and
    error_type; fields with no value (tokens of a failed call) are left out.
    """
    started = time.perf_counter()
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.system": GEN_AI_SYSTEMS.get(provider, provider),
                  "gen_ai.request.model": model, "vision.deployment": deployment}
    with tracer.start_as_current_span(f"chat {deployment}", kind=SpanKind.CLIENT, attributes=attributes,
                                      record_exception=False, set_status_on_exception=False) as span:
        call = ModelCall(deployment=deployment, model=model, provider=provider, span=span)
        outcome: dict[str, Any] = {"outcome": "ok"}
        try:
            yield call
        except BaseException as exc:
            outcome = {"outcome": "error", "error_type": _failed(span, exc)}
            if call.charge_estimate is not None:
                span.set_attribute("vision.charge_estimate", call.charge_estimate)
            raise
        finally:
            fields = {"deployment": deployment, "model": model, "charge_estimate": call.charge_estimate,
                      **call.fields, "provider": provider, **outcome,
                      "latency_ms": round((time.perf_counter() - started) * 1000)}
            log.info("model call", extra=_present(fields))


def answer_served(result: Mapping[str, Any], *, cache_hit: bool, latency_ms: int, joined: bool = False,
                  provider: str | None = None) -> None:
    """ONE ``answer`` log record per answer served, so cache hits (which make no model call) are counted too.

    ``cost_usd`` is what this answer cost now: 0 for a cache hit and for a caller that ``joined`` a call
    already in flight for the same request (that call's own record counts it).
    """
    usage = result.get("usage") or {}
    paid = not (cache_hit or joined)
    fields = {
        "cache_hit": cache_hit, "joined": joined, "task": result.get("task") or result.get("kind"),
        "deployment": result.get("deployment"), "model": result.get("model"),
        "provider": result.get("provider") or provider, "latency_ms": latency_ms,
        "prompt_tokens": usage.get("prompt_tokens") if paid else 0,
        "completion_tokens": usage.get("completion_tokens") if paid else 0,
        "cost_usd": result.get("estimated_cost_usd") if paid else 0.0,
        "degraded": bool(result.get("degraded")),
    }
    log.info("answer", extra=_present(fields))


@dataclass
class Invocation:
    """The span of one unit of background work; :meth:`set` adds ``vision.*`` attributes as they are learnt."""

    span: Any = field(repr=False)

    def set(self, **attributes: Any) -> None:
        self.span.set_attributes(_present({f"vision.{name}": value for name, value in attributes.items()}))


@contextmanager
def invocation_span(name: str, **attributes: Any) -> Iterator[Invocation]:
    """A span around one blob invocation (or another unit of background work), ``vision.*`` attributes.

    A CONSUMER span: Application Insights records it as a request, so blobs processed without a Functions
    host (``watch``, ``process``) are listed like the host's invocations. Model calls inside are its children.
    """
    with tracer.start_as_current_span(name, kind=SpanKind.CONSUMER,
                                      attributes=_present({f"vision.{k}": v for k, v in attributes.items()}),
                                      record_exception=False, set_status_on_exception=False) as span:
        try:
            yield Invocation(span)
        except BaseException as exc:
            _failed(span, exc)
            raise


def join_current_trace(app: Any) -> Any:
    """The ASGI ``app``, its request spans parented on the trace already current when it is called.

    Under the Functions worker each invocation runs in the host's trace context, but an HTTP server span
    (FastAPI's, or the distro's ASGI middleware) takes its parent from the request's ``traceparent`` header
    only, so it would start a trace of its own: the current context is written into that header when the
    caller sent none. Outside a trace (uvicorn) nothing changes.
    """
    async def joined(scope: Any, receive: Any, send: Any) -> None:
        headers = scope.get("headers") or []
        if (scope["type"] == "http" and trace.get_current_span().get_span_context().is_valid
                and not any(name.lower() == b"traceparent" for name, _ in headers)):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            scope = {**scope, "headers": [*headers, *((k.lower().encode("latin-1"), v.encode("latin-1"))
                                                      for k, v in carrier.items())]}
        await app(scope, receive, send)

    return joined


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    """Without the None values, which neither span attributes nor log attributes accept."""
    return {name: value for name, value in values.items() if value is not None}
