"""The HTTP API: a plain FastAPI app that knows nothing of Azure Functions.

``function_app.py`` mounts it with ``func.AsgiFunctionApp``; ``python -m shared
serve`` runs the same app under uvicorn. Routes live under ``/api`` (one router module
per route group) because ``host.json`` sets ``routePrefix`` to ``""``.

Every error leaves as ``application/problem+json`` (RFC 9457) with a stable
``type`` (:mod:`shared.http.problems`); input problems are 4xx, never 500. Uploads are read
as a stream and cut off at the byte limit (:mod:`shared.http.uploads`), so an oversized body
is refused before it is held whole.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import __version__
from shared.analysis import Analyzer
from shared.config import Settings
from shared.errors import VisionError
from shared.http import openapi, routes_analyze, routes_extract, routes_multi, routes_status
from shared.http.docs import docs_router
from shared.http.problems import generic_problem, problem_response
from shared.services import Services
from shared.telemetry import configure_telemetry, join_current_trace

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, analyzer: Analyzer | None = None) -> FastAPI:
    """The FastAPI app; tests pass their own settings and analyzer."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.services.aclose()

    app = FastAPI(
        title="Vision Functions",
        version=__version__,
        description="Vision-language analysis of images on Azure Functions, with a Table Storage cache.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served by shared.http.docs, from local assets
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.services = Services(settings, analyzer)
    openapi.install(app, lambda: app.state.services.settings)
    for router in (routes_analyze.router, routes_status.router, routes_extract.router, routes_multi.router,
                   docs_router("/api/openapi.json", app.title)):
        app.include_router(router)

    @app.exception_handler(VisionError)
    async def _vision_error(_: Request, exc: VisionError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s: %s", type(exc).__name__, exc.detail)
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return generic_problem(400, "Invalid parameter", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return generic_problem(exc.status_code, str(exc.detail), str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return generic_problem(500, "Internal error", "an unexpected error occurred; it has been logged")

    return app


# The process's app (function_app.py and `python -m shared serve` both import it): telemetry is configured
# once, before the app exists, when APPLICATIONINSIGHTS_CONNECTION_STRING is set (see shared.telemetry).
# FastAPI then traces each request (its own OpenTelemetry support, or the distro's instrumentation under the
# Functions worker); the analysis and model-call spans opened while handling it are that request's children.
configure_telemetry()
app = create_app()
#: What function_app.py mounts: the same app, each request traced as part of the Functions invocation running it.
functions_asgi = join_current_trace(app)
