"""The provider the settings name: Azure OpenAI, an OpenAI-compatible server, the offline engine, or none.

Keyless (Entra ID) access needs a credential. It is not made here: the composition root
(:mod:`shared.services`) owns the process's async credential and hands in a factory, called only
when no key is configured, so key-based and offline runs never load azure-identity. The token
provider is async (``azure.identity.aio``): the SDK awaits it before each request, on the event
loop, so a token refresh never blocks the other requests there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx2
import openai

from shared.config import Settings
from shared.errors import ConfigError
from shared.providers.base import Provider, UnconfiguredProvider
from shared.providers.failover import FailoverProvider
from shared.providers.openai_chat import AzureOpenAIProvider, OpenAIChatProvider
from shared.quota.breaker import CircuitBreaker, process_breaker
from shared.quota.limiter import process_limiter
from shared.tokens import known_model, load_model_overrides

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


def build_provider(settings: Settings, *, http_client: Any = None,
                   credential: Callable[[], AsyncTokenCredential] | None = None) -> Provider:
    """The provider the settings describe; ``http_client`` lets tests swap the transport.

    ``credential`` makes the async Entra ID credential (see :func:`shared.services.default_async_credential`);
    it is required only for Azure OpenAI without ``AZURE_OPENAI_API_KEY``. A language model comes
    as a :class:`FailoverProvider`: the primary deployment, then ``VISION_FALLBACK_DEPLOYMENTS``,
    each behind the process's breaker for it.
    """
    if settings.model_provider is None:
        if settings.uses_local_engine:
            from shared.providers.local import LocalProvider  # lazily: the offline engine's imports are heavier

            return LocalProvider()
        return UnconfiguredProvider()
    # The connect timeout is short: an endpoint that does not accept a connection in seconds is down,
    # and the breaker and the fallbacks should know soon. Reading the answer may take the model's time.
    common: dict[str, Any] = {
        "timeout": httpx2.Timeout(settings.model_timeout_seconds, connect=settings.connect_timeout_seconds),
        "max_retries": 0,  # one retry layer, ours (shared.quota.retry), never two stacked
    }
    if http_client is not None:
        common["http_client"] = http_client
    overrides = load_model_overrides(settings.model_table_json) if settings.model_table_json else None
    primary_endpoint = settings.azure_openai_endpoint or settings.openai_base_url
    assert primary_endpoint is not None and settings.deployment_name is not None
    entries = [(settings.deployment_name, primary_endpoint, settings.estimation_model)]
    for name, endpoint in settings.fallback_deployments:
        entries.append((name, endpoint or primary_endpoint, known_model(name, overrides) or settings.estimation_model))
    clients: dict[str, tuple[openai.AsyncOpenAI, str, str | None]] = {}
    chain: list[tuple[OpenAIChatProvider, CircuitBreaker]] = []
    for index, (name, endpoint, pricing_model) in enumerate(entries):
        if endpoint not in clients:
            clients[endpoint] = _client(settings, endpoint, common, credential)
        client, auth, credential_name = clients[endpoint]
        # The primary paces to VISION_TPM_LIMIT; a fallback's quota is its own, learnt from its answers.
        limiter = process_limiter(tpm=settings.tpm_limit if index == 0 else None,
                                  rpm=settings.rpm_limit if index == 0 else None,
                                  instances=settings.instances).deployment(f"{endpoint}|{name}")
        pacing: dict[str, Any] = {"max_retries": settings.model_max_retries, "limiter": limiter,
                                  "default_deadline_seconds": settings.http_deadline_seconds,
                                  "pricing_model": pricing_model}
        provider: OpenAIChatProvider
        if settings.model_provider == "azure_openai":
            assert isinstance(client, openai.AsyncAzureOpenAI)
            provider = AzureOpenAIProvider(client, deployment=name, auth=auth, credential=credential_name, **pacing)
        else:
            provider = OpenAIChatProvider(client, model=name, **pacing)
        breaker = process_breaker(f"{endpoint}|{name}", failures=settings.breaker_failures,
                                  cooldown_seconds=settings.breaker_cooldown_seconds)
        chain.append((provider, breaker))
    return FailoverProvider(chain)


def _client(settings: Settings, endpoint: str, common: dict[str, Any],
            credential: Callable[[], AsyncTokenCredential] | None) -> tuple[openai.AsyncOpenAI, str, str | None]:
    """An SDK client for ``endpoint``, its auth and credential name; deployments on one endpoint share it."""
    if settings.model_provider == "openai_compatible":
        client = openai.AsyncOpenAI(base_url=endpoint, api_key=settings.openai_api_key or "not-needed", **common)
        return client, "key", None
    credential_name = None
    if settings.azure_openai_api_key and endpoint == settings.azure_openai_endpoint:
        auth = "key"
        credentials: dict[str, Any] = {"api_key": settings.azure_openai_api_key}
    else:
        # Another region's resource has another key: fallbacks on other endpoints are always keyless.
        auth = "entra_id"
        token_provider, credential_name = _entra_token_provider(credential)
        credentials = {"azure_ad_token_provider": token_provider}
    client = openai.AsyncAzureOpenAI(azure_endpoint=endpoint, api_version=settings.azure_openai_api_version,
                                     **credentials, **common)
    return client, auth, credential_name


def _entra_token_provider(credential: Callable[[], AsyncTokenCredential] | None
                          ) -> tuple[Callable[[], Awaitable[str]], str]:
    """The async bearer-token callable the SDK awaits before each request, and the credential's class
    name, which a token failure names.

    azure-identity's policy behind it caches the token and asks the credential again only near
    expiry; the ask is awaited, so it never holds the event loop.
    """
    if credential is None:
        raise ConfigError("AZURE_OPENAI_API_KEY", "is not set, and no Entra ID credential was given to use instead")
    from azure.identity.aio import get_bearer_token_provider

    made = credential()
    return get_bearer_token_provider(made, ENTRA_SCOPE), type(made).__name__
