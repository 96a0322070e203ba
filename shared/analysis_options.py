"""What a caller may ask of an analysis, checked before any work: the options every edge parses.

Kept apart from :mod:`shared.analysis` so the edges (HTTP models, CLI parsers) and the services share
the limits and the checks without importing the analyzer's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Settings
from shared.errors import InvalidParameter
from shared.tasks import DEFAULT_PROMPT, DETAILS, TASKS

MAX_PROMPT_CHARS = 8000
MAX_PAGES_CHARS = 200


@dataclass(frozen=True)
class AnalysisOptions:
    """What the caller asked for; ``None`` means "choose for me"."""

    prompt: str = DEFAULT_PROMPT
    detail: str | None = None
    task: str | None = None
    max_tokens: int | None = None
    #: Pages of a PDF or multi-page TIFF (``1-3,7``); None: all of them (up to ``VISION_MAX_PAGES``).
    pages: str | None = None


def validate_options(options: AnalysisOptions, settings: Settings) -> AnalysisOptions:
    """Check parameters before any work; normalise defaults. Raises :class:`InvalidParameter`."""
    prompt = (options.prompt or "").strip() or DEFAULT_PROMPT
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidParameter("prompt", f"is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
    detail = options.detail.strip().lower() if options.detail else None
    if detail is not None and detail not in DETAILS:
        raise InvalidParameter("detail", f"must be one of {', '.join(DETAILS)}; got {options.detail!r}")
    task = options.task.strip().lower() if options.task else None
    if task is not None and task not in TASKS:
        raise InvalidParameter("task", f"must be one of {', '.join(TASKS)}; got {options.task!r}")
    max_tokens = options.max_tokens if options.max_tokens is not None else settings.default_max_tokens
    if not 1 <= max_tokens <= settings.max_output_tokens:
        raise InvalidParameter("max_tokens", f"must be between 1 and {settings.max_output_tokens}; got {max_tokens}")
    pages = " ".join(options.pages.split()) if options.pages else None
    if pages is not None and len(pages) > MAX_PAGES_CHARS:
        raise InvalidParameter("pages", f"is {len(pages)} characters long; the limit is {MAX_PAGES_CHARS}")
    return AnalysisOptions(prompt=prompt, detail=detail, task=task, max_tokens=max_tokens, pages=pages or None)


def parse_max_tokens(value: str | int | None) -> int | None:
    """Accept ``max_tokens`` from a form field, a query string or the CLI."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParameter("max_tokens", f"must be a whole number; got {value!r}") from None
