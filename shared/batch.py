"""``python -m shared batch DIR --out results.jsonl``: every file of a folder into a JSON Lines file.

The user-facing contract (line shape, resume rules, exit codes) is the help of the CLI command
(:mod:`shared.cli.batch`). Why it is built this way:

* Streaming, so a folder of any size fits: a lazy directory walk feeds a bounded queue of paths
  (``2 * concurrency``); ``concurrency`` workers each read one file in a thread (refusing, unread,
  anything over the upload limit), so at most ``concurrency`` images' bytes are in memory.
* One line per file, written whole and flushed by a single writer: a crash tears at most the last
  line, which resume drops. No extension filter: the analyser sniffs bytes, so junk gets a 415/422
  line instead of vanishing. One image's failure never stops the run; only a missing model
  configuration (:class:`ModelNotConfigured`) does, since every image would fail the same way.
* Resume skips what cannot change on retry (successes, :class:`InputError`, :class:`ContentFiltered`)
  and redoes the rest (throttling, timeouts, unreadable files), dropping their old line, so each id
  is in the file once. An existing output is never clobbered without ``--overwrite``: it cost money.
* Past the daily spend budget (:class:`BudgetExhausted`) an image gets no line at all: nothing is
  wrong with it, so it must not read as a failure, and having no line is exactly what makes
  ``--resume`` do it after the reset. The first refusal stops the analysing; the files still to come
  are counted as ``not_done`` without being read, and the summary says when the budget resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice, takewhile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.analysis import Analyzer
from shared.analysis_options import AnalysisOptions, validate_options
from shared.documents.reader import sniff_document
from shared.errors import (
    BudgetExhausted,
    ContentFiltered,
    InputError,
    ModelNotConfigured,
    PayloadTooLarge,
    VisionError,
)
from shared.quota.deadline import deadline_in

log = logging.getLogger(__name__)

FSYNC_EVERY = 16  # lines; flush() already survives a process crash, fsync bounds loss on power failure
_WALK_CHUNK = 64  # names pulled from the directory walk per thread hop


class FileUnreadable(VisionError):
    """The file could not be read (permissions, vanished): the environment's fault, so resume retries it."""

    status = 500
    slug = "unreadable-file"
    title = "File cannot be read"


@dataclass
class BatchSummary:
    total: int = 0  # candidate files seen
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0  # already final in the output file (resume)
    not_done: int = 0  # refused by the daily spend budget, or not started after it: no line, --resume does them
    budget_resets_at: str | None = None  # set when the budget stopped the run: when --resume can go on
    elapsed_seconds: float = 0.0

    def line(self) -> str:
        text = (f"done: {self.succeeded} succeeded, {self.failed} failed, {self.skipped} skipped "
                f"in {self.elapsed_seconds:.1f} s")
        if self.budget_resets_at is not None:
            text += (f"; {self.not_done} not done: the daily spend budget is used up, "
                     f"rerun with --resume after {self.budget_resets_at}")
        return text


def iter_images(folder: Path, recursive: bool = False, *, exclude: Path | None = None) -> Iterator[Path]:
    """Candidate files under ``folder``, lazily, sorted by name within each directory.

    Skips hidden entries (files and directories), ``exclude`` (the output file), and anything that is
    not a regular file (FIFOs, sockets, devices, broken links: reading a FIFO would hang). Symlinked
    files are followed, symlinked directories are not (no cycles). No extension filter: see module doc.
    An unlistable ``folder`` raises :class:`InputError`; an unlistable subfolder is logged and skipped.
    """
    skip = os.path.realpath(exclude) if exclude is not None else None
    yield from _walk(Path(folder), recursive, skip, top=True)


def _walk(folder: Path, recursive: bool, skip: str | None, *, top: bool = False) -> Iterator[Path]:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)  # one directory's names, never bytes
    except OSError as exc:
        if top:
            raise InputError(f"cannot list {folder}: {exc.strerror or exc}") from None
        log.warning("cannot list %s: %s", folder, exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    yield from _walk(Path(entry.path), recursive, skip)
                continue
            if not entry.is_file():
                continue
        except OSError:
            continue
        if skip is not None and entry.name == os.path.basename(skip) and os.path.realpath(entry.path) == skip:
            continue
        yield Path(entry.path)


def _terminal_types() -> set[str]:
    """Problem types whose line is final: retrying the same bytes with the same prompt cannot help."""
    types, pending = set(), [InputError, ContentFiltered]
    while pending:
        cls = pending.pop()
        types.add(f"/problems/{cls.slug}")
        pending.extend(cls.__subclasses__())
    return types


def _scan(out_path: Path, terminal: set[str]) -> Iterator[tuple[bytes, str | None]]:
    """Each raw line of the output file with its id if the line is kept on resume, else None."""
    kept: set[str] = set()
    with open(out_path, "rb") as stream:
        for raw in stream:
            key = None
            if raw.endswith(b"\n"):  # no newline: torn by a crash mid-write
                with contextlib.suppress(ValueError):
                    record = json.loads(raw)
                    if isinstance(record, dict) and isinstance(record.get("id"), str):
                        error = record.get("error")
                        final = record.get("success") is True or (
                            isinstance(error, dict) and error.get("type") in terminal)
                        key = record["id"] if final and record["id"] not in kept else None
            if key is not None:
                kept.add(key)
            yield raw, key


def _load_for_resume(out_path: Path) -> set[str]:
    """Ids already final in ``out_path``; rewrites the file without the other lines if there are any.

    Two read passes and a rewrite only when needed, so resuming a clean file is read-only. The
    rewrite goes to a hidden temp file then ``os.replace``: a crash leaves the old file or the new.
    """
    terminal = _terminal_types()
    done, dropped = set(), 0
    for _, key in _scan(out_path, terminal):
        if key is None:
            dropped += 1
        else:
            done.add(key)
    if dropped:
        log.info("resume: %d line(s) of %s will be redone (transient failures, duplicates or torn)",
                 dropped, out_path)
        temp = out_path.with_name(f".{out_path.name}.resume-tmp")
        with open(temp, "wb") as stream:
            stream.writelines(raw for raw, key in _scan(out_path, terminal) if key is not None)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, out_path)
    return done


class _Sink:
    """The single writer: one whole JSON line per record, flushed; fsync every few lines and at close.

    Writes are synchronous on the event loop, so lines never interleave and a cancellation cannot
    land mid-line; a killed process can at worst tear the last line, which resume drops.
    """

    def __init__(self, path: Path, mode: str) -> None:
        self._file = open(path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115 - closed by close()
        self._unsynced = 0

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str) + "\n"  # ASCII-escaped: odd file names cannot break encoding
        self._file.write(line)
        self._file.flush()
        self._unsynced += 1
        if self._unsynced >= FSYNC_EVERY:
            os.fsync(self._file.fileno())
            self._unsynced = 0

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _open_output(out_path: Path, *, resume: bool, overwrite: bool) -> tuple[_Sink, set[str]]:
    exists = out_path.is_file() and out_path.stat().st_size > 0
    if exists and not resume and not overwrite:
        raise InputError(f"{out_path} already exists; pass --resume to continue it or --overwrite to replace it")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        done = _load_for_resume(out_path) if resume and exists else set()
        return _Sink(out_path, "a" if resume else "w"), done
    except OSError as exc:
        raise InputError(f"cannot write {out_path}: {exc.strerror or exc}") from None


def _read_capped(path: Path, limit: int) -> bytes:
    """The file's bytes, refusing (without reading) anything over the upload limit."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > limit:
                raise PayloadTooLarge(limit, size)
            return stream.read(limit + 1)  # grew since fstat: check_upload refuses it
    except OSError as exc:
        raise FileUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None


async def _analyze_one(analyzer: Analyzer, path: Path, key: str, options: AnalysisOptions) -> dict[str, Any]:
    record: dict[str, Any] = {"id": key, "path": str(path)}
    try:
        data = await asyncio.to_thread(_read_capped, path, analyzer.settings.max_image_bytes)
        if options.pages and await asyncio.to_thread(sniff_document, data) is None:
            options = replace(options, pages=None)  # --pages selects documents' pages; an image is read whole
        # A batch item can wait minutes for its turn at the deployment's quota, unlike an HTTP caller.
        with deadline_in(analyzer.settings.background_deadline_seconds):
            return {**record, "success": True, "result": await analyzer.analyze(data, options)}
    except (ModelNotConfigured, BudgetExhausted):
        raise  # every image would fail the same way: stop and say so (the budget: leave them for --resume)
    except VisionError as exc:
        log.debug("%s: %s", key, exc.detail)
        return {**record, "success": False, "error": exc.to_problem()}
    except Exception as exc:  # a bug must cost one line, not the run
        log.exception("%s: unexpected error", key)
        error = VisionError(f"{type(exc).__name__}: {exc}").to_problem()
        return {**record, "success": False, "error": error}


async def run_batch(analyzer: Analyzer, folder: Path, out_path: Path, options: AnalysisOptions, *,
                    concurrency: int = 4, resume: bool = False, recursive: bool = False,
                    overwrite: bool = False, progress: bool = True) -> BatchSummary:
    """Analyse every candidate file of ``folder`` into ``out_path`` (see the module doc for the contract)."""
    started = time.perf_counter()
    folder, out_path, concurrency = Path(folder), Path(out_path), max(1, concurrency)
    options = validate_options(options, analyzer.settings)  # bad options fail once, not once per image
    if not folder.is_dir():
        raise InputError(f"{folder} is not a directory")
    sink, done = _open_output(out_path, resume=resume, overwrite=overwrite)
    summary = BatchSummary()
    queue: asyncio.Queue[tuple[Path, str] | None] = asyncio.Queue(maxsize=2 * concurrency)
    bar = tqdm(unit="img", disable=None if progress else True, file=sys.stderr, dynamic_ncols=True)
    stop_counting = threading.Event()

    async def produce() -> None:
        names = iter_images(folder, recursive, exclude=out_path)
        while chunk := await asyncio.to_thread(lambda: list(islice(names, _WALK_CHUNK))):
            for path in chunk:
                summary.total += 1
                key = path.relative_to(folder).as_posix()
                if key in done:
                    summary.skipped += 1
                    bar.update(1)
                else:
                    await queue.put((path, key))  # blocks while the workers are busy: bounded memory
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        while (item := await queue.get()) is not None:
            record = None
            if summary.budget_resets_at is None:  # once the budget is spent, the rest is left unread
                try:
                    record = await _analyze_one(analyzer, *item, options)
                except BudgetExhausted as exc:
                    if summary.budget_resets_at is None:
                        log.warning("%s: %s; the rest is left for --resume", item[1], exc.detail)
                    summary.budget_resets_at = exc.resets_at
            if record is None:
                summary.not_done += 1
                bar.update(1)
                continue
            sink.write(record)
            if record["success"]:
                summary.succeeded += 1
            else:
                summary.failed += 1
            bar.set_postfix(ok=summary.succeeded, failed=summary.failed, refresh=False)
            bar.update(1)

    async def count() -> None:  # a total for the bar (a second walk, names only) while the work runs
        names = takewhile(lambda _: not stop_counting.is_set(), iter_images(folder, recursive, exclude=out_path))
        bar.total = await asyncio.to_thread(lambda: sum(1 for _ in names))
        bar.refresh()

    tasks = [asyncio.create_task(produce()), *(asyncio.create_task(work()) for _ in range(concurrency))]
    helpers = [] if bar.disable else [asyncio.create_task(count())]
    try:
        await asyncio.gather(*tasks)
        bar.total = summary.total  # the counting walk may not have finished (or run) yet
    except asyncio.CancelledError:
        log.warning("interrupted after %d file(s); %s is valid: rerun with --resume to continue",
                    summary.succeeded + summary.failed, out_path)
        raise
    finally:
        stop_counting.set()
        for task in (*tasks, *helpers):
            task.cancel()
        await asyncio.gather(*tasks, *helpers, return_exceptions=True)
        sink.close()
        bar.close()
    summary.elapsed_seconds = round(time.perf_counter() - started, 3)
    return summary
