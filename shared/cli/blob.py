"""The blob flow without the Functions host: ``upload``, ``process`` (backfill), ``watch`` (poll) and ``result``.

Each command builds the process's :class:`~shared.services.Services` and calls what the blob
trigger calls (:mod:`shared.blob.watch`, :class:`~shared.blob.pipeline.BlobPipeline`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shared.blob.watch import process, upload_files, watch
from shared.cli.common import command, print_json
from shared.cli.exit_codes import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from shared.errors import InputError
from shared.services import Services


async def run_process(args: argparse.Namespace) -> int:
    services = Services()
    try:
        summary = await process(services.pipeline, prefix=args.prefix, force=args.force,
                                concurrency=args.concurrency, progress=not args.quiet)
    finally:
        await services.aclose()
    print(summary.line(), file=sys.stderr)
    return EXIT_OK if not summary.unresolved else EXIT_MODEL


async def run_watch(args: argparse.Namespace) -> int:
    services = Services()
    settings = services.settings
    interval = args.interval or settings.watch_interval_seconds
    print(f"watching {settings.input_container} every {interval}s (Ctrl-C stops)", file=sys.stderr)
    try:
        summary = await watch(services.pipeline, interval=interval, prefix=args.prefix,
                              concurrency=args.concurrency, iterations=args.iterations)
    finally:
        await services.aclose()
    print(summary.line(), file=sys.stderr)
    return EXIT_OK


def run_upload(args: argparse.Namespace) -> int:
    services = Services()
    for path in args.files:
        if not Path(path).exists():
            raise InputError(f"cannot read {path}: no such file or folder")
    for name in upload_files(services.pipeline, args.files, prefix=args.prefix or ""):
        print(f"{services.settings.input_container}/{name}")
    return EXIT_OK


def run_result(args: argparse.Namespace) -> int:
    document = Services().pipeline.read_result(args.name)
    if document is None:
        print(f"no result for {args.name!r} yet", file=sys.stderr)
        return EXIT_INPUT
    print_json(document)
    return EXIT_OK


def add_blob_parsers(commands: Any) -> None:
    """Register ``process``, ``watch``, ``upload`` and ``result``."""
    parser = command(commands, "process", "backfill: process every unprocessed blob of the input container once")
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
    parser.set_defaults(handler=run_result)
