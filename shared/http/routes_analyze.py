"""``POST /api/analyze``: one image, as multipart ``file`` or the raw body; parameters from the form or query."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shared.analysis import Analyzer, StreamedKey
from shared.analysis_options import MAX_PROMPT_CHARS, AnalysisOptions, parse_max_tokens
from shared.errors import InvalidParameter, UnsupportedImage
from shared.http.models import (
    DOCUMENT_MEDIA_TYPES,
    PAGES_FIELD,
    UPLOAD_PROBLEMS,
    CallModel,
    DocumentModel,
    ImageModel,
    UsageModel,
)
from shared.http.problems import problem_responses
from shared.http.uploads import is_multipart, read_upload
from shared.services import Services
from shared.tasks import DEFAULT_PROMPT, DETAILS, TASKS


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
    image: ImageModel = Field(description="The image sent (a document's first page)")
    document: DocumentModel | None = None
    call: CallModel | None = None
    latency_ms: int


_PROBLEM_RESPONSES = problem_responses({
    **UPLOAD_PROBLEMS,
    400: "Bad parameters",
    413: "Upload larger than VISION_MAX_IMAGE_BYTES, or more pages than VISION_MAX_PAGES "
         "(/problems/too-many-pages: choose some with pages=)",
    502: "The model service answered with something unusable",
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
                        "file": {"type": "string", "format": "binary",
                                 "description": "The image, PDF or multi-page TIFF"},
                        "prompt": {"type": "string", "default": DEFAULT_PROMPT, "maxLength": MAX_PROMPT_CHARS},
                        "detail": {"type": "string", "enum": list(DETAILS)},
                        "task": {"type": "string", "enum": list(TASKS)},
                        "max_tokens": {"type": "integer", "minimum": 1},
                        **PAGES_FIELD,
                    },
                }
            },
            **{media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in DOCUMENT_MEDIA_TYPES},
        },
    },
    "parameters": [
        {"name": "prompt", "in": "query",
         "schema": {"type": "string", "default": DEFAULT_PROMPT, "maxLength": MAX_PROMPT_CHARS},
         "description": "Question about the image (a form field wins over the query)"},
        {"name": "detail", "in": "query", "schema": {"type": "string", "enum": list(DETAILS)},
         "description": "Image detail; chosen from task and size when absent"},
        {"name": "task", "in": "query", "schema": {"type": "string", "enum": list(TASKS)},
         "description": "What the analysis is for; steers the detail choice"},
        {"name": "max_tokens", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "pages", "in": "query", "schema": PAGES_FIELD["pages"]},
    ],
}


def _options(request: Request, fields: dict[str, str]) -> AnalysisOptions:
    def pick(name: str) -> str | None:
        return fields.get(name) if fields.get(name) is not None else request.query_params.get(name)

    return AnalysisOptions(
        prompt=pick("prompt") or DEFAULT_PROMPT,
        detail=pick("detail") or None,
        task=pick("task") or None,
        max_tokens=parse_max_tokens(pick("max_tokens")),
        pages=pick("pages") or None,
    )


def _streamed_key(request: Request, analyzer: Analyzer) -> StreamedKey | None:
    """For a raw body, whose parameters are all in the query string, the cache key to hash as it arrives.

    None for multipart (fields may follow the file) and for bad parameters, which are then reported
    after the body is read, in the order every upload reports its problems.
    """
    if is_multipart(request):
        return None
    try:
        return analyzer.start_analysis_key(_options(request, {}))
    except InvalidParameter:
        return None


router = APIRouter(prefix="/api")


@router.post(
    "/analyze",
    response_model=AnalysisResponse,
    responses=_PROBLEM_RESPONSES,
    openapi_extra=_ANALYZE_BODY,
    summary="Analyse one image or document (PDF, multi-page TIFF)",
)
async def analyze(request: Request) -> JSONResponse:
    """Send an image (multipart field ``file`` or the raw body) and get the model's analysis."""
    services: Services = request.app.state.services
    settings = services.settings
    streamed = _streamed_key(request, services.analyzer)
    data, fields = await read_upload(request, settings, digest=streamed)
    options = _options(request, fields)
    if not data:
        raise UnsupportedImage("the request holds no image bytes")
    result = await services.analyzer.analyze(data, options, streamed=streamed)
    return JSONResponse(result)
