"""``GET /api/health`` (configuration and storage reachability) and ``GET /api/results/{name}`` (the blob flow).

Reading a result is the one place this route group maps storage failures: an ``AzureError``
(storage down, refused, timing out) is a 503 ``/problems/storage-unavailable`` with ``Retry-After``;
a result blob that is not JSON, or not a result's shape, is a 502 ``/problems/result-corrupt``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from azure.core.exceptions import AzureError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import __version__
from shared.errors import ConfigError, ResultCorrupt, StorageUnavailable
from shared.http.problems import PROBLEM_JSON, Problem, problem_responses
from shared.services import Services

router = APIRouter(prefix="/api")


class ModelHealth(BaseModel):
    model_config = ConfigDict(extra="allow")

    configured: bool = Field(description="A language model or the offline engine answers")
    language_model: bool = Field(description="A language model (not the offline engine) answers")
    provider: str = Field(examples=["azure_openai"])


class StorageHealth(BaseModel):
    cache: Literal["enabled", "disabled"]
    table: str | None = None
    reachable: bool | None = None
    error: str | None = Field(default=None, description="Why the cache table cannot be reached")


class BudgetHealth(BaseModel):
    daily_usd: float = Field(description="VISION_DAILY_BUDGET_USD: spend allowed per UTC day, all instances together")
    spent_today_usd: float = Field(description="Spent since the last UTC midnight, from each answer's usage")
    calls_today: int = Field(description="Model calls counted today")
    resets_at: str = Field(description="The next UTC midnight, when the counter starts again", examples=[
        "2024-05-02T00:00:00Z"])
    exhausted: bool = Field(description="New model calls are refused (429 /problems/budget-exhausted) until resets_at")
    error: str | None = Field(default=None, description="Why the spend counter's table cannot be reached")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    model: ModelHealth
    storage: StorageHealth
    budget: BudgetHealth | None = Field(default=None, description="The daily spend budget; null when none is set "
                                                                  "(or no billed model answers)")


class Misconfigured(BaseModel):
    status: Literal["misconfigured"]
    version: str
    error: str
    setting: str = Field(description="The setting at fault")


class ResultError(Problem):
    model_config = ConfigDict(extra="allow")


class ResultDocument(BaseModel):
    """A final result of the blob flow; the analysis or extraction fields come along as they were made."""

    model_config = ConfigDict(extra="allow")

    status: Literal["succeeded", "failed"]
    blob: str = Field(description="The input blob's name")
    attempts: int
    source: dict[str, Any] = Field(description="name, etag, size and content_type of the input blob read")
    created_at: str | None = None
    completed_at: str | None = None
    error: ResultError | None = Field(default=None, description="Why it failed (status failed)")


class ResultProblem(Problem):
    blob: str
    state: str | None = Field(default=None, description="processing, retrying, or deferred by the daily spend "
                                                        "budget (result-pending)")


_RESULT_PROBLEMS = {
    404: {"model": ResultProblem, "content": {PROBLEM_JSON: {}},
          "description": "No result yet: /problems/result-not-found (unknown or not processed yet) or "
                         "/problems/result-pending (being processed; state and attempts)"},
    **problem_responses({
        500: "Storage is not configured (names the setting)",
        502: "The stored result is not JSON or not a result document (/problems/result-corrupt)",
        503: "The storage account cannot be reached or failed (/problems/storage-unavailable; see Retry-After)",
    }),
}


@router.get("/health", summary="Configuration and storage reachability", response_model=HealthResponse,
            responses={503: {"model": Misconfigured, "description": "A setting is missing or invalid (names it)"}})
async def health(request: Request) -> JSONResponse:
    """200 with ``status: ok`` or ``degraded`` and what is wrong; never secrets."""
    services: Services = request.app.state.services
    try:
        settings = services.settings
        analyzer = services.analyzer
    except ConfigError as exc:
        body = {"status": "misconfigured", "version": __version__, "error": exc.detail, "setting": exc.setting}
        return JSONResponse(body, status_code=503)
    model = {
        "configured": settings.model_provider is not None or settings.uses_local_engine,
        "language_model": settings.model_provider is not None,
        **analyzer.provider.describe(),
    }
    if analyzer.cache is None:
        storage: dict[str, Any] = {"cache": "disabled"}
    else:
        reachable = await analyzer.cache.aping()
        storage = {"cache": "enabled", "table": settings.cache_table, "reachable": reachable is True}
        if reachable is not True:
            storage["error"] = str(reachable)
    budget = await services.budget.status() if services.budget is not None else None
    healthy = model["configured"] and storage.get("reachable", True) and not (budget or {}).get("error")
    body = {"status": "ok" if healthy else "degraded", "version": __version__, "model": model, "storage": storage,
            "budget": budget}
    return JSONResponse(body)


@contextmanager
def result_read_failures(name: str) -> Iterator[None]:
    """Storage and parse failures of reading a result, as problems: the one mapping for this route."""
    try:
        yield
    except AzureError as exc:
        code = getattr(exc, "error_code", None)
        why = f"{type(exc).__name__}{f' ({code})' if code else ''}"
        raise StorageUnavailable(f"the results container cannot be read: {why}", blob=name) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # the blob's bytes, not our code
        raise ResultCorrupt(f"the result of {name!r} is not JSON: {type(exc).__name__}", blob=name) from exc


def checked_result(name: str, document: Any) -> dict[str, Any]:
    """The document when it is a final result; :class:`ResultCorrupt` when it is not a result's shape."""
    if not isinstance(document, dict) or not isinstance(document.get("status"), str):
        raise ResultCorrupt(f"the result of {name!r} is not a result document (no status)", blob=name)
    if document["status"] in ("succeeded", "failed"):
        try:
            ResultDocument.model_validate(document)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise ResultCorrupt(f"the result of {name!r} is not a result document: {where}: {first['msg']}",
                                blob=name) from None
    return document


@router.get("/results/{name:path}", summary="The result document of a blob dropped into the input container",
            response_model=ResultDocument, responses=_RESULT_PROBLEMS)
async def get_result(name: str, request: Request) -> JSONResponse:
    """200 with the result (``succeeded`` or ``failed``); 404 while pending or unknown."""
    services: Services = request.app.state.services
    pipeline = services.pipeline
    with result_read_failures(name):
        document = await asyncio.to_thread(pipeline.read_result, name)
    if document is None:
        body = {"type": "/problems/result-not-found", "title": "No result", "status": 404,
                "detail": f"no result for {name!r}: the blob is unknown or not processed yet", "blob": name}
        return JSONResponse(body, status_code=404, media_type=PROBLEM_JSON)
    document = checked_result(name, document)
    if document["status"] not in ("succeeded", "failed"):
        body = {"type": "/problems/result-pending", "title": "Result pending", "status": 404,
                "detail": f"{name!r} is being processed ({document.get('status')}, attempt {document.get('attempts')})",
                "blob": name, "state": document.get("status")}
        return JSONResponse(body, status_code=404, media_type=PROBLEM_JSON)
    return JSONResponse(document)
