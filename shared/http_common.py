"""What every route module shares: response models, problem documents, the bounded body reader.

Kept apart from :mod:`shared.api` so route modules that the app includes can use them without
importing the app itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request

PROBLEM_JSON = "application/problem+json"


class UsageModel(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ImageModel(BaseModel):
    width: int = Field(description="Width of the image sent to the model")
    height: int = Field(description="Height of the image sent to the model")
    bytes: int = Field(description="Size of the JPEG sent to the model")
    format: str = Field(description="Format of the upload, sniffed from its bytes")
    estimated_tokens: int = Field(description="Image tokens the model is expected to bill")
    original_width: int | None = None
    original_height: int | None = None
    original_bytes: int | None = None


class Problem(BaseModel):
    type: str = Field(examples=["/problems/unsupported-media-type"])
    title: str
    status: int
    detail: str


def problem_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each status documented as a problem+json :class:`Problem`."""
    return {
        status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": description}
        for status, description in descriptions.items()
    }


async def limited_body(request: Request, limit: int, error: Callable[[], Exception]) -> AsyncIterator[bytes]:
    """The request body as a stream that raises ``error()`` once it passes ``limit`` bytes.

    Uploads are refused part way, before the whole body is held in memory.
    """
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise error()
        yield chunk
