"""The HTTP API: a plain FastAPI app that knows nothing of Azure Functions.

``function_app.py`` mounts it with ``func.AsgiFunctionApp``; ``python -m shared
serve`` runs the same app under uvicorn. Routes live under ``/api`` here because
``host.json`` sets ``routePrefix`` to ``""``.

Every error leaves as ``application/problem+json`` (RFC 9457) with a stable
``type``; input problems are 4xx, never 500. Uploads are read as a stream and cut
off at the byte limit, so an oversized body is refused before it is held whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from shared import __version__
from shared.analysis import DETAILS, TASKS, AnalysisOptions, Analyzer, parse_max_tokens
from shared.config import DEFAULT_PROMPT, Settings
from shared.errors import (
    ConfigError,
    InvalidParameter,
    ModelNotConfigured,
    ModelThrottled,
    ModelUnavailable,
    PayloadTooLarge,
    UnsupportedImage,
    VisionError,
)
from shared.http_common import PROBLEM_JSON, ImageModel, UsageModel, limited_body, problem_responses
from shared.routes_extract import router as extract_router
from shared.services import Services

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the file part
DEFAULT_RETRY_AFTER_SECONDS = 10


class AnalysisResponse(BaseModel):
    analysis: str
    model: str
    deployment: str | None
    provider: str
    detail: str = Field(description="low, high or auto: the detail actually used")
    task: str | None = None
    cached: bool = Field(description="True when the answer came from the cache (no model call)")
    finish_reason: str | None = None
    usage: UsageModel
    estimated_cost_usd: float
    image: ImageModel
    latency_ms: int


_PROBLEM_RESPONSES = problem_responses({
    400: "Bad parameters",
    413: "Image larger than VISION_MAX_IMAGE_BYTES",
    415: "Not a supported image (decided from the bytes)",
    422: "Image cannot be decoded, exceeds the pixel limit, or was blocked by the content filter",
    429: "The model service is throttling (see Retry-After)",
    501: "The offline engine cannot do this (names the settings that enable a model)",
    502: "The model service answered with something unusable",
    503: "No model service configured, or it is down (see Retry-After)",
})

_ANALYZE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The image"},
                        "prompt": {"type": "string", "default": DEFAULT_PROMPT},
                        "detail": {"type": "string", "enum": list(DETAILS)},
                        "task": {"type": "string", "enum": list(TASKS)},
                        "max_tokens": {"type": "integer", "minimum": 1},
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {"name": "prompt", "in": "query", "schema": {"type": "string", "default": DEFAULT_PROMPT},
         "description": "Question about the image (a form field wins over the query)"},
        {"name": "detail", "in": "query", "schema": {"type": "string", "enum": list(DETAILS)},
         "description": "Image detail; chosen from task and size when absent"},
        {"name": "task", "in": "query", "schema": {"type": "string", "enum": list(TASKS)},
         "description": "What the analysis is for; steers the detail choice"},
        {"name": "max_tokens", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    ],
}


def problem_response(error: VisionError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(error, ModelThrottled | ModelUnavailable | ModelNotConfigured):
        retry_after = getattr(error, "retry_after", None)
        seconds = DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else max(1, round(retry_after + 0.49))
        headers["Retry-After"] = str(seconds)
    return JSONResponse(error.to_problem(), status_code=error.status, media_type=PROBLEM_JSON, headers=headers)


def _generic_problem(status: int, title: str, detail: str) -> JSONResponse:
    body = {"type": f"/problems/http-{status}", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def read_upload(request: Request, settings: Settings) -> tuple[bytes, dict[str, str]]:
    """The image bytes and form fields, from multipart (``file``) or a raw body."""
    limit = settings.max_image_bytes
    declared = request.headers.get("content-length")
    content_type = request.headers.get("content-type", "")
    is_multipart = content_type.lower().startswith("multipart/form-data")
    body_limit = limit + MULTIPART_OVERHEAD if is_multipart else limit
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(limit, int(declared))
    if not is_multipart:
        chunks = [chunk async for chunk in limited_body(request, body_limit, lambda: PayloadTooLarge(limit))]
        return b"".join(chunks), {}
    body = limited_body(request, body_limit, lambda: PayloadTooLarge(limit))
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidParameter("file", f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidParameter("file", "send the image as the multipart file field 'file' or as the raw body")
        data = await upload.read()
        if len(data) > limit:
            raise PayloadTooLarge(limit, len(data))
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        return data, fields
    finally:
        await form.close()


def _options(request: Request, fields: dict[str, str]) -> AnalysisOptions:
    def pick(name: str) -> str | None:
        return fields.get(name) if fields.get(name) is not None else request.query_params.get(name)

    return AnalysisOptions(
        prompt=pick("prompt") or DEFAULT_PROMPT,
        detail=pick("detail") or None,
        task=pick("task") or None,
        max_tokens=parse_max_tokens(pick("max_tokens")),
    )


router = APIRouter(prefix="/api")


@router.post(
    "/analyze",
    response_model=AnalysisResponse,
    responses=_PROBLEM_RESPONSES,
    openapi_extra=_ANALYZE_BODY,
    summary="Analyse one image",
)
async def analyze(request: Request) -> JSONResponse:
    """Send an image (multipart field ``file`` or the raw body) and get the model's analysis."""
    services: Services = request.app.state.services
    settings = services.settings
    data, fields = await read_upload(request, settings)
    options = _options(request, fields)
    if not data:
        raise UnsupportedImage("the request holds no image bytes")
    result = await services.analyzer.analyze(data, options)
    return JSONResponse(result)


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
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = Services(settings, analyzer)
    app.include_router(router)
    app.include_router(extract_router)

    @app.exception_handler(VisionError)
    async def _vision_error(_: Request, exc: VisionError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s: %s", type(exc).__name__, exc.detail)
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _generic_problem(400, "Invalid parameter", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _generic_problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _generic_problem(500, "Internal error", "an unexpected error occurred; it has been logged")

    return app


app = create_app()
