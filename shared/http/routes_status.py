"""``GET /api/health`` (configuration and storage reachability) and ``GET /api/results/{name}`` (the blob flow)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from shared import __version__
from shared.errors import ConfigError
from shared.http.problems import PROBLEM_JSON
from shared.services import Services

router = APIRouter(prefix="/api")


@router.get("/health", summary="Configuration and storage reachability")
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
    healthy = model["configured"] and storage.get("reachable", True)
    body = {"status": "ok" if healthy else "degraded", "version": __version__, "model": model, "storage": storage}
    return JSONResponse(body)


@router.get("/results/{name:path}", summary="The result document of a blob dropped into the input container")
async def get_result(name: str, request: Request) -> JSONResponse:
    """200 with the result (``succeeded`` or ``failed``); 404 while pending or unknown."""
    services: Services = request.app.state.services
    document = await asyncio.to_thread(services.pipeline.read_result, name)
    if document is None:
        body = {"type": "/problems/result-not-found", "title": "No result", "status": 404,
                "detail": f"no result for {name!r}: the blob is unknown or not processed yet", "blob": name}
        return JSONResponse(body, status_code=404, media_type=PROBLEM_JSON)
    if document.get("status") not in ("succeeded", "failed"):
        body = {"type": "/problems/result-pending", "title": "Result pending", "status": 404,
                "detail": f"{name!r} is being processed ({document.get('status')}, attempt {document.get('attempts')})",
                "blob": name, "state": document.get("status")}
        return JSONResponse(body, status_code=404, media_type=PROBLEM_JSON)
    return JSONResponse(document)
