"""Problem documents (RFC 9457): how every error leaves the HTTP API, and how OpenAPI documents them.

Every error leaves as ``application/problem+json`` with a stable ``type``; :class:`~shared.errors.VisionError`
carries its status and slug, so rendering needs no lookup table. Throttling and outages (every 429 and
503) carry ``Retry-After``; a 405 carries ``Allow``.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shared.errors import VisionError

PROBLEM_JSON = "application/problem+json"
DEFAULT_RETRY_AFTER_SECONDS = 10


class Problem(BaseModel):
    type: str = Field(examples=["/problems/unsupported-media-type"])
    title: str
    status: int
    detail: str


def problem_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries, in status order: each documented as a problem+json :class:`Problem`."""
    return {
        status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": description}
        for status, description in sorted(descriptions.items())
    }


RETRY_STATUSES = frozenset({429, 503})


def problem_response(error: VisionError) -> JSONResponse:
    headers: dict[str, str] = {}
    if error.status in RETRY_STATUSES:
        retry_after = getattr(error, "retry_after", None)
        seconds = DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else max(1, round(retry_after + 0.49))
        headers["Retry-After"] = str(seconds)
    return JSONResponse(error.to_problem(), status_code=error.status, media_type=PROBLEM_JSON, headers=headers)


def generic_problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem for what the framework refused (``/problems/http-<status>``), keeping its headers (``Allow``)."""
    body = {"type": f"/problems/http-{status}", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
