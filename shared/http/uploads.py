"""Reading uploads: one image (multipart, raw body or JSON), or several images, always bounded.

Every route reads its body through these, so the limits are enforced the same way everywhere:
a declared ``Content-Length`` over the limit is refused before reading, and the body is read as a
stream cut off at the limit (:func:`limited_body`), so an oversized upload is never held whole.
A raw body can also be hashed as it streams in (:func:`digested`), for a cache key known before it.
The route modules include no one else's code: this is the one shared reader.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from shared.config import Settings
from shared.errors import InvalidParameter, PayloadTooLarge
from shared.multi import TotalTooLarge, about_image
from shared.schemas import MAX_SCHEMA_CHARS

MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the file part
JSON_OVERHEAD = 4 * MAX_SCHEMA_CHARS + 64 * 1024  # schema (worst case \u-escaped) and the other fields
#: Chunks up to this size are hashed on the event loop (a quarter of a millisecond at most); larger ones,
#: as a whole body arriving at once under the Functions host, in a worker thread.
INLINE_HASH_BYTES = 256 * 1024


class Digest(Protocol):
    """What :func:`digested` feeds: a hashlib object, or :class:`shared.analysis.StreamedKey`."""

    def update(self, chunk: bytes, /) -> None: ...


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


async def digested(chunks: AsyncIterator[bytes], digest: Digest) -> AsyncIterator[bytes]:
    """``chunks`` passed through, each fed to ``digest`` first, in order.

    Hashing as the body arrives spares a second pass over it later. Large chunks (the whole body at
    once, as the Functions host delivers it) are hashed in a worker thread (hashlib releases the GIL),
    so one 20 MiB upload never holds the event loop for the tens of milliseconds that takes.
    """
    async for chunk in chunks:
        if len(chunk) > INLINE_HASH_BYTES:
            await asyncio.to_thread(digest.update, chunk)
        else:
            digest.update(chunk)
        yield chunk


def is_multipart(request: Request) -> bool:
    """Whether the body is a form (fields and file parts) rather than the raw image: the routes read each apart."""
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_upload(request: Request, settings: Settings, *, digest: Digest | None = None
                      ) -> tuple[bytes, dict[str, str]]:
    """The image bytes and form fields, from multipart (``file``) or a raw body.

    ``digest`` is fed a raw body as it streams in; it is refused with multipart, whose file part the
    parser spools and whose fields (which the digest may depend on) can follow the file.
    """
    limit = settings.max_image_bytes
    declared = request.headers.get("content-length")
    multipart = is_multipart(request)
    if multipart and digest is not None:
        raise ValueError("a multipart body is not hashed as it streams in")
    body_limit = limit + MULTIPART_OVERHEAD if multipart else limit
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(limit, int(declared))
    body = limited_body(request, body_limit, lambda: PayloadTooLarge(limit))
    if not multipart:
        chunks = [chunk async for chunk in (digested(body, digest) if digest is not None else body)]
        return b"".join(chunks), {}
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


_JSON_FIELDS: dict[str, type | tuple[type, ...]] = {
    "image": str, "schema": dict, "prompt": str, "detail": str, "max_tokens": (int, str), "pages": str,
}


async def read_json_upload(request: Request, settings: Settings) -> tuple[bytes, dict[str, Any]]:
    limit = settings.max_image_bytes
    body_limit = 4 * (limit // 3 + 1) + JSON_OVERHEAD
    chunks = [chunk async for chunk in limited_body(request, body_limit, lambda: PayloadTooLarge(limit))]
    # Parsing up to ~27 MiB of JSON and decoding its base64 is tens of milliseconds of CPU: not on the loop.
    return await asyncio.to_thread(_decode_json_upload, b"".join(chunks), limit)


def _decode_json_upload(body: bytes, limit: int) -> tuple[bytes, dict[str, Any]]:
    try:
        document = json.loads(body)
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
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        return await read_json_upload(request, settings)
    return await read_upload(request, settings)


async def read_images(request: Request, settings: Settings) -> tuple[list[bytes], dict[str, str]]:
    """The images (one multipart ``file`` part each) and form fields; the whole body is bounded."""
    most = settings.max_images
    total_limit = settings.max_total_bytes
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


def field_picker(request: Request, fields: dict[str, Any]) -> Callable[[str], Any]:
    """A field from the form or JSON body, else from the query string."""

    def pick(name: str) -> Any:
        value = fields.get(name)
        return value if value is not None else request.query_params.get(name)

    return pick
