"""HTTP routes for several images: ``POST /api/compare`` and ``POST /api/sequence``.

Multipart with one ``file`` field per image (2..``VISION_MAX_IMAGES``), read as one stream cut off
at ``VISION_MAX_TOTAL_BYTES`` (413) by :func:`shared.http.uploads.read_images`. The response models
document the answers in OpenAPI; the handlers return the service's dict as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shared.analysis_options import parse_max_tokens
from shared.http.models import DOCUMENT_PROBLEMS, FORM_FIELDS, ImageModel, UsageModel
from shared.http.uploads import field_picker, read_images
from shared.multi import compare, sequence


class ComparedImage(ImageModel):
    index: int = Field(description="1-based position in the upload")
    label: str = Field(examples=["[Image 1]"])
    detail: str


class CompareResponse(BaseModel):
    analysis: str
    model: str
    deployment: str | None
    provider: str
    finish_reason: str | None
    images: list[ComparedImage]
    totals: dict[str, int] = Field(description="images, bytes, sent_bytes, estimated_image_tokens")
    usage: UsageModel
    estimated_cost_usd: float
    cached: bool
    latency_ms: int


class SynthesisModel(BaseModel):
    common_themes: list[str]
    changes: list[str]
    key_insights: list[str]
    recommendations: list[str]


class SequenceResponse(BaseModel):
    images: list[dict[str, Any]] = Field(description="Each image's analysis, as /api/analyze returns it, with index")
    synthesis: SynthesisModel
    synthesis_meta: dict[str, Any]
    model: str
    deployment: str | None
    provider: str
    usage: UsageModel = Field(description="All parts together; cached parts report what they cost when made")
    estimated_cost_usd: float
    cached: bool
    latency_ms: int


_MULTI_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 2,
                            "description": "2..VISION_MAX_IMAGES images, one 'file' part each, in order"},
                   **FORM_FIELDS}}}}},
    "parameters": [{"name": name, "in": "query", "schema": schema} for name, schema in FORM_FIELDS.items()]}


async def _multi(request: Request, run: Callable[..., Awaitable[dict[str, Any]]]) -> JSONResponse:
    services = request.app.state.services
    images, fields = await read_images(request, services.settings)
    pick = field_picker(request, fields)
    result = await run(services.analyzer, images, prompt=pick("prompt"), detail=pick("detail") or None,
                       max_tokens=parse_max_tokens(pick("max_tokens")))
    return JSONResponse(result)


router = APIRouter(prefix="/api")


@router.post("/compare", response_model=CompareResponse, responses=DOCUMENT_PROBLEMS, openapi_extra=_MULTI_BODY,
             summary="Compare 2..VISION_MAX_IMAGES images in one request")
async def compare_images(request: Request) -> JSONResponse:
    """The images are labelled [Image 1], [Image 2]... in upload order; per-image token estimates included."""
    return await _multi(request, compare)


@router.post("/sequence", response_model=SequenceResponse, responses=DOCUMENT_PROBLEMS, openapi_extra=_MULTI_BODY,
             summary="Analyse each image, then synthesise themes, changes, insights and recommendations")
async def sequence_images(request: Request) -> JSONResponse:
    """Each image is analysed (and cached) on its own; one text-only call synthesises the analyses."""
    return await _multi(request, sequence)
