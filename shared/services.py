"""The long-lived parts of one worker process, built on first use: the composition root.

The HTTP app, the blob trigger and the CLI share one :class:`Services`: one settings
object, one credential, one model client (one connection pool), one cache client and one
blob pipeline per process. Building lazily means a bad setting becomes a clear problem
response or failed delivery naming the setting, not a host that cannot start.

Wiring lives here and only here (:func:`build_analyzer`, :func:`build_pipeline`,
:func:`default_credential`), so the modules below never import the ones above them: the
analysis layer does not know which provider or storage it was given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.analysis import Analyzer
from shared.blob.pipeline import BlobPipeline
from shared.cache import AnswerCache
from shared.config import Settings, load_settings
from shared.providers.factory import build_provider
from shared.storage import images_blob_service

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

CredentialFactory = Callable[[], "TokenCredential"]


def default_credential() -> TokenCredential:
    """The Entra ID credential for keyless access to the model, the cache table and the images account.

    Imported lazily so key-based and offline runs never load azure-identity. The synchronous
    credential is used on purpose: the async one needs aiohttp, and azure-identity caches the
    token, so the blocking refresh happens about once an hour.
    """
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def build_analyzer(settings: Settings, *, http_client: Any = None,
                   credential: CredentialFactory | None = None) -> Analyzer:
    """An :class:`Analyzer` wired from settings: the provider they name, the cache if enabled, the fallback.

    ``credential`` makes the keyless credential when one is needed; by default one
    :func:`default_credential`, made at most once and shared by the provider and the cache.
    """
    credential = credential or functools.cache(default_credential)
    cache = AnswerCache.from_settings(settings, credential=credential) if settings.cache_enabled else None
    fallback = None
    if settings.local_fallback != "off" and settings.model_provider is not None:
        from shared.providers.local import LocalProvider  # lazily: the offline engine stands in only on outages

        fallback = LocalProvider()
    provider = build_provider(settings, http_client=http_client, credential=credential)
    return Analyzer(settings, provider, cache, fallback)


def build_pipeline(analyzer: Analyzer, settings: Settings, *,
                   credential: CredentialFactory | None = None) -> BlobPipeline:
    """The blob pipeline over the images account the settings name (keyless with ``credential``)."""
    credential = credential or functools.cache(default_credential)
    return BlobPipeline(analyzer, images_blob_service(settings, credential=credential), settings)


class Services:
    def __init__(self, settings: Settings | None = None, analyzer: Analyzer | None = None,
                 pipeline: BlobPipeline | None = None) -> None:
        self._settings = settings
        self._analyzer = analyzer
        self._pipeline = pipeline
        self._credential: TokenCredential | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def credential(self) -> TokenCredential:
        """The process's one keyless credential, made on first use (the factory handed to the builders)."""
        if self._credential is None:
            self._credential = default_credential()
        return self._credential

    @property
    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            self._analyzer = build_analyzer(self.settings, credential=self.credential)
        return self._analyzer

    @property
    def pipeline(self) -> BlobPipeline:
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.analyzer, self.settings, credential=self.credential)
        return self._pipeline

    async def aclose(self) -> None:
        if self._analyzer is not None:
            await self._analyzer.aclose()
        if self._pipeline is not None:
            self._pipeline.blob_service.close()
