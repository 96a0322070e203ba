"""The analysis service with the real cache on Azurite: pay once, survive storage outages."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.analysis import Analyzer
from shared.analysis_options import AnalysisOptions
from shared.config import Settings
from shared.errors import ContentFiltered
from shared.providers.base import Completion, Provider, Usage
from shared.services import build_analyzer
from tests.aoai_double import Reply
from tests.azurite import free_port


async def test_miss_then_hit_calls_the_model_once(make_settings, cache_settings, aoai, corpus):
    analyzer = build_analyzer(make_settings(**cache_settings))
    data = (corpus / "coffee.png").read_bytes()
    try:
        first = await analyzer.analyze(data, AnalysisOptions(prompt="What is this?"))
        second = await analyzer.analyze(data, AnalysisOptions(prompt="What is this?"))
    finally:
        await analyzer.aclose()
    assert first["cached"] is False
    assert second["cached"] is True
    assert second["analysis"] == first["analysis"]
    assert second["usage"] == first["usage"]
    assert second["image"] == first["image"]
    assert len(aoai.requests) == 1


async def test_cache_survives_a_new_process(make_settings, cache_settings, aoai, corpus):
    """A second analyzer (another worker) finds the first one's answer in Table Storage."""
    data = (corpus / "chelsea.png").read_bytes()
    for expected_cached in (False, True):
        analyzer = build_analyzer(make_settings(**cache_settings))
        try:
            result = await analyzer.analyze(data, AnalysisOptions())
        finally:
            await analyzer.aclose()
        assert result["cached"] is expected_cached
    assert len(aoai.requests) == 1


async def test_anything_that_changes_the_answer_misses(make_settings, cache_settings, aoai, corpus):
    analyzer = build_analyzer(make_settings(**cache_settings))
    data = (corpus / "chelsea.png").read_bytes()
    variants = [
        AnalysisOptions(),
        AnalysisOptions(prompt="Another question"),
        AnalysisOptions(detail="high"),
        AnalysisOptions(max_tokens=10),
        AnalysisOptions(task="ocr"),
    ]
    try:
        results = [await analyzer.analyze(data, options) for options in variants]
        other = await analyzer.analyze((corpus / "coffee.png").read_bytes(), AnalysisOptions())
    finally:
        await analyzer.aclose()
    assert [r["cached"] for r in results] == [False] * len(variants)
    assert other["cached"] is False
    assert len(aoai.requests) == len(variants) + 1


async def test_large_answer_round_trips_through_the_cache(make_settings, cache_settings, aoai, corpus):
    long_text = ("Línea con emoji 😀 y acentos. " * 4000)[:100_000]  # over one 32K-character property
    aoai.enqueue(Reply.ok(long_text))
    analyzer = build_analyzer(make_settings(**cache_settings))
    data = (corpus / "camera.png").read_bytes()
    try:
        first = await analyzer.analyze(data, AnalysisOptions())
        second = await analyzer.analyze(data, AnalysisOptions())
    finally:
        await analyzer.aclose()
    assert second["cached"] is True
    assert second["analysis"] == long_text == first["analysis"]


async def test_failures_are_not_cached(make_settings, cache_settings, aoai, corpus):
    aoai.enqueue(Reply.content_filter_completion())
    analyzer = build_analyzer(make_settings(**cache_settings))
    data = (corpus / "astronaut.png").read_bytes()
    try:
        with pytest.raises(ContentFiltered):
            await analyzer.analyze(data, AnalysisOptions())
        second = await analyzer.analyze(data, AnalysisOptions())
    finally:
        await analyzer.aclose()
    assert second["cached"] is False
    assert len(aoai.requests) == 2


async def test_storage_down_still_answers_uncached_and_logs(make_settings, aoai, corpus, caplog):
    dead = free_port()
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"TableEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;"
        f"BlobEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;"
    )
    settings = make_settings(VISION_CACHE_ENABLED="true", AzureWebJobsStorage=connection)
    analyzer = build_analyzer(settings)
    data = (corpus / "chelsea.png").read_bytes()
    caplog.set_level(logging.WARNING)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(analyzer.analyze(data, AnalysisOptions(prompt=f"q{i}")) for i in range(2))),
            timeout=60,
        )
    finally:
        await analyzer.aclose()
    assert [r["cached"] for r in results] == [False, False]
    assert len(aoai.requests) == 2
    assert any("cache" in record.getMessage().lower() for record in caplog.records)
    assert "Eby8vdM02x" not in caplog.text


async def test_concurrent_identical_requests_share_one_model_call(make_settings, aoai, corpus):
    aoai.enqueue(Reply.timeout(seconds=0.5, then=Reply.ok("slow answer")))
    analyzer = build_analyzer(make_settings())
    data = (corpus / "chelsea.png").read_bytes()
    try:
        results = await asyncio.gather(*(analyzer.analyze(data, AnalysisOptions()) for _ in range(5)))
    finally:
        await analyzer.aclose()
    assert {r["analysis"] for r in results} == {"slow answer"}
    assert len(aoai.requests) == 1


class GatedProvider(Provider):
    """Answers only once the test opens the gate, so callers can be made to wait on one call in flight."""

    name = "gated"

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = False
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def complete(self, request):
        self.calls += 1
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return Completion("the shared answer", "gated-model", Usage(100, 5), "stop")


class MemoryCache:
    """The two calls the analyzer makes of a cache; ``lookups`` counts them, so a test knows who has arrived."""

    def __init__(self) -> None:
        self.stored: dict[str, dict] = {}
        self.lookups = 0
        self.arrived = asyncio.Condition()

    async def aget(self, key):
        async with self.arrived:
            self.lookups += 1
            self.arrived.notify_all()
        return self.stored.get(key)

    async def aput(self, key, value):
        self.stored[key] = value

    def close(self):
        pass


async def test_a_cancelled_caller_leaves_the_others_on_the_same_key_their_answer(corpus):
    """The first caller's client goes away mid-call: the second still gets the answer, from one model call,
    and it is cached for whoever asks next."""
    provider, cache = GatedProvider(), MemoryCache()
    analyzer = Analyzer(Settings.from_mapping({}), provider, cache)
    data = (corpus / "chelsea.png").read_bytes()
    first = asyncio.create_task(analyzer.analyze(data, AnalysisOptions()))
    await provider.started.wait()
    second = asyncio.create_task(analyzer.analyze(data, AnalysisOptions()))
    async with cache.arrived:  # past its cache miss, the second caller joins the call in flight
        await cache.arrived.wait_for(lambda: cache.lookups == 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    provider.gate.set()
    result = await second
    third = await analyzer.analyze(data, AnalysisOptions())
    await analyzer.aclose()
    assert result["analysis"] == "the shared answer" and result["cached"] is False
    assert third["analysis"] == "the shared answer" and third["cached"] is True
    assert provider.calls == 1 and not provider.cancelled


async def test_work_finishes_and_is_cached_when_every_caller_has_left(corpus):
    """A retry after a client timeout finds the answer the abandoned call paid for."""
    provider, cache = GatedProvider(), MemoryCache()
    analyzer = Analyzer(Settings.from_mapping({}), provider, cache)
    data = (corpus / "chelsea.png").read_bytes()
    caller = asyncio.create_task(analyzer.analyze(data, AnalysisOptions()))
    await provider.started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    provider.gate.set()
    retry = await analyzer.analyze(data, AnalysisOptions())
    await analyzer.aclose()
    assert retry["analysis"] == "the shared answer"
    assert provider.calls == 1 and len(cache.stored) == 1


async def test_aclose_cancels_and_awaits_the_work_in_flight(corpus):
    """Shutting down must not leave a model call running on a closed provider."""
    provider = GatedProvider()
    analyzer = Analyzer(Settings.from_mapping({}), provider, None)
    caller = asyncio.create_task(analyzer.analyze((corpus / "chelsea.png").read_bytes(), AnalysisOptions()))
    await provider.started.wait()
    await analyzer.aclose()
    assert provider.cancelled
    with pytest.raises(asyncio.CancelledError):
        await caller
