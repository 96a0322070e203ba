"""The long-lived parts of one worker process, built on first use: the composition root.

The HTTP app, the blob trigger and the CLI share one :class:`Services`: one settings
object, one model client (one connection pool), one cache client and one blob pipeline per
process, and two keyless credentials: an async one for the model calls, which run on the
event loop (a token refresh must not block it), and a sync one for the storage clients,
which are synchronous and run in worker threads. Building lazily means a bad setting becomes
a clear problem response or failed delivery naming the setting, not a host that cannot start.

Wiring lives here and only here (:func:`build_analyzer`, :func:`build_pipeline`,
:class:`CredentialFactory`), so the modules below never import the ones above them: the
analysis layer does not know which provider or storage it was given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.analysis import Analyzer
from shared.blob.pipeline import BlobPipeline
from shared.budget import DailyBudget, Pricing, build_budget
from shared.cache import AnswerCache
from shared.config import Settings, load_settings
from shared.providers.budgeted import BudgetedProvider
from shared.providers.factory import build_provider
from shared.storage import images_blob_service

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential


def default_credential() -> TokenCredential:
    """The Entra ID credential of the storage clients (answer cache, spend ledger, images account).

    Synchronous because those clients are: they run in worker threads, so a token refresh there
    blocks a thread, never the event loop. Imported lazily so key-based and offline runs never
    load azure-identity.
    """
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def default_async_credential() -> AsyncTokenCredential:
    """The Entra ID credential of the model calls, which run on the event loop.

    Async (``azure.identity.aio``, over aiohttp) so that the token refresh about once an hour
    (a managed identity endpoint or the CLI answering in up to seconds) awaits instead of
    stalling every other request on the loop. Imported lazily, as above.
    """
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


class CredentialFactory:
    """Makes the keyless credential on first call and hands out that one ever after; :meth:`aclose` closes it.

    A ``DefaultAzureCredential`` holds HTTP sessions (managed identity, the CLI's token
    cache), so whoever makes it must close it: :class:`Services` owns two (sync for storage,
    async for the model) and closes them in :meth:`Services.aclose`. Nothing is made, let
    alone imported, for key-based or offline runs.
    """

    def __init__(self, make: Callable[[], Any] = default_credential) -> None:
        self._make = make
        self._credential: Any = None

    def __call__(self) -> Any:
        if self._credential is None:
            self._credential = self._make()
        return self._credential

    async def aclose(self) -> None:
        """Close the credential if one was made: ``aclose`` or ``close``, awaited when it is a coroutine
        (``azure.identity.aio`` credentials have an async ``close``, sync ones a plain one)."""
        credential, self._credential = self._credential, None
        if credential is None:
            return
        closer = getattr(credential, "aclose", None) or getattr(credential, "close", None)
        if closer is not None and inspect.isawaitable(result := closer()):
            await result


def build_analyzer(settings: Settings, *, http_client: Any = None,
                   credential: Callable[[], TokenCredential] | None = None,
                   model_credential: Callable[[], AsyncTokenCredential] | None = None) -> Analyzer:
    """An :class:`Analyzer` wired from settings: the provider they name, the cache if enabled, the fallback.

    With ``VISION_DAILY_BUDGET_USD`` and a billed language model, the provider is wrapped in a
    :class:`~shared.providers.budgeted.BudgetedProvider` (the local fallback is not: it costs nothing);
    closing the analyzer closes its spend counter.

    ``credential`` makes the sync keyless credential the cache and the spend counter share,
    ``model_credential`` the async one the model client asks for tokens on the event loop; pass
    the owner's (:class:`Services` passes its own) so they get closed. Without them, factories
    of this analyzer's own are used.
    """
    credential = credential or CredentialFactory()
    model_credential = model_credential or CredentialFactory(default_async_credential)
    cache = AnswerCache.from_settings(settings, credential=credential) if settings.cache_enabled else None
    fallback = None
    if settings.local_fallback != "off" and settings.model_provider is not None:
        from shared.providers.local import LocalProvider  # lazily: the offline engine stands in only on outages

        fallback = LocalProvider()
    budget = build_budget(settings, credential=credential)  # before the model client: a ConfigError leaves none open
    provider = build_provider(settings, http_client=http_client, credential=model_credential)
    if budget is not None:
        provider = BudgetedProvider(provider, budget, Pricing.from_settings(settings))
    return Analyzer(settings, provider, cache, fallback)


def build_pipeline(analyzer: Analyzer, settings: Settings, *,
                   credential: Callable[[], TokenCredential]) -> BlobPipeline:
    """The blob pipeline over the images account the settings name (keyless with the owner's ``credential``)."""
    return BlobPipeline(analyzer, images_blob_service(settings, credential=credential), settings)


class Services:
    """One process's settings, credentials, analyzer and pipeline; :meth:`aclose` closes what was made."""

    def __init__(self, settings: Settings | None = None, analyzer: Analyzer | None = None,
                 pipeline: BlobPipeline | None = None, *, credential: CredentialFactory | None = None,
                 model_credential: CredentialFactory | None = None) -> None:
        self._settings = settings
        self._analyzer = analyzer
        self._pipeline = pipeline
        #: The process's sync keyless credential for storage clients, made on first use.
        self.credential = credential or CredentialFactory()
        #: The process's async keyless credential for model calls, made on first use.
        self.model_credential = model_credential or CredentialFactory(default_async_credential)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            self._analyzer = build_analyzer(self.settings, credential=self.credential,
                                            model_credential=self.model_credential)
        return self._analyzer

    @property
    def pipeline(self) -> BlobPipeline:
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.analyzer, self.settings, credential=self.credential)
        return self._pipeline

    @property
    def budget(self) -> DailyBudget | None:
        """Today's spend budget when one is enforced (``VISION_DAILY_BUDGET_USD`` and a billed model), else None."""
        provider = self.analyzer.provider
        return provider.budget if isinstance(provider, BudgetedProvider) else None

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the clients, then the credentials they authenticate with (each even if something before fails)."""
        try:
            if self._analyzer is not None:
                await self._analyzer.aclose()
            if self._pipeline is not None:
                self._pipeline.blob_service.close()
        finally:
            try:
                await self.model_credential.aclose()
            finally:
                await self.credential.aclose()
