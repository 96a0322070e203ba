"""The OpenAPI document as the API behaves, so generated clients and fuzzers agree with it.

FastAPI's document is adjusted in two ways (:func:`openapi_document`, a pure function of the
generated document and the limits):

* the limits that come from settings are written in: ``max_tokens`` is 1 to
  ``VISION_MAX_OUTPUT_TOKENS``, and ``compare``/``sequence`` take 2 to ``VISION_MAX_IMAGES`` files;
* the default 422 ``HTTPValidationError`` FastAPI adds to routes with declared parameters is
  removed: this API answers invalid parameters with 400 problems (see ``shared.http.app``), and
  its own 422s (undecodable images, content filter) are declared by the routes that send them.

Fixed limits (``prompt`` at most ``MAX_PROMPT_CHARS``) are in the route modules' schemas.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.config import Settings
from shared.errors import ConfigError

_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
_FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")
MULTI_IMAGE_PATHS = ("/api/compare", "/api/sequence")


@dataclass(frozen=True)
class Limits:
    max_output_tokens: int
    max_images: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_output_tokens, settings.max_images)


def _named_schemas(operation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, schema) of one operation's parameters and request-body properties."""
    for parameter in operation.get("parameters", ()):
        if "schema" in parameter:
            yield parameter["name"], parameter["schema"]
    for media in operation.get("requestBody", {}).get("content", {}).values():
        yield from media.get("schema", {}).get("properties", {}).items()


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref") == _FASTAPI_422


def openapi_document(generated: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """``generated`` (FastAPI's document, not modified) with the settings' limits and without FastAPI's 422s."""
    document = copy.deepcopy(generated)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if _is_fastapi_422(responses.get("422", {})):
                del responses["422"]
            for name, schema in _named_schemas(operation):
                if name == "max_tokens":
                    schema.update(minimum=1, maximum=limits.max_output_tokens)
                if name == "file" and path in MULTI_IMAGE_PATHS and schema.get("type") == "array":
                    schema.update(minItems=2, maxItems=limits.max_images)
    text = repr(document["paths"])
    schemas = document.get("components", {}).get("schemas", {})
    for name in _FASTAPI_SCHEMAS:
        if f"#/components/schemas/{name}" not in text:
            schemas.pop(name, None)
    return document


def install(app: FastAPI, settings: Callable[[], Settings]) -> None:
    """Serve :func:`openapi_document` as the app's OpenAPI (built once; defaults when settings are broken)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            try:
                limits = Limits.of(settings())
            except ConfigError:  # /api/health names the bad setting; the document shows the defaults
                limits = Limits.of(Settings.from_mapping({}))
            generated = get_openapi(title=app.title, version=app.version, description=app.description,
                                    routes=app.routes)
            app.openapi_schema = openapi_document(generated, limits)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
