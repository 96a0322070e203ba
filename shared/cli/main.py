"""``python -m shared``: analyse, prepare, extract, compare, sequence and serve from a terminal.

Thin on purpose: each command (one module per group in this package) parses arguments,
calls the same service function the HTTP routes call, and returns an exit code; only
:func:`main` turns our errors into an exit code and a message on stderr. Settings come
from the environment and ``local.settings.json``.

Exit codes (:mod:`shared.cli.exit_codes`): 0 success, 1 configuration error, 2 bad input
or usage, 3 the model service failed, 4 some files of a batch failed, 5 the daily spend budget
is used up (``batch``/``process`` left the rest for a rerun after midnight UTC), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys

from shared.cli.batch import add_batch_parser
from shared.cli.blob import add_blob_parsers
from shared.cli.exit_codes import EXIT_BUDGET, EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MODEL
from shared.cli.extract import add_extract_parser
from shared.cli.image import add_analyze_parser, add_prepare_parser
from shared.cli.multi import add_compare_parser, add_sequence_parser
from shared.cli.serve import add_serve_parser
from shared.config import settings_help
from shared.errors import BudgetExhausted, ConfigError, InputError, ModelError, VisionError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared",
        description="Vision-language analysis of images: the same service the HTTP API and blob trigger use.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_analyze_parser(commands)
    add_prepare_parser(commands)
    add_serve_parser(commands)
    add_blob_parsers(commands)
    add_batch_parser(commands)
    add_extract_parser(commands)
    add_compare_parser(commands)
    add_sequence_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The per-call records of shared.telemetry are for Application Insights (their fields are custom
    # dimensions); on a terminal they would be a bare "answer" line per image.
    for noisy in ("azure", "httpx", "httpx2", "openai", "shared.telemetry"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if inspect.iscoroutinefunction(args.handler):
            return asyncio.run(args.handler(args))
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        print(f"configuration error: {exc.detail}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return EXIT_INPUT
    except BudgetExhausted as exc:
        print(f"budget: {exc.detail}", file=sys.stderr)
        return EXIT_BUDGET
    except ModelError as exc:
        print(f"model service error: {exc.detail}", file=sys.stderr)
        return EXIT_MODEL
    except VisionError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return EXIT_MODEL
