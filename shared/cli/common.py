"""What every command module shares: the subcommand factory and reading files named on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shared.config import settings_help
from shared.errors import InputError


def command(commands: Any, name: str, help_text: str, *, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` ends with the settings table, like every command's."""
    return commands.add_parser(name, help=help_text, description=description, epilog=settings_help(),
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def read_file(path: str) -> bytes:
    """A file's bytes; an unreadable path is the caller's input error (exit 2)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))
