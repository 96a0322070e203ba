"""``compare`` and ``sequence IMAGE IMAGE...``: several images, one answer (see :mod:`shared.multi`).

The same service functions as ``POST /api/compare`` and ``POST /api/sequence``.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.analysis_options import parse_max_tokens
from shared.cli.common import command, print_json, read_file
from shared.cli.exit_codes import EXIT_OK
from shared.config import load_settings
from shared.multi import COMPARE_PROMPT, compare, labels, sequence
from shared.services import Services
from shared.tasks import DEFAULT_PROMPT, DETAILS

SYNTHESIS_SECTIONS = (("common_themes", "Common themes"), ("changes", "Changes"),
                      ("key_insights", "Key insights"), ("recommendations", "Recommendations"))


async def run_compare(args: argparse.Namespace) -> int:
    images = [read_file(path) for path in args.images]
    async with Services(load_settings()) as services:  # closes the analyzer, then its credential
        result = await compare(services.analyzer, images, prompt=args.prompt, detail=args.detail,
                               max_tokens=parse_max_tokens(args.max_tokens))
    if args.json:
        print_json(result)
    else:
        for label, path in zip(labels(len(images)), args.images, strict=True):
            print(f"{label} {path}")
        print()
        print(result["analysis"])
    return EXIT_OK


async def run_sequence(args: argparse.Namespace) -> int:
    images = [read_file(path) for path in args.images]
    async with Services(load_settings()) as services:  # closes the analyzer, then its credential
        result = await sequence(services.analyzer, images, prompt=args.prompt, detail=args.detail,
                                max_tokens=parse_max_tokens(args.max_tokens))
    if args.json:
        print_json(result)
        return EXIT_OK
    for item, path in zip(result["images"], args.images, strict=True):
        print(f"{item['label']} {path}")
        print(item["analysis"])
        print()
    for key, title in SYNTHESIS_SECTIONS:
        print(f"{title}:")
        for line in result["synthesis"][key]:
            print(f"- {line}")
    return EXIT_OK


def add_compare_parser(commands: Any) -> None:
    """Register ``compare IMAGE IMAGE...``; the handler is async and returns the exit code."""
    parser = command(commands, "compare", "compare 2..VISION_MAX_IMAGES images in one request, labelled [Image 1]...")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, in the order to label them")
    parser.add_argument("--prompt", default=COMPARE_PROMPT, help=f"question about the images [{COMPARE_PROMPT!r}]")
    parser.add_argument("--detail", choices=DETAILS, help="image detail; chosen per image from its size when absent")
    parser.add_argument("--max-tokens", help="upper bound of the answer's length in tokens")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=run_compare)


def add_sequence_parser(commands: Any) -> None:
    """Register ``sequence IMAGE IMAGE...``; the handler is async and returns the exit code."""
    parser = command(commands, "sequence",
                     "analyse 2..VISION_MAX_IMAGES images one by one, then synthesise themes, changes and insights")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, in sequence order")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"question about each image [{DEFAULT_PROMPT!r}]")
    parser.add_argument("--detail", choices=DETAILS, help="image detail; chosen per image from its size when absent")
    parser.add_argument("--max-tokens", help="upper bound of each analysis's length in tokens")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=run_sequence)
