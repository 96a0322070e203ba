"""What the route modules share in OpenAPI: response parts, the common form fields, the documented problems.

Kept apart from the routers so each router module documents its answers with the same pieces,
and no router imports another.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.analysis_options import MAX_PROMPT_CHARS
from shared.http.problems import problem_responses
from shared.tasks import DETAILS


class UsageModel(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CallModel(BaseModel):
    """What the model call took besides the answer (absent for cached and offline answers)."""

    charge_estimate: int = Field(description="Tokens of quota the call was charged before it was sent: "
                                             "prompt text and images, plus max_tokens")
    attempts: int = Field(description="Requests sent, retries included")
    throttled: int = Field(description="429 answers waited out")
    admission_wait_seconds: float = Field(description="Seconds spent waiting for the deployment's quota")


class PageModel(BaseModel):
    page: int = Field(description="Page number, from 1")
    width: int = Field(description="Width of the page image sent to the model")
    height: int
    bytes: int
    estimated_tokens: int
    text_layer: bool = Field(description="The page has a text layer (a digital PDF): read exactly, not by OCR")


class DocumentModel(BaseModel):
    """Present when the upload was a PDF or a multi-page TIFF."""

    kind: str = Field(examples=["PDF"], description="PDF or TIFF")
    page_count: int = Field(description="Pages in the document")
    pages: list[PageModel] = Field(description="The pages read (all, or those pages= selected)")
    requests: int = Field(description="Model requests the pages took (page groups)")


#: The page selection, for the routes that take documents (analyze and extraction).
PAGES_FIELD = {"pages": {"type": "string", "maxLength": 200, "examples": ["1-3,7"],
                         "description": "Pages of a PDF or multi-page TIFF to read (default: all, up to "
                                        "VISION_MAX_PAGES)"}}
#: The document and image media types a raw body may have (the bytes decide, not the header).
DOCUMENT_MEDIA_TYPES = ("image/*", "application/pdf", "application/octet-stream")


class ImageModel(BaseModel):
    width: int = Field(description="Width of the image sent to the model")
    height: int = Field(description="Height of the image sent to the model")
    bytes: int = Field(description="Size of the JPEG sent to the model")
    format: str = Field(description="Format of the upload, sniffed from its bytes")
    estimated_tokens: int = Field(description="Image tokens the model is expected to bill")
    original_width: int | None = None
    original_height: int | None = None
    original_bytes: int | None = None
    service_width: int | None = Field(default=None, description="Width the model service will look at (it "
                                      "shrinks what it is sent; no more than this is sent)")
    service_height: int | None = None
    saved_bytes: int | None = Field(default=None, description="Upload bytes the model call does not carry")


#: What every route that takes uploads answers alike, documented once.
UPLOAD_PROBLEMS = {
    415: "Not a supported image or document (decided from the bytes)",
    422: "Image cannot be decoded or exceeds the pixel limit; a document is encrypted, damaged, empty "
         "(/problems/unreadable-document) or has a page larger than any paper (/problems/page-too-large); "
         "or the content filter blocked it",
    429: "The model service is throttling (/problems/model-throttled), or today's spend budget is used up "
         "(/problems/budget-exhausted: spent_usd, budget_usd, resets_at); see Retry-After",
    501: "The offline engine cannot do this (names the settings that enable a model)",
    503: "No model service configured, or it is down (see Retry-After)",
}

#: The problems of the extraction and multi-image routes, documented once for both.
DOCUMENT_PROBLEMS = problem_responses({
    **UPLOAD_PROBLEMS,
    400: "Bad parameters, or a schema strict structured outputs cannot take (names keyword and pointer)",
    413: "An image over VISION_MAX_IMAGE_BYTES, images together over VISION_MAX_TOTAL_BYTES, or a document "
         "with more pages than one request takes (/problems/too-many-pages: choose some with pages=)",
    502: "The model's output was still invalid after one re-ask (raw_reply, errors), or unusable",
})

#: Form fields (and query parameters) the extraction and multi-image routes share. ``max_tokens``'s
#: maximum is the setting's, written in by :mod:`shared.http.openapi`.
FORM_FIELDS = {
    "prompt": {"type": "string", "maxLength": MAX_PROMPT_CHARS, "description": "Instructions instead of the default"},
    "detail": {"type": "string", "enum": list(DETAILS)},
    "max_tokens": {"type": "integer", "minimum": 1},
}
