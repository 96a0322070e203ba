"""The blob flow without the Functions host: ``upload``, ``process`` (backfill), ``watch`` (poll) and ``result``.

Each command builds the process's :class:`~shared.services.Services` and calls what the blob
trigger calls (:mod:`shared.blob.watch`, :class:`~shared.blob.pipeline.BlobPipeline`), inside
``async with`` so its storage clients and credential are closed however the command ends.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from shared.blob.claims import TERMINAL
from shared.blob.watch import process, upload_files, watch
from shared.cli.common import command, print_json
from shared.cli.exit_codes import EXIT_BUDGET, EXIT_FAILURES, EXIT_INPUT, EXIT_MODEL, EXIT_OK
from shared.errors import InputError
from shared.services import Services

#: How often ``result --wait`` reads the result again (the watcher polls every few seconds).
RESULT_POLL_SECONDS = 1.0


async def run_process(args: argparse.Namespace) -> int:
    async with Services() as services:
        summary = await process(services.pipeline, prefix=args.prefix, force=args.force,
                                concurrency=args.concurrency, progress=not args.quiet)
    print(summary.line(), file=sys.stderr)
    if summary.unresolved:
        return EXIT_MODEL
    return EXIT_BUDGET if summary.counts["deferred"] else EXIT_OK  # deferred: run process again after the reset


async def run_watch(args: argparse.Namespace) -> int:
    async with Services() as services:
        settings = services.settings
        interval = args.interval or settings.watch_interval_seconds
        print(f"watching {settings.input_container} every {interval}s (Ctrl-C stops)", file=sys.stderr)
        summary = await watch(services.pipeline, interval=interval, prefix=args.prefix,
                              concurrency=args.concurrency, iterations=args.iterations)
    print(summary.line(), file=sys.stderr)
    return EXIT_OK


async def run_upload(args: argparse.Namespace) -> int:
    for path in args.files:
        if not Path(path).exists():
            raise InputError(f"cannot read {path}: no such file or folder")
    async with Services() as services:
        names = await asyncio.to_thread(upload_files, services.pipeline, args.files, prefix=args.prefix or "")
        for name in names:
            print(f"{services.settings.input_container}/{name}")
    return EXIT_OK


async def run_result(args: argparse.Namespace) -> int:
    """Print the result; with ``--wait``, first wait for it to be final (exit 0 succeeded, 4 failed)."""
    async with Services() as services:
        pipeline = services.pipeline
        document = await asyncio.to_thread(pipeline.read_result, args.name)
        if args.wait is None:
            if document is None:
                print(f"no result for {args.name!r} yet", file=sys.stderr)
                return EXIT_INPUT
            print_json(document)
            return EXIT_OK
        deadline = time.monotonic() + max(0.0, args.wait)
        while (document is None or document.get("status") not in TERMINAL) and time.monotonic() < deadline:
            await asyncio.sleep(min(RESULT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            document = await asyncio.to_thread(pipeline.read_result, args.name)
    if document is None or document.get("status") not in TERMINAL:
        state = "no result" if document is None else f"still {document.get('status')}"
        print(f"{args.name!r}: {state} after {args.wait:g}s (is the watcher running? python -m shared watch)",
              file=sys.stderr)
        return EXIT_INPUT
    print_json(document)
    return EXIT_OK if document["status"] == "succeeded" else EXIT_FAILURES


def add_blob_parsers(commands: Any) -> None:
    """Register ``process``, ``watch``, ``upload`` and ``result``."""
    parser = command(commands, "process", "backfill: process every unprocessed blob of the input container once "
                                          "(exit 5: the spend budget deferred some; run it again after the reset)")
    parser.add_argument("--prefix", help="only blobs whose name starts with this")
    parser.add_argument("--force", action="store_true", help="reprocess blobs that already have a result")
    parser.add_argument("--concurrency", type=int, default=4, help="blobs processed at once [4]")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_process)

    parser = command(commands, "watch",
                     "poll the input container and process new blobs (the blob trigger without a host)")
    parser.add_argument("--prefix", help="only blobs whose name starts with this")
    parser.add_argument("--interval", type=float, help="seconds between polls [VISION_WATCH_INTERVAL_SECONDS]")
    parser.add_argument("--concurrency", type=int, default=4, help="blobs processed at once [4]")
    parser.add_argument("--iterations", type=int, help="stop after this many polls (default: run until Ctrl-C)")
    parser.set_defaults(handler=run_watch)

    parser = command(commands, "upload", "drop local images into the input container (Azurite locally)")
    parser.add_argument("files", nargs="+", help="image files, or folders uploaded with their inner paths")
    parser.add_argument("--prefix", help="path prefix that picks the task, e.g. ocr/ or describe/")
    parser.set_defaults(handler=run_upload)

    parser = command(commands, "result", "print the result document of an input blob")
    parser.add_argument("name", help="blob name in the input container, e.g. describe/cat.png")
    parser.add_argument("--wait", type=float, metavar="SECONDS",
                        help="wait up to SECONDS for the result to be final; exit 0 if it succeeded, 4 if it "
                             "failed, 2 if it is not final in time")
    parser.set_defaults(handler=run_result)
