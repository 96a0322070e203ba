"""The provider the settings name: Azure OpenAI, an OpenAI-compatible server, the offline engine, or none.

Keyless (Entra ID) access needs a credential. It is not made here: the composition root
(:mod:`shared.services`) owns the process's one credential and hands in a factory, called only
when no key is configured, so key-based and offline runs never load azure-identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import openai

from shared.config import Settings
from shared.errors import ConfigError
from shared.providers.base import Provider, UnconfiguredProvider
from shared.providers.openai_chat import AzureOpenAIProvider, OpenAIChatProvider
from shared.quota.limiter import process_limiter

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


def build_provider(settings: Settings, *, http_client: Any = None,
                   credential: Callable[[], TokenCredential] | None = None) -> Provider:
    """The provider the settings describe; ``http_client`` lets tests swap the transport.

    ``credential`` makes the Entra ID credential (see :func:`shared.services.default_credential`);
    it is required only for Azure OpenAI without ``AZURE_OPENAI_API_KEY``.
    """
    common: dict[str, Any] = {
        "timeout": settings.model_timeout_seconds,
        "max_retries": 0,  # one retry layer, ours (shared.quota.retry), never two stacked
    }
    limiter = process_limiter(tpm=settings.tpm_limit, rpm=settings.rpm_limit, instances=settings.instances)
    pacing: dict[str, Any] = {"max_retries": settings.model_max_retries,
                              "default_deadline_seconds": settings.http_deadline_seconds}
    if http_client is not None:
        common["http_client"] = http_client
    if settings.model_provider == "azure_openai":
        assert settings.azure_openai_deployment is not None
        credential_name = None
        if settings.azure_openai_api_key:
            auth = "key"
            credentials: dict[str, Any] = {"api_key": settings.azure_openai_api_key}
        else:
            auth = "entra_id"
            token_provider, credential_name = _entra_token_provider(credential)
            credentials = {"azure_ad_token_provider": token_provider}
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=settings.azure_openai_endpoint,
            api_version=settings.azure_openai_api_version,
            **credentials,
            **common,
        )
        return AzureOpenAIProvider(client, deployment=settings.azure_openai_deployment, auth=auth,
                                   credential=credential_name,
                                   limiter=limiter.deployment(f"{settings.azure_openai_endpoint}|"
                                                              f"{settings.azure_openai_deployment}"),
                                   **pacing)
    if settings.model_provider == "openai_compatible":
        assert settings.openai_model is not None
        client = openai.AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key or "not-needed",
            **common,
        )
        return OpenAIChatProvider(client, model=settings.openai_model,
                                  limiter=limiter.deployment(f"{settings.openai_base_url}|{settings.openai_model}"),
                                  **pacing)
    if settings.uses_local_engine:
        from shared.providers.local import LocalProvider  # lazily: the offline engine's imports are heavier

        return LocalProvider()
    return UnconfiguredProvider()


def _entra_token_provider(credential: Callable[[], TokenCredential] | None) -> tuple[Callable[[], str], str]:
    """The bearer-token callable the SDK asks before each request (azure-identity caches the token), and
    the credential's class name, which a token failure names."""
    if credential is None:
        raise ConfigError("AZURE_OPENAI_API_KEY", "is not set, and no Entra ID credential was given to use instead")
    from azure.identity import get_bearer_token_provider

    made = credential()
    return get_bearer_token_provider(made, ENTRA_SCOPE), type(made).__name__
