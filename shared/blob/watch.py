"""Run the blob pipeline without the Functions host: ``watch`` (poll) and ``process`` (backfill).

Both call exactly the handler the blob trigger calls (:meth:`BlobPipeline.handle`), so a
result is the same whoever produced it. Deciding what needs work uses listings only
(result blobs carry ``source_etag`` and ``status`` as metadata), so a pass over a large
container downloads nothing that is already done.

Transient failures are retried with tenacity (exponential back-off); the result document
counts attempts, so after ``VISION_MAX_ATTEMPTS`` the failure is recorded, never lost.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from azure.core.exceptions import AzureError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm

from shared.blob.jobs import result_name
from shared.blob.pipeline import BlobPipeline, Outcome, TransientFailure

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a pass did, by outcome, plus the blobs still failing transiently."""

    counts: Counter = field(default_factory=Counter)
    unresolved: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1

    def line(self) -> str:
        done = self.counts["succeeded"]
        text = f"done: {done}, skipped: {self.counts['skipped']}, failed: {self.counts['failed']}"
        return text + (f", still retrying: {len(self.unresolved)}" if self.unresolved else "")


def pending_blobs(pipeline: BlobPipeline, prefix: str | None = None, *, force: bool = False) -> Iterator[str]:
    """Names of input blobs whose result is missing, stale or not final (all of them with ``force``)."""
    pipeline.ensure_containers()
    finished = {}
    if not force:
        for item in pipeline.results.list_blobs(name_starts_with=result_name(prefix, "") if prefix else None,
                                                include=["metadata"]):
            finished[item.name] = item.metadata or {}
    for item in pipeline.inputs.list_blobs(name_starts_with=prefix or None):
        if force or pipeline.needs_processing(item.name, item.etag, finished.get(result_name(item.name))):
            yield item.name


async def handle_with_retries(pipeline: BlobPipeline, name: str, *, force: bool = False,
                              wait_seconds: float = 1.0, max_wait_seconds: float = 30.0) -> Outcome:
    """One blob, retried on transient failures until it succeeds or its failure is recorded."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type((TransientFailure, AzureError)),
        stop=stop_after_attempt(pipeline.settings.max_attempts + 3),
        wait=wait_exponential(multiplier=wait_seconds, max=max_wait_seconds),
        before_sleep=lambda state: log.info(
            "%s: retrying in %.1fs after %s", name, state.next_action.sleep if state.next_action else 0,
            state.outcome.exception() if state.outcome else "?",
        ),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await pipeline.handle(pipeline.blob_client(name), force=force)
    raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or re-raises


async def process(pipeline: BlobPipeline, *, prefix: str | None = None, force: bool = False,
                  concurrency: int = 4, progress: bool = True, wait_seconds: float = 1.0) -> Summary:
    """Backfill: every unprocessed blob once, ``concurrency`` at a time, with a progress bar."""
    names = await asyncio.to_thread(lambda: list(pending_blobs(pipeline, prefix, force=force)))
    summary = Summary()
    semaphore = asyncio.Semaphore(max(1, concurrency))
    bar = tqdm(total=len(names), unit="blob", disable=not progress, file=sys.stderr)

    async def one(name: str) -> None:
        async with semaphore:
            try:
                outcome = await handle_with_retries(pipeline, name, force=force, wait_seconds=wait_seconds)
            except (TransientFailure, AzureError) as exc:
                log.warning("%s: still failing after retries: %s", name, exc)
                summary.unresolved.append(name)
            else:
                summary.add(outcome)
            bar.update(1)

    try:
        await asyncio.gather(*(one(name) for name in names))
    finally:
        bar.close()
    return summary


async def watch(pipeline: BlobPipeline, *, interval: float, prefix: str | None = None, concurrency: int = 4,
                iterations: int | None = None, wait_seconds: float = 1.0) -> Summary:
    """Poll the input container every ``interval`` seconds; ``iterations`` bounds it (tests, cron)."""
    total = Summary()
    count = 0
    while iterations is None or count < iterations:
        try:
            summary = await process(pipeline, prefix=prefix, concurrency=concurrency, progress=False,
                                    wait_seconds=wait_seconds)
        except AzureError as exc:  # storage down: say so and try again next round
            log.warning("watch: storage unavailable (%s); retrying in %ss", type(exc).__name__, interval)
        else:
            total.counts.update(summary.counts)
            total.unresolved = summary.unresolved
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
