"""``analyze`` (one image through the configured model) and ``prepare`` (what would be sent, no model call).

Both prepare the image with :meth:`~shared.analysis.Analyzer.prepare`, so ``prepare`` reports what the
configured provider would really receive (the offline engine asks for ``high`` detail and JPEG q95).
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis import AnalysisOptions, parse_max_tokens
from shared.cli.common import command, print_json, read_file
from shared.cli.exit_codes import EXIT_OK
from shared.config import load_settings
from shared.services import Services
from shared.tasks import DEFAULT_PROMPT, DETAILS, TASKS
from shared.tokens import estimate_cost


async def analyze(args: argparse.Namespace) -> int:
    options = AnalysisOptions(
        prompt=args.prompt, detail=args.detail, task=args.task, max_tokens=parse_max_tokens(args.max_tokens)
    )
    async with Services(load_settings()) as services:  # closes the analyzer, then its credential
        result = await services.analyzer.analyze(read_file(args.image), options)
    if args.json:
        print_json(result)
    else:
        print(result["analysis"])
    return EXIT_OK


async def prepare(args: argparse.Namespace) -> int:
    """What ``analyze`` would send, prepared exactly as it would be (the provider's preferences included)."""
    settings = load_settings()
    data = read_file(args.image)
    model = args.model or settings.estimation_model
    async with Services(settings.replace(cache_enabled=False)) as services:  # no model call, no cache lookup
        analyzer = services.analyzer
        prepared = await analyzer.prepare(data, args.detail, args.task, model=model)
    cost = estimate_cost(prepared.estimated_tokens, 0, model, analyzer.model_overrides)
    report = {
        "file": args.image,
        "provider": analyzer.provider.name,
        "format": prepared.format,
        "original": {"width": prepared.original_width, "height": prepared.original_height, "bytes": len(data)},
        "sent": {"width": prepared.width, "height": prepared.height, "bytes": len(prepared.data), "format": "JPEG"},
        "detail": prepared.detail,
        "model": model,
        "estimated_image_tokens": prepared.estimated_tokens,
        "estimated_input_cost_usd": round(cost, 6),
    }
    if args.json:
        print_json(report)
    else:
        original = f"{prepared.original_width}x{prepared.original_height}"
        print(f"{args.image}: {prepared.format} {original}, {len(data)} bytes")
        print(f"sends:   JPEG {prepared.width}x{prepared.height}, {len(prepared.data)} bytes, detail={prepared.detail}")
        print(f"tokens:  ~{prepared.estimated_tokens} image tokens on {model}")
        print(f"cost:    ~${report['estimated_input_cost_usd']:.6f} for the image input")
    return EXIT_OK


def add_analyze_parser(commands: Any) -> None:
    parser = command(commands, "analyze", "analyse one image with the configured model")
    parser.add_argument("image", help="path of the image file")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"question about the image [{DEFAULT_PROMPT!r}]")
    parser.add_argument("--detail", choices=DETAILS, help="image detail; chosen from task and size when absent")
    parser.add_argument("--task", choices=TASKS, help="what the analysis is for; steers the detail choice")
    parser.add_argument("--max-tokens", help="upper bound of the answer's length in tokens")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=analyze)


def add_prepare_parser(commands: Any) -> None:
    parser = command(commands, "prepare",
                     "show what would be sent: size, bytes, estimated tokens and cost (no model call)")
    parser.add_argument("image", help="path of the image file")
    parser.add_argument("--detail", choices=DETAILS, help="image detail; chosen from task and size when absent")
    parser.add_argument("--task", choices=TASKS, help="task used to choose the detail")
    parser.add_argument("--model", help="model for the estimate [AZURE_OPENAI_MODEL]")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=prepare)
