"""``python -m shared``: analyse, prepare and serve from a terminal.

Thin on purpose: each command parses arguments, calls the same service function
the HTTP routes call, and turns our errors into an exit code and a message on
stderr. Settings come from the environment and ``local.settings.json``.

Exit codes: 0 success, 1 configuration error, 2 bad input or usage,
3 the model service failed.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any

from shared.analysis import DETAILS, TASKS, AnalysisOptions, build_analyzer, parse_max_tokens
from shared.config import DEFAULT_PROMPT, load_settings, settings_help
from shared.errors import ConfigError, InputError, ModelError, VisionError

EXIT_OK, EXIT_CONFIG, EXIT_INPUT, EXIT_MODEL = 0, 1, 2, 3


def _read_image(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


async def _analyze(args: argparse.Namespace) -> int:
    settings = load_settings()
    analyzer = build_analyzer(settings)
    try:
        options = AnalysisOptions(
            prompt=args.prompt, detail=args.detail, task=args.task, max_tokens=parse_max_tokens(args.max_tokens)
        )
        result = await analyzer.analyze(_read_image(args.image), options)
    finally:
        await analyzer.aclose()
    if args.json:
        _print_json(result)
    else:
        print(result["analysis"])
    return EXIT_OK


def _prepare(args: argparse.Namespace) -> int:
    from shared.imaging import image_size, prepare_image, select_detail_level
    from shared.tokens import estimate_cost, load_model_overrides

    settings = load_settings()
    overrides = load_model_overrides(settings.model_table_json) if settings.model_table_json else None
    data = _read_image(args.image)
    detail = args.detail
    if detail is None:
        width, height, _ = image_size(data)
        detail = select_detail_level(args.task, width, height)
    model = args.model or settings.estimation_model
    prepared = prepare_image(
        data, detail, model=model, max_pixels=settings.max_image_pixels,
        jpeg_quality=settings.jpeg_quality, model_overrides=overrides,
    )
    report = {
        "file": args.image,
        "format": prepared.format,
        "original": {"width": prepared.original_width, "height": prepared.original_height, "bytes": len(data)},
        "sent": {"width": prepared.width, "height": prepared.height, "bytes": len(prepared.data), "format": "JPEG"},
        "detail": prepared.detail,
        "model": model,
        "estimated_image_tokens": prepared.estimated_tokens,
        "estimated_input_cost_usd": round(estimate_cost(prepared.estimated_tokens, 0, model, overrides), 6),
    }
    if args.json:
        _print_json(report)
    else:
        original = f"{prepared.original_width}x{prepared.original_height}"
        print(f"{args.image}: {prepared.format} {original}, {len(data)} bytes")
        print(f"sends:   JPEG {prepared.width}x{prepared.height}, {len(prepared.data)} bytes, detail={prepared.detail}")
        print(f"tokens:  ~{prepared.estimated_tokens} image tokens on {model}")
        print(f"cost:    ~${report['estimated_input_cost_usd']:.6f} for the image input")
    return EXIT_OK


async def _process(args: argparse.Namespace) -> int:
    from shared.services import Services
    from shared.watch import process

    services = Services()
    try:
        summary = await process(services.pipeline, prefix=args.prefix, force=args.force,
                                concurrency=args.concurrency, progress=not args.quiet)
    finally:
        await services.aclose()
    print(summary.line(), file=sys.stderr)
    return EXIT_OK if not summary.unresolved else EXIT_MODEL


async def _watch(args: argparse.Namespace) -> int:
    from shared.services import Services
    from shared.watch import watch

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


def _upload(args: argparse.Namespace) -> int:
    from shared.services import Services
    from shared.watch import upload_files

    services = Services()
    for path in args.files:
        if not Path(path).exists():
            raise InputError(f"cannot read {path}: no such file or folder")
    for name in upload_files(services.pipeline, args.files, prefix=args.prefix or ""):
        print(f"{services.settings.input_container}/{name}")
    return EXIT_OK


def _result(args: argparse.Namespace) -> int:
    from shared.services import Services

    document = Services().pipeline.read_result(args.name)
    if document is None:
        print(f"no result for {args.name!r} yet", file=sys.stderr)
        return EXIT_INPUT
    _print_json(document)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    load_settings()  # fail fast with a clear message before binding the port
    uvicorn.run("shared.api:app", host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def _command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` ends with the settings table, like every command's."""
    return commands.add_parser(name, help=help_text, epilog=settings_help(),
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared",
        description="Vision-language analysis of images: the same service the HTTP API and blob trigger use.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = _command(commands, "analyze", "analyse one image with the configured model")
    analyze.add_argument("image", help="path of the image file")
    analyze.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"question about the image [{DEFAULT_PROMPT!r}]")
    analyze.add_argument("--detail", choices=DETAILS, help="image detail; chosen from task and size when absent")
    analyze.add_argument("--task", choices=TASKS, help="what the analysis is for; steers the detail choice")
    analyze.add_argument("--max-tokens", help="upper bound of the answer's length in tokens")
    analyze.add_argument("--json", action="store_true", help="print the full result as JSON")
    analyze.set_defaults(handler=_analyze)

    prepare = _command(commands, "prepare",
                       "show what would be sent: size, bytes, estimated tokens and cost (no model call)")
    prepare.add_argument("image", help="path of the image file")
    prepare.add_argument("--detail", choices=DETAILS, help="image detail; chosen from task and size when absent")
    prepare.add_argument("--task", choices=TASKS, help="task used to choose the detail")
    prepare.add_argument("--model", help="model for the estimate [AZURE_OPENAI_MODEL]")
    prepare.add_argument("--json", action="store_true", help="print the report as JSON")
    prepare.set_defaults(handler=_prepare)

    serve = _command(commands, "serve", "serve the HTTP API with uvicorn (no Functions host needed)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1]")
    serve.add_argument("--port", type=int, default=7071, help="port to bind [7071, as func start]")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(handler=_serve)
    process = _command(commands, "process", "backfill: process every unprocessed blob of the input container once")
    process.add_argument("--prefix", help="only blobs whose name starts with this")
    process.add_argument("--force", action="store_true", help="reprocess blobs that already have a result")
    process.add_argument("--concurrency", type=int, default=4, help="blobs processed at once [4]")
    process.add_argument("--quiet", action="store_true", help="no progress bar")
    process.set_defaults(handler=_process)

    watch = _command(commands, "watch",
                     "poll the input container and process new blobs (the blob trigger without a host)")
    watch.add_argument("--prefix", help="only blobs whose name starts with this")
    watch.add_argument("--interval", type=float, help="seconds between polls [VISION_WATCH_INTERVAL_SECONDS]")
    watch.add_argument("--concurrency", type=int, default=4, help="blobs processed at once [4]")
    watch.add_argument("--iterations", type=int, help="stop after this many polls (default: run until Ctrl-C)")
    watch.set_defaults(handler=_watch)

    upload = _command(commands, "upload", "drop local images into the input container (Azurite locally)")
    upload.add_argument("files", nargs="+", help="image files, or folders uploaded with their inner paths")
    upload.add_argument("--prefix", help="path prefix that picks the task, e.g. ocr/ or describe/")
    upload.set_defaults(handler=_upload)

    result = commands.add_parser("result", help="print the result document of an input blob")
    result.add_argument("name", help="blob name in the input container, e.g. describe/cat.png")
    result.set_defaults(handler=_result)

    from shared.batch import add_batch_parser

    add_batch_parser(commands)
    from shared.extraction import add_extract_parser
    from shared.multi import add_compare_parser

    add_extract_parser(commands)
    add_compare_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if inspect.iscoroutinefunction(args.handler):
            return asyncio.run(args.handler(args))
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as exc:
        print(f"configuration error: {exc.detail}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return EXIT_INPUT
    except ModelError as exc:
        print(f"model service error: {exc.detail}", file=sys.stderr)
        return EXIT_MODEL
    except VisionError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return EXIT_MODEL
