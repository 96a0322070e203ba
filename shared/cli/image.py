"""``analyze`` (one image or document through the configured model) and ``prepare`` (what would be sent).

Both prepare the image with :meth:`~shared.analysis.Analyzer.prepare`, so ``prepare`` reports what the
configured provider would really receive (the offline engine asks for ``high`` detail and JPEG q95).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from shared.analysis_options import AnalysisOptions, parse_max_tokens
from shared.cli.common import command, print_json, read_file
from shared.cli.exit_codes import EXIT_OK
from shared.config import load_settings
from shared.document_analysis import check_pages_parameter, read_document
from shared.documents.reader import sniff_document
from shared.services import Services
from shared.tasks import DEFAULT_PROMPT, DETAILS, TASKS
from shared.tokens import estimate_cost


async def analyze(args: argparse.Namespace) -> int:
    options = AnalysisOptions(prompt=args.prompt, detail=args.detail, task=args.task,
                              max_tokens=parse_max_tokens(args.max_tokens), pages=args.pages)
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
        kind = await asyncio.to_thread(sniff_document, data)
        check_pages_parameter(args.pages, kind)
        if kind is not None:
            document = await read_document(analyzer, data, kind, detail=args.detail, pages=args.pages)
            prepared_pages = [(page.number, page.image) for page in document.pages]
        else:
            prepared_pages = [(None, await analyzer.prepare(data, args.detail, args.task, model=model))]
    tokens = sum(image.estimated_tokens for _, image in prepared_pages)
    cost = estimate_cost(tokens, 0, model, analyzer.model_overrides)
    first = prepared_pages[0][1]
    report: dict[str, Any] = {
        "file": args.image,
        "provider": analyzer.provider.name,
        "format": first.format,
        "original": {"width": first.original_width, "height": first.original_height, "bytes": len(data)},
        "sent": {"width": first.width, "height": first.height, "bytes": sum(len(i.data) for _, i in prepared_pages),
                 "format": "JPEG"},
        "detail": first.detail,
        "model": model,
        "estimated_image_tokens": tokens,
        "estimated_input_cost_usd": round(cost, 6),
    }
    if kind is not None:
        report["document"] = {k: v for k, v in document.summary(requests=0).items() if k != "requests"}
    if args.json:
        print_json(report)
        return EXIT_OK
    if kind is not None:
        print(f"{args.image}: {kind}, {document.info.page_count} pages, {len(data)} bytes; "
              f"{len(prepared_pages)} read")
        for number, image in prepared_pages:
            text = "text layer" if any(p.number == number and p.words for p in document.pages) else "scanned"
            print(f"page {number}: JPEG {image.width}x{image.height}, {len(image.data)} bytes, "
                  f"~{image.estimated_tokens} tokens, {text}")
    else:
        original = f"{first.original_width}x{first.original_height}"
        print(f"{args.image}: {first.format} {original}, {len(data)} bytes")
        print(f"sends:   JPEG {first.width}x{first.height}, {len(first.data)} bytes, detail={first.detail}")
    print(f"tokens:  ~{tokens} image tokens on {model}")
    print(f"cost:    ~${report['estimated_input_cost_usd']:.6f} for the image input")
    return EXIT_OK


def add_analyze_parser(commands: Any) -> None:
    parser = command(commands, "analyze", "analyse one image with the configured model")
    parser.add_argument("image", help="path of the image file")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"question about the image [{DEFAULT_PROMPT!r}]")
    parser.add_argument("--detail", choices=DETAILS, help="image detail; chosen from task and size when absent")
    parser.add_argument("--task", choices=TASKS, help="what the analysis is for; steers the detail choice")
    parser.add_argument("--max-tokens", help="upper bound of the answer's length in tokens")
    parser.add_argument("--pages", help="pages of a PDF or multi-page TIFF, e.g. 1-3,7 [all]")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=analyze)


def add_prepare_parser(commands: Any) -> None:
    parser = command(commands, "prepare",
                     "show what would be sent: size, bytes, estimated tokens and cost (no model call)")
    parser.add_argument("image", help="path of the image file")
    parser.add_argument("--detail", choices=DETAILS, help="image detail; chosen from task and size when absent")
    parser.add_argument("--task", choices=TASKS, help="task used to choose the detail")
    parser.add_argument("--model", help="model for the estimate [AZURE_OPENAI_MODEL]")
    parser.add_argument("--pages", help="pages of a PDF or multi-page TIFF, e.g. 1-3,7 [all]")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=prepare)
