"""Run the blob pipeline without the Functions host: ``watch`` (poll) and ``process`` (backfill).

Both call exactly the handler the blob trigger calls (:meth:`BlobPipeline.handle`), so a
result is the same whoever produced it.

Memory and work per pass are bounded whatever the container holds, because ``watch`` polls
every few seconds for as long as it runs:

* listings are read a page at a time (``by_page``), never materialised whole;
* what is known to be done is remembered as (result name, source ETag) in a bounded LRU
  (:class:`SeenBlobs`), seeded once from a paged listing of the results container (result
  blobs carry ``source_etag`` and ``status`` as metadata), so a later poll lists the inputs
  and reads nothing else for blobs it has already seen;
* a blob not seen costs one read of its result's properties, then the handler, both in a
  fixed pool of ``concurrency`` workers fed through a bounded queue (no task per blob);
* in the pass that seeded the memory from a complete listing, not even that read: a blob without
  a final result there has none, or an unfinished one the seed noted. The handler gets the listed
  properties (inputs are listed with their metadata) and whether a result exists, so a new blob
  costs three storage calls (claim, download, result) instead of six. At the quota, a backfill is
  bound by the CPU those calls take (``benchmarks/bench_quota.py``).

Transient failures are retried with tenacity (exponential back-off); the result document
counts attempts, so after ``VISION_MAX_ATTEMPTS`` the failure is recorded, never lost.

A blob deferred by the daily spend budget (:class:`~shared.blob.deferral.BlobDeferred`) is not
retried: every other blob would be refused the same way until the reset, so the scanner stops
handing blobs to the pipeline until then (``watch`` keeps polling and resumes by itself; ``process``
counts the rest as ``deferred``, to be done by a run after the reset). Deferred blobs are never
remembered as done.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm

from shared.blob.claims import TERMINAL
from shared.blob.deferral import BlobDeferred
from shared.blob.jobs import result_name
from shared.blob.pipeline import BlobPipeline, Outcome, TransientFailure
from shared.errors import describe

log = logging.getLogger(__name__)

#: Default size of the seen-set: (result name, ETag) pairs, a few MB at most.
SEEN_LIMIT = 100_000


@dataclass
class Summary:
    """What a pass did, by outcome, plus the blobs still failing transiently."""

    counts: Counter = field(default_factory=Counter)
    unresolved: list[str] = field(default_factory=list)
    #: When the daily spend budget deferred blobs: the UTC midnight after which they can be done.
    resets_at: str | None = None

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1

    def line(self) -> str:
        done = self.counts["succeeded"]
        text = f"done: {done}, skipped: {self.counts['skipped']}, failed: {self.counts['failed']}"
        if self.counts["deferred"]:
            text += f", deferred: {self.counts['deferred']} (daily spend budget used up; until {self.resets_at})"
        return text + (f", still retrying: {len(self.unresolved)}" if self.unresolved else "")


class SeenBlobs:
    """(result name, source ETag) pairs whose result is final: an LRU of at most ``limit`` entries.

    Forgetting is safe: a forgotten blob costs one more read of its result's properties.
    """

    def __init__(self, limit: int = SEEN_LIMIT) -> None:
        self.limit = max(1, limit)
        self._items: OrderedDict[tuple[str, str], None] = OrderedDict()

    @staticmethod
    def key(name: str, etag: Any) -> tuple[str, str]:
        """The key of input blob ``name`` at ``etag`` (result metadata stores ETags unquoted)."""
        return result_name(name), str(etag).strip('"')

    def __contains__(self, key: object) -> bool:
        if key in self._items:
            self._items.move_to_end(key)  # type: ignore[arg-type]
            return True
        return False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: tuple[str, str]) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)


def _next_page(pages: Iterator[Any]) -> list[Any] | None:
    """The next page of a listing (one service call, at most a page of items in memory), or None at the end."""
    page = next(pages, None)
    return None if page is None else list(page)


async def handle_with_retries(pipeline: BlobPipeline, name: str, *, force: bool = False,
                              wait_seconds: float = 1.0, max_wait_seconds: float = 30.0,
                              listed: Any = None, result_absent: bool = False) -> Outcome:
    """One blob, retried on transient failures until it succeeds or its failure is recorded.

    ``listed`` and ``result_absent`` (see :meth:`BlobPipeline.handle`) serve the first attempt only:
    a retry follows a failure, after which the blob and its result are read afresh.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception_type((TransientFailure, AzureError)),
        stop=stop_after_attempt(pipeline.settings.max_attempts + 3),
        wait=wait_exponential(multiplier=wait_seconds, max=max_wait_seconds),
        before_sleep=lambda state: log.info(
            "%s: retrying in %.1fs after %s", name, state.next_action.sleep if state.next_action else 0,
            describe(state.outcome.exception()) if state.outcome and state.outcome.exception() else "?",
        ),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            first = attempt.retry_state.attempt_number == 1
            return await pipeline.handle(pipeline.blob_client(name), force=force, listed=listed if first else None,
                                         result_absent=result_absent and first)
    raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or re-raises


class Scanner:
    """Passes over the input container, remembering across passes what is done (see module doc)."""

    def __init__(self, pipeline: BlobPipeline, *, prefix: str | None = None, force: bool = False,
                 concurrency: int = 4, wait_seconds: float = 1.0, seen_limit: int = SEEN_LIMIT,
                 page_size: int | None = None) -> None:
        self.pipeline = pipeline
        self.prefix = prefix or None
        self.force = force
        self.concurrency = max(1, concurrency)
        self.wait_seconds = wait_seconds
        self.page_size = page_size
        self.seen = SeenBlobs(seen_limit)
        self._seeded = False
        #: Results the seed listed that are not final (a claim in progress, a retry, a deferral).
        self._unfinished: set[str] = set()
        #: True during the pass whose seed listed every result: a name it did not list has no result.
        self._seed_complete = False
        #: The budget deferred a blob: until then (monotonic) no blob is handed to the pipeline.
        self._deferred_until = 0.0
        self._resets_at: str | None = None

    async def scan(self, *, progress: bool = False) -> Summary:
        """One pass: page through the inputs, ``concurrency`` workers handle what is not done."""
        await asyncio.to_thread(self.pipeline.ensure_containers)
        if not self._seeded and not self.force:
            await self._seed()
        else:
            self._seed_complete = False  # other writers may have added results since
        summary = Summary()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.concurrency)
        bar = tqdm(unit="blob", disable=not progress, file=sys.stderr)

        async def produce() -> None:
            async for item in self._inputs():
                await queue.put(item)
            for _ in range(self.concurrency):
                await queue.put(None)

        async def work() -> None:
            while (item := await queue.get()) is not None:
                if await self._one(item, summary):
                    bar.update(1)

        tasks = [asyncio.create_task(produce()), *(asyncio.create_task(work()) for _ in range(self.concurrency))]
        try:
            await asyncio.gather(*tasks)  # the first failure (a listing error) ends the pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
        return summary

    async def _pages(self, container: Any, **options: Any) -> AsyncIterator[Any]:
        pages = container.list_blobs(results_per_page=self.page_size, **options).by_page()
        while (page := await asyncio.to_thread(_next_page, pages)) is not None:
            for item in page:
                yield item

    async def _inputs(self) -> AsyncIterator[Any]:
        """The input blobs' properties, metadata included (what the handler would otherwise read per blob)."""
        async for item in self._pages(self.pipeline.inputs, name_starts_with=self.prefix, include=["metadata"]):
            yield item

    async def _seed(self) -> None:
        """Remember the final results a paged listing shows (up to the limit): a first pass reads no result twice."""
        start = result_name(self.prefix, "") if self.prefix else None
        complete = True
        async for item in self._pages(self.pipeline.results, name_starts_with=start, include=["metadata"]):
            metadata = item.metadata or {}
            if metadata.get("status") in TERMINAL and metadata.get("source_etag"):
                self.seen.add((item.name, metadata["source_etag"]))
            else:
                self._unfinished.add(item.name)
            if len(self.seen) + len(self._unfinished) >= self.seen.limit:
                complete = False
                break
        self._seeded = True
        self._seed_complete = complete

    def _needs_work(self, name: str, etag: Any) -> tuple[bool, bool]:
        """From the result's properties alone (one HEAD): (work to do, no result exists).

        Work: the result is missing, for another version, or not final.
        """
        try:
            properties = self.pipeline.results.get_blob_client(result_name(name)).get_blob_properties()
        except ResourceNotFoundError:
            return True, True
        return self.pipeline.needs_processing(name, etag, properties.metadata or {}), False

    async def _one(self, item: Any, summary: Summary) -> bool:
        """Handle one listed blob (its listed properties) unless it is done; True when the handler ran."""
        name, etag = item.name, item.etag
        key = SeenBlobs.key(name, etag)
        if key in self.seen and not self.force:
            return False
        if time.monotonic() < self._deferred_until:  # the budget is used up: every blob would be refused
            summary.counts["deferred"] += 1
            summary.resets_at = self._resets_at
            return False
        result_absent = False
        if self._seed_complete and not self.force:
            # The seed listed every result: none unfinished for this name, so none or a final one for an
            # older version (then the claim's create fails and it reads that one as usual).
            result_absent = key[0] not in self._unfinished
        elif not self.force:
            try:
                needed, result_absent = await asyncio.to_thread(self._needs_work, name, etag)
            except AzureError:
                needed = True  # the handler decides (its claim is conditional) and its retries apply
            if not needed:
                self.seen.add(key)
                return False
        try:
            outcome = await handle_with_retries(self.pipeline, name, force=self.force, wait_seconds=self.wait_seconds,
                                                listed=item, result_absent=result_absent)
        except BlobDeferred as exc:
            if time.monotonic() >= self._deferred_until:
                log.warning("%s; no blob is handed to the model until then", exc)
            self._deferred_until = time.monotonic() + exc.retry_after
            self._resets_at = summary.resets_at = exc.resets_at
            summary.counts["deferred"] += 1
        except (TransientFailure, AzureError) as exc:
            log.warning("%s: still failing after retries: %s", name, describe(exc))
            summary.unresolved.append(name)
        else:
            summary.add(outcome)
            if outcome.status in TERMINAL:
                self.seen.add(key)
        return True


async def process(pipeline: BlobPipeline, *, prefix: str | None = None, force: bool = False,
                  concurrency: int = 4, progress: bool = True, wait_seconds: float = 1.0) -> Summary:
    """Backfill: every unprocessed blob once, ``concurrency`` at a time, with a progress bar."""
    scanner = Scanner(pipeline, prefix=prefix, force=force, concurrency=concurrency, wait_seconds=wait_seconds)
    return await scanner.scan(progress=progress)


async def watch(pipeline: BlobPipeline, *, interval: float, prefix: str | None = None, concurrency: int = 4,
                iterations: int | None = None, wait_seconds: float = 1.0, seen_limit: int = SEEN_LIMIT,
                page_size: int | None = None) -> Summary:
    """Poll the input container every ``interval`` seconds; ``iterations`` bounds it (tests, cron)."""
    scanner = Scanner(pipeline, prefix=prefix, concurrency=concurrency, wait_seconds=wait_seconds,
                      seen_limit=seen_limit, page_size=page_size)
    total = Summary()
    count = 0
    while iterations is None or count < iterations:
        try:
            summary = await scanner.scan()
        except AzureError as exc:  # storage down: say so and try again next round
            log.warning("watch: storage unavailable (%s); retrying in %ss", type(exc).__name__, interval)
        else:
            total.counts.update(summary.counts)
            total.unresolved = summary.unresolved
            total.resets_at = summary.resets_at or total.resets_at
            if summary.counts or summary.unresolved:
                log.info("watch: %s", summary.line())
        count += 1
        if iterations is None or count < iterations:
            await asyncio.sleep(interval)
    return total


def upload_files(pipeline: BlobPipeline, paths: list[str], *, prefix: str = "") -> list[str]:
    """Drop local files into the input container (the local stand-in for a user's upload).

    A folder is uploaded whole, its files named by their path inside it, so ``samples/`` with
    ``ocr/page.png`` and ``invoices/invoice.png`` lands on the prefixes that pick their tasks.
    """
    from pathlib import Path

    pipeline.ensure_containers()
    names = []
    for given in map(Path, paths):
        files = [(given.name, given)] if given.is_file() else [
            (path.relative_to(given).as_posix(), path)
            for path in sorted(given.rglob("*")) if path.is_file() and not path.name.startswith(".")
        ]
        for relative, path in files:
            name = f"{prefix.strip('/')}/{relative}" if prefix.strip("/") else relative
            with path.open("rb") as stream:
                pipeline.inputs.get_blob_client(name).upload_blob(stream, overwrite=True)
            names.append(name)
    return names
