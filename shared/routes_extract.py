"""HTTP routes for structured extraction and multi-image requests: ``router`` is included by the app.

* ``POST /api/extract/invoice``, ``/api/extract/table`` and ``/api/extract`` (any JSON Schema): the
  image as multipart ``file`` (form fields ``schema`` (JSON text), ``prompt``, ``detail``,
  ``max_tokens``), as the raw body (parameters in the query; no custom schema this way), or as a JSON
  body ``{"image": "<base64 or data: URL>", "schema": {...}, "prompt": ..., "detail": ...,
  "max_tokens": ...}``. An invalid or unsupported schema is a 400 naming the keyword and its JSON
  pointer; output still invalid after the re-ask is a 502 carrying ``raw_reply`` and ``errors``.
* ``POST /api/compare`` and ``POST /api/sequence``: multipart with one ``file`` field per image
  (2..``VISION_MAX_IMAGES``), read as one stream cut off at ``VISION_MAX_TOTAL_BYTES`` (413), like
  :func:`shared.api.read_upload` does for one image.

``shared.api`` is imported inside the functions only: the app module includes this router, so a
module-level import here would be circular. The response models below document the answers in
OpenAPI; the handlers return the service's dict as it is, like ``/api/analyze``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from shared.analysis import DETAILS, parse_max_tokens
from shared.config import Settings
from shared.errors import InvalidParameter, PayloadTooLarge
from shared.extraction import Invoice, Table, extract
from shared.http_common import ImageModel, UsageModel, limited_body, problem_responses
from shared.multi import TotalTooLarge, about_image, compare, sequence
from shared.schemas import MAX_SCHEMA_CHARS

MULTIPART_OVERHEAD = 64 * 1024
JSON_OVERHEAD = 4 * MAX_SCHEMA_CHARS + 64 * 1024  # schema (worst case \u-escaped) and the other fields


class ExtractionWarning(BaseModel):
    code: str = Field(examples=["total_mismatch"])
    message: str
    field: str | None = Field(examples=["total"])


class ExtractionResponse(BaseModel):
    kind: str = Field(description="invoice, table or schema")
    data: dict[str, Any] = Field(description="The extracted data, valid against the schema")
    warnings: list[ExtractionWarning] = Field(description="Inconsistencies found in the data; nothing is fixed")
    attempts: int = Field(description="Model calls made: 2 when the first reply had to be corrected")
    model: str
    deployment: str | None
    provider: str
    detail: str
    usage: UsageModel = Field(description="Summed over the attempts")
    estimated_cost_usd: float
    image: ImageModel
    cached: bool
    schema_hash: str = Field(description="SHA-256 of the schema (part of the cache key)")
    latency_ms: int


class InvoiceResponse(ExtractionResponse):
    data: Invoice  # type: ignore[assignment]


class TableResponse(ExtractionResponse):
    data: Table  # type: ignore[assignment]


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


_PROBLEMS = problem_responses({
    400: "Bad parameters, or a schema strict structured outputs cannot take (names keyword and pointer)",
    413: "An image over VISION_MAX_IMAGE_BYTES, or images together over VISION_MAX_TOTAL_BYTES",
    415: "Not a supported image (decided from the bytes)",
    422: "Image cannot be decoded, exceeds the pixel limit, or was blocked by the content filter",
    429: "The model service is throttling (see Retry-After)",
    501: "The offline engine cannot do this (names the settings that enable a model)",
    502: "The model's output was still invalid after one re-ask (raw_reply, errors), or unusable",
    503: "No model service configured, or it is down (see Retry-After)",
})

_COMMON_FIELDS = {
    "prompt": {"type": "string", "description": "Instructions instead of the default"},
    "detail": {"type": "string", "enum": list(DETAILS)},
    "max_tokens": {"type": "integer", "minimum": 1},
}


def _extract_body(with_schema: bool) -> dict[str, Any]:
    form: dict[str, Any] = {"file": {"type": "string", "format": "binary", "description": "The image"},
                            **_COMMON_FIELDS}
    json_body: dict[str, Any] = {"image": {"type": "string", "description": "The image, base64 or a data: URL"},
                                 **_COMMON_FIELDS}
    if with_schema:
        form["schema"] = {"type": "string", "description": "The JSON Schema of the data, as JSON text"}
        json_body["schema"] = {"type": "object", "description": "The JSON Schema of the data"}
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file", *(["schema"] * with_schema)],
                                           "properties": form}},
        "application/json": {"schema": {"type": "object", "required": ["image", *(["schema"] * with_schema)],
                                        "properties": json_body}},
    }
    if not with_schema:
        content["image/*"] = content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    parameters = [{"name": name, "in": "query", "schema": schema} for name, schema in _COMMON_FIELDS.items()]
    return {"requestBody": {"required": True, "content": content}, "parameters": parameters}


_MULTI_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"},
                            "description": "2..VISION_MAX_IMAGES images, one 'file' part each, in order"},
                   **_COMMON_FIELDS}}}}}}


_JSON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "image": str, "schema": dict, "prompt": str, "detail": str, "max_tokens": (int, str),
}


async def _read_json_upload(request: Request, settings: Settings) -> tuple[bytes, dict[str, Any]]:
    limit = settings.max_image_bytes
    body_limit = 4 * (limit // 3 + 1) + JSON_OVERHEAD
    chunks = [chunk async for chunk in limited_body(request, body_limit, lambda: PayloadTooLarge(limit))]
    try:
        document = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidParameter("body", f"is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("image"), str):
        raise InvalidParameter("image", 'send {"image": "<base64>", ...} as the JSON body')
    for name, value in document.items():
        if name not in _JSON_FIELDS:
            raise InvalidParameter(name, f"is not a field of the JSON body ({', '.join(_JSON_FIELDS)})")
        if (value is not None and not isinstance(value, _JSON_FIELDS[name])) or isinstance(value, bool):
            raise InvalidParameter(name, f"has the wrong type ({type(value).__name__})")
    encoded = document.pop("image")
    if encoded.startswith("data:") and "," in encoded:
        encoded = encoded.split(",", 1)[1]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("image", "is not valid base64") from None
    if len(data) > limit:
        raise PayloadTooLarge(limit, len(data))
    return data, document


async def read_extract_input(request: Request, settings: Settings) -> tuple[bytes, dict[str, Any]]:
    """The image and fields from multipart, a raw body or a JSON body (see the module docstring)."""
    from shared.api import read_upload

    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        return await _read_json_upload(request, settings)
    return await read_upload(request, settings)


async def read_images(request: Request, settings: Settings) -> tuple[list[bytes], dict[str, str]]:
    """The images (one multipart ``file`` part each) and form fields; the whole body is bounded."""
    most = getattr(settings, "max_images", 10)
    total_limit = getattr(settings, "max_total_bytes", 50 * 1024 * 1024)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidParameter("file", "send the images as multipart/form-data, one 'file' part per image")
    body_limit = total_limit + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise TotalTooLarge(total_limit, int(declared))
    stream = limited_body(request, body_limit, lambda: TotalTooLarge(total_limit))
    parser = MultiPartParser(request.headers, stream, max_files=most + 1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "files" in exc.message.lower():
            raise InvalidParameter("file", f"send at most {most} images (VISION_MAX_IMAGES)") from None
        raise InvalidParameter("file", f"malformed multipart body: {exc.message}") from None
    try:
        uploads = [value for name, value in form.multi_items() if name == "file" and isinstance(value, UploadFile)]
        if len(uploads) > most:
            raise InvalidParameter("file", f"send at most {most} images (VISION_MAX_IMAGES); got {len(uploads)}")
        images = []
        for index, upload in enumerate(uploads, 1):
            data = await upload.read()
            with about_image(index):
                if len(data) > settings.max_image_bytes:
                    raise PayloadTooLarge(settings.max_image_bytes, len(data))
            images.append(data)
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        return images, fields
    finally:
        await form.close()


def _picker(request: Request, fields: dict[str, Any]) -> Callable[[str], Any]:
    """A field from the form or JSON body, else from the query string."""

    def pick(name: str) -> Any:
        value = fields.get(name)
        return value if value is not None else request.query_params.get(name)

    return pick


def _schema(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidParameter("schema", f"is not valid JSON: {exc}") from None
        if isinstance(parsed, dict):
            return parsed
    raise InvalidParameter("schema", "must be a JSON object (a JSON Schema)")


async def _extract(request: Request, kind: str) -> JSONResponse:
    services = request.app.state.services
    data, fields = await read_extract_input(request, services.settings)
    pick = _picker(request, fields)
    result = await extract(
        services.analyzer, data, kind, schema=_schema(fields.get("schema")), prompt=pick("prompt"),
        detail=pick("detail") or None, max_tokens=parse_max_tokens(pick("max_tokens")),
    )
    return JSONResponse(result)


async def _multi(request: Request, run: Callable[..., Awaitable[dict[str, Any]]]) -> JSONResponse:
    services = request.app.state.services
    images, fields = await read_images(request, services.settings)
    pick = _picker(request, fields)
    result = await run(services.analyzer, images, prompt=pick("prompt"), detail=pick("detail") or None,
                       max_tokens=parse_max_tokens(pick("max_tokens")))
    return JSONResponse(result)


router = APIRouter(prefix="/api")


@router.post("/extract/invoice", response_model=InvoiceResponse, responses=_PROBLEMS,
             openapi_extra=_extract_body(False), summary="Extract an invoice as validated JSON")
async def extract_invoice(request: Request) -> JSONResponse:
    """Vendor, customer, dates (ISO 8601), line items and amounts; nulls where nothing is printed.
    ``warnings`` lists arithmetic and date inconsistencies; the data is returned as read."""
    return await _extract(request, "invoice")


@router.post("/extract/table", response_model=TableResponse, responses=_PROBLEMS,
             openapi_extra=_extract_body(False), summary="Extract a table as columns and rows")
async def extract_table(request: Request) -> JSONResponse:
    """``columns`` in order and ``rows`` keyed by column; empty and merged cells are null."""
    return await _extract(request, "table")


@router.post("/extract", response_model=ExtractionResponse, responses=_PROBLEMS,
             openapi_extra=_extract_body(True), summary="Extract data described by your JSON Schema")
async def extract_schema(request: Request) -> JSONResponse:
    """Send a JSON Schema (root an object); the data returned is valid against it, or the answer is a 502."""
    return await _extract(request, "schema")


@router.post("/compare", response_model=CompareResponse, responses=_PROBLEMS, openapi_extra=_MULTI_BODY,
             summary="Compare 2..VISION_MAX_IMAGES images in one request")
async def compare_images(request: Request) -> JSONResponse:
    """The images are labelled [Image 1], [Image 2]... in upload order; per-image token estimates included."""
    return await _multi(request, compare)


@router.post("/sequence", response_model=SequenceResponse, responses=_PROBLEMS, openapi_extra=_MULTI_BODY,
             summary="Analyse each image, then synthesise themes, changes, insights and recommendations")
async def sequence_images(request: Request) -> JSONResponse:
    """Each image is analysed (and cached) on its own; one text-only call synthesises the analyses."""
    return await _multi(request, sequence)
