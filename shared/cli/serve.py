"""``serve``: the HTTP API under uvicorn, no Functions host needed."""

from __future__ import annotations

import argparse
from typing import Any

from shared.cli.common import command
from shared.cli.exit_codes import EXIT_OK
from shared.config import load_settings


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    load_settings()  # fail fast with a clear message before binding the port
    uvicorn.run("shared.http.app:app", host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def add_serve_parser(commands: Any) -> None:
    parser = command(commands, "serve", "serve the HTTP API with uvicorn (no Functions host needed)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind [127.0.0.1]")
    parser.add_argument("--port", type=int, default=7071, help="port to bind [7071, as func start]")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(handler=run_serve)
