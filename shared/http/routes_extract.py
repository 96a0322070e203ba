"""HTTP routes for structured extraction: ``router`` is included by the app.

``POST /api/extract/invoice``, ``/api/extract/table`` and ``/api/extract`` (any JSON Schema): the
image as multipart ``file`` (form fields ``schema`` (JSON text), ``prompt``, ``detail``,
``max_tokens``), as the raw body (parameters in the query; no custom schema this way), or as a JSON
body ``{"image": "<base64 or data: URL>", "schema": {...}, "prompt": ..., "detail": ...,
"max_tokens": ...}``. An invalid or unsupported schema is a 400 naming the keyword and its JSON
pointer; output still invalid after the re-ask is a 502 carrying ``raw_reply`` and ``errors``.

The response models below document the answers in OpenAPI; the handlers return the service's
dict as it is, like ``/api/analyze``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shared.analysis_options import parse_max_tokens
from shared.errors import InvalidParameter
from shared.extraction import Invoice, Table, extract
from shared.http.models import (
    DOCUMENT_MEDIA_TYPES,
    DOCUMENT_PROBLEMS,
    FORM_FIELDS,
    PAGES_FIELD,
    DocumentModel,
    ImageModel,
    UsageModel,
)
from shared.http.uploads import field_picker, read_extract_input


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
    image: ImageModel = Field(description="The image sent (a document's first page)")
    document: DocumentModel | None = None
    cached: bool
    schema_hash: str = Field(description="SHA-256 of the schema (part of the cache key)")
    latency_ms: int


class InvoiceResponse(ExtractionResponse):
    data: Invoice  # type: ignore[assignment]


class TableResponse(ExtractionResponse):
    data: Table  # type: ignore[assignment]


def _extract_body(with_schema: bool) -> dict[str, Any]:
    form: dict[str, Any] = {"file": {"type": "string", "format": "binary",
                                     "description": "The image, PDF or multi-page TIFF"}, **FORM_FIELDS, **PAGES_FIELD}
    json_body: dict[str, Any] = {"image": {"type": "string",
                                           "description": "The image or document, base64 or a data: URL"},
                                 **FORM_FIELDS, **PAGES_FIELD}
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
        for media_type in DOCUMENT_MEDIA_TYPES:
            content[media_type] = {"schema": {"type": "string", "format": "binary"}}
    parameters = [{"name": name, "in": "query", "schema": schema}
                  for name, schema in {**FORM_FIELDS, **PAGES_FIELD}.items()]
    return {"requestBody": {"required": True, "content": content}, "parameters": parameters}


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
    pick = field_picker(request, fields)
    result = await extract(
        services.analyzer, data, kind, schema=_schema(fields.get("schema")), prompt=pick("prompt"),
        detail=pick("detail") or None, max_tokens=parse_max_tokens(pick("max_tokens")), pages=pick("pages") or None,
    )
    return JSONResponse(result)


router = APIRouter(prefix="/api")


@router.post("/extract/invoice", response_model=InvoiceResponse, responses=DOCUMENT_PROBLEMS,
             openapi_extra=_extract_body(False), summary="Extract an invoice as validated JSON")
async def extract_invoice(request: Request) -> JSONResponse:
    """Vendor, customer, dates (ISO 8601), line items and amounts; nulls where nothing is printed.
    ``warnings`` lists arithmetic and date inconsistencies; the data is returned as read."""
    return await _extract(request, "invoice")


@router.post("/extract/table", response_model=TableResponse, responses=DOCUMENT_PROBLEMS,
             openapi_extra=_extract_body(False), summary="Extract a table as columns and rows")
async def extract_table(request: Request) -> JSONResponse:
    """``columns`` in order and ``rows`` keyed by column; empty and merged cells are null."""
    return await _extract(request, "table")


@router.post("/extract", response_model=ExtractionResponse, responses=DOCUMENT_PROBLEMS,
             openapi_extra=_extract_body(True), summary="Extract data described by your JSON Schema")
async def extract_schema(request: Request) -> JSONResponse:
    """Send a JSON Schema (root an object); the data returned is valid against it, or the answer is a 502."""
    return await _extract(request, "schema")
