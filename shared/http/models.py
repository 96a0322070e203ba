"""What the route modules share in OpenAPI: response parts, the common form fields, the documented problems.

Kept apart from the routers so each router module documents its answers with the same pieces,
and no router imports another.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.analysis import MAX_PROMPT_CHARS
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


class ImageModel(BaseModel):
    width: int = Field(description="Width of the image sent to the model")
    height: int = Field(description="Height of the image sent to the model")
    bytes: int = Field(description="Size of the JPEG sent to the model")
    format: str = Field(description="Format of the upload, sniffed from its bytes")
    estimated_tokens: int = Field(description="Image tokens the model is expected to bill")
    original_width: int | None = None
    original_height: int | None = None
    original_bytes: int | None = None


#: The problems of the extraction and multi-image routes, documented once for both.
DOCUMENT_PROBLEMS = problem_responses({
    400: "Bad parameters, or a schema strict structured outputs cannot take (names keyword and pointer)",
    413: "An image over VISION_MAX_IMAGE_BYTES, or images together over VISION_MAX_TOTAL_BYTES",
    415: "Not a supported image (decided from the bytes)",
    422: "Image cannot be decoded, exceeds the pixel limit, or was blocked by the content filter",
    429: "The model service is throttling (see Retry-After)",
    501: "The offline engine cannot do this (names the settings that enable a model)",
    502: "The model's output was still invalid after one re-ask (raw_reply, errors), or unusable",
    503: "No model service configured, or it is down (see Retry-After)",
})

#: Form fields (and query parameters) the extraction and multi-image routes share. ``max_tokens``'s
#: maximum is the setting's, written in by :mod:`shared.http.openapi`.
FORM_FIELDS = {
    "prompt": {"type": "string", "maxLength": MAX_PROMPT_CHARS, "description": "Instructions instead of the default"},
    "detail": {"type": "string", "enum": list(DETAILS)},
    "max_tokens": {"type": "integer", "minimum": 1},
}
