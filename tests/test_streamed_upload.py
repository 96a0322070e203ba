"""Uploads hashed as they stream in, and an app that keeps answering while one is worked on (issue 13).

The real FastAPI app through httpx's ASGI transport (same event loop, bodies streamed chunk by chunk) and the
real openai SDK against the Azure OpenAI double. A raw body's parameters are all in the query string, so its
cache key is fed the bytes as they arrive; the key must be the one the bytes give (a multipart upload of the
same image and parameters shares the cache entry).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from shared import analysis
from shared.analysis import Analyzer, StreamedKey
from shared.analysis_options import AnalysisOptions
from shared.http import uploads
from shared.http.uploads import INLINE_HASH_BYTES, digested
from tests.conftest import encode

QUERY = {"prompt": "What is it?", "detail": "low", "max_tokens": "40", "task": "describe"}


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """A noisy 1200 x 900 PNG of about 3 MiB: several chunks, some over the inline-hash size."""
    return encode(Image.effect_noise((1200, 900), 64).convert("RGB"), "PNG")


async def in_chunks(data: bytes, sizes: tuple[int, ...]) -> AsyncIterator[bytes]:
    """The body as a chunked stream (no Content-Length), of these sizes then the rest."""
    start = 0
    for size in sizes:
        yield data[start:start + size]
        start += size
        await asyncio.sleep(0)
    yield data[start:]


@pytest.fixture
def keys(monkeypatch) -> dict[str, list]:
    """The key of every analysis the app runs, and every time the bytes were hashed after the upload."""
    seen: dict[str, list] = {"keys": [], "rehashed": []}
    real_cached, real_cache_key = Analyzer.cached, analysis.cache_key

    async def cached(self, key, compute):
        seen["keys"].append(key.value)
        return await real_cached(self, key, compute)

    def cache_key(data, **fields):
        seen["rehashed"].append(len(data))
        return real_cache_key(data, **fields)

    monkeypatch.setattr(Analyzer, "cached", cached)
    monkeypatch.setattr(analysis, "cache_key", cache_key)
    return seen


async def test_a_raw_upload_is_keyed_as_it_streams_with_the_key_the_bytes_give(
        make_settings, make_client, aoai, big_png, keys):
    settings = make_settings()
    client = await make_client(settings)
    raw = await client.post("/api/analyze", params=QUERY, content=in_chunks(big_png, (1000, INLINE_HASH_BYTES + 1)),
                            headers={"content-type": "image/png"})
    assert raw.status_code == 200, raw.text
    assert keys["rehashed"] == []  # the digest fed while streaming was the key: no second pass over the bytes
    multipart = await client.post("/api/analyze", files={"file": ("a.png", big_png, "image/png")}, data=QUERY)
    assert multipart.status_code == 200, multipart.text
    assert keys["rehashed"] == [len(big_png)]
    analyzer: Analyzer = client._transport.app.state.services.analyzer  # type: ignore[attr-defined]
    options = AnalysisOptions(prompt="What is it?", detail="low", max_tokens=40, task="describe")
    expected = analyzer.key_for(big_png, analysis.validate_options(options, settings)).value
    assert keys["keys"] == [expected, expected]


async def test_bad_query_parameters_on_a_raw_upload_are_still_a_400(make_settings, make_client, aoai, png_bytes, keys):
    client = await make_client(make_settings())
    response = await client.post("/api/analyze?detail=ultra", content=png_bytes)
    assert response.status_code == 400 and "detail" in response.json()["detail"]
    assert keys["keys"] == [] and aoai.requests == []


def test_a_streamed_key_is_refused_for_other_options_or_bytes(make_analyzer, make_settings):
    analyzer = make_analyzer(make_settings())
    options = analysis.validate_options(AnalysisOptions(detail="low"), analyzer.settings)
    streamed = analyzer.start_analysis_key(options)
    streamed.update(b"abc")
    assert analyzer.key_for(b"abc", options, streamed=streamed).value == analyzer.key_for(b"abc", options).value
    with pytest.raises(ValueError, match="other options or other bytes"):
        analyzer.key_for(b"abcd", options, streamed=streamed)
    with pytest.raises(ValueError, match="other options or other bytes"):
        analyzer.key_for(b"abc", analysis.validate_options(AnalysisOptions(detail="high"), analyzer.settings),
                         streamed=streamed)


async def test_large_chunks_are_hashed_in_a_worker_thread_small_ones_inline():
    threads: list[tuple[int, str]] = []

    class Recording:
        def update(self, chunk: bytes) -> None:
            threads.append((len(chunk), threading.current_thread().name))

    async def body() -> AsyncIterator[bytes]:
        for size in (10, INLINE_HASH_BYTES, INLINE_HASH_BYTES + 1, 5 << 20):
            yield bytes(size)

    passed = [len(chunk) async for chunk in digested(body(), Recording())]
    main = threading.main_thread().name
    assert passed == [size for size, _ in threads] == [10, INLINE_HASH_BYTES, INLINE_HASH_BYTES + 1, 5 << 20]
    assert [name == main for _, name in threads] == [True, True, False, False]


# -- the app answers while an upload is hashed and prepared -------------------------------------------------


class Gate:
    """Holds a worker-thread step until the test releases it; records whether the release came in time.

    If the step ran on the event loop instead, the loop would be stuck in :meth:`hold`: the concurrent
    health request could not be answered, the test could not release the gate, and ``in_time`` is False.
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.in_time: bool | None = None
        self.thread: str | None = None

    def hold(self) -> None:
        self.thread = threading.current_thread().name
        self.entered.set()
        self.in_time = self.released.wait(timeout=10)


@pytest.mark.parametrize("step", ["hash", "prepare"])
async def test_health_answers_while_a_large_upload_is_hashed_and_prepared(
        make_settings, make_client, aoai, big_png, monkeypatch, step):
    assert len(big_png) > uploads.INLINE_HASH_BYTES  # sent as one chunk: hashed in a worker thread
    gate = Gate()
    if step == "hash":
        real_update = StreamedKey.update

        def update(self, chunk: bytes) -> None:
            if len(chunk) > INLINE_HASH_BYTES:
                gate.hold()
            real_update(self, chunk)

        monkeypatch.setattr(StreamedKey, "update", update)
    else:
        real_prepare = analysis.prepare_image

        def prepare(*args, **kwargs):
            gate.hold()
            return real_prepare(*args, **kwargs)

        monkeypatch.setattr(analysis, "prepare_image", prepare)
    client = await make_client(make_settings())
    upload = asyncio.create_task(client.post("/api/analyze", params=QUERY, content=big_png))  # one 3 MiB chunk
    try:
        assert await asyncio.to_thread(gate.entered.wait, 10), "the upload never reached the gated step"
        health = await asyncio.wait_for(client.get("/api/health"), 10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert not upload.done()  # answered while the upload was held in its worker thread
    finally:
        gate.released.set()
    response = await asyncio.wait_for(upload, 30)
    assert response.status_code == 200, response.text
    assert gate.in_time is True and gate.thread != threading.main_thread().name


async def test_health_answers_and_the_default_pool_stays_free_while_ocr_requests_queue(make_client, monkeypatch):
    """More OCR requests at once than the default thread pool has threads: they queue in the offline engine's own
    one-thread executor, so while the first is held in OCR the app answers /api/health and a job on the default
    pool (where storage calls and image preparation run) still gets a thread at once."""
    import os

    from shared.config import Settings
    from shared.offline import engine
    from shared.providers import local
    from tests.conftest import distinct_png

    default_pool = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor size
    count = default_pool + 2
    gate, queued, inside, peak = Gate(), [], [0], [0]
    lock = threading.Lock()
    real_in_ocr_thread, real_ocr = local._in_ocr_thread, engine.ocr

    async def in_ocr_thread(function, *args):
        queued.append(function)
        return await real_in_ocr_thread(function, *args)

    def ocr(image):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        try:
            gate.hold()  # every OCR holds its thread until released: on a shared pool they would exhaust it
            return real_ocr(image)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(local, "_in_ocr_thread", in_ocr_thread)
    monkeypatch.setattr(engine, "ocr", ocr)
    client = await make_client(Settings.from_mapping({"VISION_CACHE_ENABLED": "false"}))  # no model: offline engine
    requests = [asyncio.create_task(client.post("/api/analyze", params={"task": "ocr"}, content=distinct_png(i)))
                for i in range(count)]
    try:
        assert await asyncio.to_thread(gate.entered.wait, 30), "no OCR started"
        for _ in range(300):  # every request past its preparation and waiting for the engine's thread
            if len(queued) == count:
                break
            await asyncio.sleep(0.05)
        assert len(queued) == count
        health = await asyncio.wait_for(client.get("/api/health"), 10)
        assert health.status_code == 200
        assert await asyncio.wait_for(asyncio.to_thread(threading.current_thread), 5) is not None
        assert not any(request.done() for request in requests)
    finally:
        gate.released.set()
    responses = await asyncio.wait_for(asyncio.gather(*requests), 120)
    assert [response.status_code for response in responses] == [200] * count
    assert peak[0] == 1  # one OCR at a time, on the engine's own thread
    assert gate.thread.startswith("ocr")
