"""The long-lived parts of one worker process, built on first use.

The HTTP app, the blob trigger and the CLI share one :class:`Services`: one settings
object, one model client (one connection pool), one cache client and one blob pipeline
per process. Building lazily means a bad setting becomes a clear problem response or
failed delivery naming the setting, not a host that cannot start.
"""

from __future__ import annotations

from shared.analysis import Analyzer, build_analyzer
from shared.config import Settings, load_settings
from shared.pipeline import BlobPipeline, build_pipeline


class Services:
    def __init__(self, settings: Settings | None = None, analyzer: Analyzer | None = None,
                 pipeline: BlobPipeline | None = None) -> None:
        self._settings = settings
        self._analyzer = analyzer
        self._pipeline = pipeline

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            self._analyzer = build_analyzer(self.settings)
        return self._analyzer

    @property
    def pipeline(self) -> BlobPipeline:
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.analyzer, self.settings)
        return self._pipeline

    async def aclose(self) -> None:
        if self._analyzer is not None:
            await self._analyzer.aclose()
        if self._pipeline is not None:
            self._pipeline.blob_service.close()
