"""``extract invoice|table|schema IMAGE``: structured extraction, data on stdout, warnings on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.analysis_options import parse_max_tokens
from shared.cli.common import command, print_json, read_file
from shared.cli.exit_codes import EXIT_OK
from shared.config import load_settings
from shared.errors import InvalidParameter
from shared.extraction import EXTRACTION_MAX_TOKENS, ExtractionFailed, extract
from shared.services import Services
from shared.tasks import DETAILS, EXTRACTION_KINDS


def load_schema_file(path: str) -> dict[str, Any]:
    try:
        document = json.loads(read_file(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidParameter("schema", f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidParameter("schema", f"{path} must hold a JSON object")
    return document


async def run_extract(args: argparse.Namespace) -> int:
    if args.kind == "schema" and not args.schema:
        raise InvalidParameter("schema", "--schema FILE is required for 'extract schema'")
    schema = load_schema_file(args.schema) if args.schema else None
    data = read_file(args.image)
    try:
        async with Services(load_settings()) as services:  # closes the analyzer, then its credential
            result = await extract(services.analyzer, data, args.kind, schema=schema, prompt=args.prompt,
                                   detail=args.detail, max_tokens=parse_max_tokens(args.max_tokens),
                                   pages=args.pages)
    except ExtractionFailed as exc:
        print("validation errors:\n" + "\n".join(f"  {e}" for e in exc.errors), file=sys.stderr)
        print(f"raw reply:\n{exc.raw_reply}", file=sys.stderr)
        raise
    print_json(result if args.json else result["data"])
    if not args.json:
        for warning in result["warnings"]:
            print(f"warning: {warning['code']} ({warning['field']}): {warning['message']}", file=sys.stderr)
    return EXIT_OK


def add_extract_parser(commands: Any) -> None:
    """Register ``extract invoice|table|schema IMAGE``; the handler is async and returns the exit code."""
    parser = command(commands, "extract",
                     "extract an invoice, a table or any JSON Schema from an image, as validated JSON",
                     description="Prints the data as JSON on stdout and warnings on stderr (--json: the whole result).")
    parser.add_argument("kind", choices=EXTRACTION_KINDS, help="what to extract")
    parser.add_argument("image", help="path of the image file")
    parser.add_argument("--schema", help="JSON Schema file (required for 'schema')")
    parser.add_argument("--prompt", help="instructions instead of the default for the kind")
    parser.add_argument("--detail", choices=DETAILS, help="image detail [high]")
    parser.add_argument("--max-tokens", help=f"upper bound of the answer in tokens [{EXTRACTION_MAX_TOKENS}]")
    parser.add_argument("--pages", help="pages of a PDF or multi-page TIFF, e.g. 1-3,7 [all]")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(handler=run_extract)
