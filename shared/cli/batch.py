"""``batch DIR --out results.jsonl``: every file of a folder into a JSON Lines file (see :mod:`shared.batch`)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shared.analysis_options import AnalysisOptions, parse_max_tokens
from shared.batch import run_batch
from shared.cli.common import command
from shared.cli.exit_codes import EXIT_BUDGET, EXIT_FAILURES, EXIT_OK
from shared.config import load_settings
from shared.errors import InputError
from shared.services import Services
from shared.tasks import DEFAULT_PROMPT, DETAILS, TASKS


async def run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise InputError(f"--concurrency must be at least 1; got {args.concurrency}")
    options = AnalysisOptions(prompt=args.prompt, detail=args.detail, task=args.task,
                              max_tokens=parse_max_tokens(args.max_tokens), pages=args.pages)
    async with Services(load_settings()) as services:  # closes the analyzer, then its credential
        summary = await run_batch(services.analyzer, Path(args.dir), Path(args.out), options,
                                  concurrency=args.concurrency, resume=args.resume, recursive=args.recursive,
                                  overwrite=args.overwrite, progress=not args.quiet)
    print(summary.line(), file=sys.stderr)
    if args.json_summary:
        print(json.dumps(asdict(summary)))
    if summary.budget_resets_at is not None:
        return EXIT_BUDGET  # incomplete, through nobody's fault: --resume after the reset finishes it
    return EXIT_FAILURES if summary.failed else EXIT_OK


_DESCRIPTION = """\
Analyse every non-hidden file of DIR; each gets one JSON line in --out:
  {"id": "sub/cat.png", "path": ..., "success": true, "result": {...}}
  {"id": "notes.txt", "path": ..., "success": false, "error": {"type", "title", "status", "detail"}}
Files are not filtered by extension: non-images get a failed line (415 or 422).

--resume skips files whose line is a success or a terminal failure (bad input, content filter)
and retries the rest (throttling, timeouts, model errors). Without --resume an existing --out is
refused unless --overwrite is given.

Past the daily spend budget (VISION_DAILY_BUDGET_USD) the run stops analysing: the files not done
get no line (they did not fail), and --resume after midnight UTC does them.

Exit codes: 0 every file succeeded, 4 some failed (see their lines), 5 the daily spend budget
stopped the run (the rest is not done: rerun with --resume after the reset the summary names; some
may have failed too), 1 configuration error, 2 bad input or usage, 3 no model configured,
130 interrupted (the file stays valid: --resume).
"""


def add_batch_parser(subparsers: Any) -> None:
    """Register ``batch`` on the CLI's subparsers; its handler is async and returns the exit code."""
    batch = command(subparsers, "batch", "analyse every file of a folder into a JSON Lines file (resumable)",
                    description=_DESCRIPTION)
    batch.add_argument("dir", help="folder of images (every non-hidden file is tried; non-images fail)")
    batch.add_argument("--out", required=True, help="JSON Lines file to write, one line per file")
    batch.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"question about each image [{DEFAULT_PROMPT!r}]")
    batch.add_argument("--detail", choices=DETAILS, help="image detail; chosen from task and size when absent")
    batch.add_argument("--task", choices=TASKS, help="what the analysis is for; steers the detail choice")
    batch.add_argument("--max-tokens", help="upper bound of each answer's length in tokens")
    batch.add_argument("--pages", help="pages of each PDF or multi-page TIFF, e.g. 1-3,7 [all]; images are read whole")
    batch.add_argument("--concurrency", type=int, default=4, help="images analysed at once [4]")
    existing = batch.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue --out: skip successes and terminal failures, retry transient ones")
    existing.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    batch.add_argument("--recursive", action="store_true", help="descend into subfolders (not hidden ones)")
    batch.add_argument("--json-summary", action="store_true", help="print the summary as JSON on stdout")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(handler=run)
