"""Language models behind the official ``openai`` SDK: Azure OpenAI and OpenAI-compatible servers.

Azure OpenAI and any OpenAI-compatible server (OpenAI, Ollama, vLLM, LM Studio) share one
implementation; they differ only in how the client is built (:mod:`shared.providers.factory`).
Errors from the SDK are translated into :mod:`shared.errors` in exactly one place,
:func:`translate_openai_error`, with ``raise ... from exc`` so the cause stays visible in logs. That
includes what the SDK lets through unwrapped: a body that is not JSON, and the azure-identity
``ClientAuthenticationError`` its token provider raises when the Entra ID credential gets no token.
Anything else (a ``ValueError`` or ``TypeError`` of our own) is a bug, and left to surface as one.

Quota and retries: every call is admitted by the deployment's limiter (one per process, shared by
every edge: :mod:`shared.quota.limiter`) and retried by one layer (:mod:`shared.quota.retry`):
throttling is waited out until the caller's deadline, 5xx and timeouts back off a bounded number of
times. The SDK's own retries are off (``max_retries=0`` in :mod:`shared.providers.factory`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

import httpx2
import openai
from azure.core.exceptions import ClientAuthenticationError

from shared.errors import (
    ContentFiltered,
    ModelBadResponse,
    ModelCredentialsError,
    ModelError,
    ModelThrottled,
    ModelUnavailable,
    redact,
)
from shared.providers.base import Completion, Provider, Usage, VisionRequest
from shared.quota.charge import estimate_charge
from shared.quota.deadline import current_deadline
from shared.quota.limiter import DeploymentLimiter
from shared.quota.retry import Answer, call_with_retries
from shared.telemetry import model_call_span

log = logging.getLogger(__name__)


def build_messages(request: VisionRequest) -> list[dict[str, Any]]:
    """Chat messages: a text part then one ``image_url`` part per image, as base64 data URLs."""
    content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
    for index, image in enumerate(request.images):
        if index < len(request.image_labels):
            content.append({"type": "text", "text": request.image_labels[index]})
        content.append({"type": "image_url", "image_url": {"url": image.data_url, "detail": image.detail}})
    messages: list[dict[str, Any]] = []
    if request.system_prompt:
        messages.append({"role": "system", "content": request.system_prompt})
    messages.append({"role": "user", "content": content})
    messages.extend(request.follow_up)
    return messages


def _message_texts(request: VisionRequest) -> list[str]:
    """The text of every message the request sends, for the quota charge estimate."""
    texts = [request.prompt, *request.image_labels]
    if request.system_prompt:
        texts.append(request.system_prompt)
    for message in request.follow_up:
        content = message.get("content")
        texts.append(content if isinstance(content, str) else json.dumps(content))
    if request.response_format is not None:
        texts.append(json.dumps(request.response_format))
    return texts


def _retry_after_seconds(response: Any) -> float | None:
    """Azure sends ``retry-after-ms`` (preferred) and ``retry-after`` on 429 and some 5xx."""
    headers = getattr(response, "headers", None) or {}
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            continue
    return None


def _error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        return inner if isinstance(inner, dict) else {}
    return {}


def _filtered_categories(result: Any) -> list[str]:
    if not isinstance(result, dict):
        return []
    return sorted(name for name, verdict in result.items() if isinstance(verdict, dict) and verdict.get("filtered"))


#: The transport's errors for a request that never left (the SDK wraps them in APIConnectionError); the SDK
#: bundles its own copy of httpx as ``httpx2``.
NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout)
#: What :meth:`OpenAIChatProvider.complete` hands to :func:`translate_openai_error`.
CLIENT_ERRORS = (openai.OpenAIError, json.JSONDecodeError, ClientAuthenticationError)
MAX_CREDENTIAL_MESSAGE_CHARS = 400


def _credential_error(exc: ClientAuthenticationError, credential: str | None) -> ModelCredentialsError:
    """Which credential failed and azure-identity's own account of why (it never holds secrets), on one line."""
    name = credential or "the Entra ID credential"
    reason = redact(" ".join(str(exc.message or exc).split()))[:MAX_CREDENTIAL_MESSAGE_CHARS]
    return ModelCredentialsError(
        f"{name} could not get a token for Azure OpenAI: {reason} -- check the Function's managed identity "
        "(AZURE_CLIENT_ID for a user-assigned one), 'az login' locally, or set AZURE_OPENAI_API_KEY",
        credential=credential, retry_after=None,
    )


def translate_openai_error(exc: Exception, *, deployment: str | None, credential: str | None = None) -> ModelError:
    """Map one SDK exception to our error tree; the single edge where SDK errors are translated.

    ``credential`` names the Entra ID credential class (keyless Azure OpenAI) for a token failure.
    """
    if isinstance(exc, ClientAuthenticationError):
        return _credential_error(exc, credential)
    if isinstance(exc, json.JSONDecodeError):
        return ModelBadResponse("the model service answered with a body that is not JSON")
    if isinstance(exc, openai.APITimeoutError):
        return ModelUnavailable("the model service did not answer in time", retry_after=None)
    if isinstance(exc, openai.APIConnectionError):
        if isinstance(exc.__cause__, NOT_SENT):
            return ModelUnavailable("the model service cannot be reached", retry_after=None, sent=False)
        return ModelUnavailable("the connection to the model service failed", retry_after=None)
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelBadResponse("the model service answered with a body that is not a chat completion")
    if not isinstance(exc, openai.APIStatusError):
        return ModelBadResponse(f"unexpected model client error: {type(exc).__name__}")
    status = exc.status_code
    error = _error_body(exc)
    code = str(error.get("code") or "")
    retry_after = _retry_after_seconds(exc.response)
    if status == 429:
        return ModelThrottled("the model service is rate limiting this deployment", retry_after=retry_after)
    if status >= 500:
        return ModelUnavailable(f"the model service failed with HTTP {status}", retry_after=retry_after)
    if code == "content_filter":
        inner = error.get("innererror") or error.get("inner_error") or {}
        result = inner.get("content_filter_result") or inner.get("content_filter_results") or {}
        return ContentFiltered(
            "the prompt was blocked by the content filter",
            where="prompt",
            categories=_filtered_categories(result),
        )
    if status in (401, 403):
        return ModelError(
            f"the model service refused our credentials (HTTP {status}); check AZURE_OPENAI_API_KEY "
            "or that the Function's identity has the 'Cognitive Services OpenAI User' role"
        )
    if status == 404:
        return ModelError(
            f"the model service has no deployment {deployment!r} (HTTP 404); check AZURE_OPENAI_DEPLOYMENT"
        )
    message = str(error.get("message") or exc.message)[:500]
    return ModelBadResponse(f"the model service rejected the request (HTTP {status}): {message}")


class OpenAIChatProvider(Provider):
    """Chat completions through an ``openai`` SDK async client (Azure or compatible)."""

    name = "openai_compatible"

    def __init__(self, client: openai.AsyncOpenAI, *, model: str, deployment: str | None = None,
                 credential: str | None = None, limiter: DeploymentLimiter | None = None,
                 max_retries: int = 2, default_deadline_seconds: float = 30.0,
                 pricing_model: str | None = None) -> None:
        self._client = client
        self._model = model
        self._deployment = deployment or model
        #: The model this deployment runs, for prices and token rules (None: the settings' estimation model).
        self.pricing_model = pricing_model
        self._credential = credential
        #: Admission to the deployment's quota; unlimited until the service's headers teach it one.
        self._limiter = limiter or DeploymentLimiter(self._deployment)
        #: Retries of 5xx, timeouts and connection failures (throttling is waited out instead).
        self._max_retries = max_retries
        #: How long a call may wait when the edge set no deadline (see shared.quota.deadline).
        self._default_deadline_seconds = default_deadline_seconds

    @property
    def model(self) -> str:
        return self._model

    @property
    def deployment(self) -> str:
        return self._deployment

    @property
    def limiter(self) -> DeploymentLimiter:
        """This deployment's quota and health in this process (shared with every provider for it)."""
        return self._limiter

    async def complete(self, request: VisionRequest) -> Completion:
        # One span and one structured log per call, its retries and quota waits included (shared.telemetry).
        with model_call_span(deployment=self._deployment, model=self._model, provider=self.name) as call:
            charge = estimate_charge(_message_texts(request), [image.estimated_tokens for image in request.images],
                                     request.max_tokens)
            call.charge_estimate = charge
            deadline = current_deadline()
            if deadline is None:
                deadline = time.monotonic() + self._default_deadline_seconds
            (completion, rate_limit), stats = await call_with_retries(
                lambda: self._attempt(request), limiter=self._limiter, charge=charge,
                max_retries=self._max_retries, deadline=deadline)
            answer = replace(self._to_completion(completion, rate_limit), call=stats.as_dict())
            call.record(answer)
            return answer

    async def _attempt(self, request: VisionRequest) -> Answer[tuple[Any, dict[str, str]]]:
        """One HTTP call; SDK errors translated here, the one place."""
        try:
            extra: dict[str, Any] = {}
            if request.response_format is not None:
                extra["response_format"] = request.response_format
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self._model,
                messages=build_messages(request),  # type: ignore[arg-type]
                max_tokens=request.max_tokens,
                **extra,
            )
            completion = raw.parse()
        except CLIENT_ERRORS as exc:
            raise translate_openai_error(exc, deployment=self._deployment, credential=self._credential) from exc
        rate_limit = {
            name: value
            for name, value in raw.headers.items()
            if name.lower().startswith("x-ratelimit-remaining")
        }
        return Answer((completion, rate_limit), {k.lower(): v for k, v in raw.headers.items()})

    def _to_completion(self, completion: Any, rate_limit: dict[str, str]) -> Completion:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ModelBadResponse("the model service answered without any choices")
        choice = choices[0]
        finish_reason = getattr(choice, "finish_reason", None)
        if finish_reason == "content_filter":
            extra = getattr(choice, "model_extra", None) or {}
            raise ContentFiltered(
                "the answer was blocked by the content filter",
                where="completion",
                categories=_filtered_categories(extra.get("content_filter_results")),
            )
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise ModelBadResponse(f"the model refused to answer: {str(refusal)[:300]}")
        if not isinstance(text, str) or not text.strip():
            raise ModelBadResponse("the model service answered with an empty message")
        usage = getattr(completion, "usage", None)
        return Completion(
            text=text,
            model=str(getattr(completion, "model", None) or self._model),
            usage=Usage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            ),
            finish_reason=finish_reason,
            rate_limit=rate_limit,
            deployment=self._deployment,
            pricing_model=self.pricing_model,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def describe(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self._model, "base_url": str(self._client.base_url)}


class AzureOpenAIProvider(OpenAIChatProvider):
    """Azure OpenAI: key for local work, Entra ID (keyless) everywhere else."""

    name = "azure_openai"

    def __init__(self, client: openai.AsyncAzureOpenAI, *, deployment: str, auth: str,
                 credential: str | None = None, **pacing: Any) -> None:
        super().__init__(client, model=deployment, deployment=deployment, credential=credential, **pacing)
        self._auth = auth

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "deployment": self._deployment,
            "endpoint": str(self._client.base_url).split("/openai")[0],
            "auth": self._auth,
        }
