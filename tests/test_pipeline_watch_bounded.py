"""``watch`` polls for as long as it runs: memory and work per poll stay bounded (issue 9, part 3).

A fixed pool of workers (no task per blob), listings read a page at a time, and a bounded memory
of what is done, so a later poll reads no result of a blob it has already seen.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.blob.pipeline import Outcome
from shared.blob.watch import SeenBlobs, watch
from shared.services import Services

BLOBS = 300
CONCURRENCY = 4


class CountingContainer:
    """A container client that counts listings and per-blob clients (every read of a result goes through one)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.listings: list[dict[str, Any]] = []
        self.clients: Counter[str] = Counter()

    def list_blobs(self, *args: Any, **kwargs: Any) -> Any:
        self.listings.append(kwargs)
        return self._real.list_blobs(*args, **kwargs)

    def get_blob_client(self, name: str) -> Any:
        self.clients[name] += 1
        return self._real.get_blob_client(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class RecordingHandler:
    """Stands in for ``BlobPipeline.handle``: records calls, calls in flight and the tasks alive meanwhile."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.peak_tasks = 0

    async def __call__(self, blob: Any, *, force: bool = False, **hints: Any) -> Outcome:
        self.calls[blob.blob_name] += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.peak_tasks = max(self.peak_tasks, len(asyncio.all_tasks()))
        try:
            for _ in range(3):  # let the other workers and the producer run meanwhile
                await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
        return Outcome(blob.blob_name, "succeeded")


@pytest.fixture
async def pipeline(make_settings, storage_connection_string):
    tag = uuid.uuid4().hex[:10]
    services = Services(make_settings(AzureWebJobsStorage=storage_connection_string, VISION_PROVIDER="none",
                                      AZURE_OPENAI_ENDPOINT="", VISION_INPUT_CONTAINER=f"in-{tag}",
                                      VISION_RESULTS_CONTAINER=f"out-{tag}", VISION_QUARANTINE_CONTAINER=f"bad-{tag}"))
    pipeline = services.pipeline
    pipeline.ensure_containers()
    yield pipeline
    await services.aclose()


@pytest.mark.azurite
@pytest.mark.timeout(180)
async def test_a_poll_is_bounded_and_a_second_poll_reads_no_result_again(pipeline):
    names = [f"many/{index:04d}.png" for index in range(BLOBS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: pipeline.inputs.upload_blob(name, b"tiny"), names))
    results = CountingContainer(pipeline.results)
    inputs = CountingContainer(pipeline.inputs)
    pipeline.results, pipeline.inputs = results, inputs
    handler = RecordingHandler()
    pipeline.handle = handler

    summary = await watch(pipeline, interval=0, iterations=2, concurrency=CONCURRENCY, page_size=50)

    assert summary.counts["succeeded"] == BLOBS
    assert set(handler.calls) == set(names) and set(handler.calls.values()) == {1}  # not again on poll 2
    assert 1 <= handler.peak_in_flight <= CONCURRENCY
    # The test's task, the producer and the workers: a fixed pool, not one task per blob.
    assert handler.peak_tasks <= CONCURRENCY + 3
    # Results: one paged listing (to remember what is done) and no read of any: that listing was complete.
    assert len(results.listings) == 1 and sum(results.clients.values()) == 0
    assert len(inputs.listings) == 2  # one listing of the inputs per poll, read in pages
    assert all(listing.get("results_per_page") == 50 for listing in inputs.listings)


def test_seen_blobs_is_a_bounded_lru():
    seen = SeenBlobs(limit=3)
    keys = [SeenBlobs.key(f"b{i}.png", f'"0x{i}"') for i in range(3)]
    for key in keys:
        seen.add(key)
    assert keys[0] in seen  # touched: now the most recent
    seen.add(SeenBlobs.key("b3.png", "0x3"))
    assert len(seen) == 3 and keys[1] not in seen and keys[0] in seen
    assert SeenBlobs.key("b0.png", '"0x0"') == ("b0.png.json", "0x0")  # result metadata keeps ETags unquoted
