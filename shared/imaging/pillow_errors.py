"""Pillow's exceptions from broken or hostile input, as our errors: the one place they are mapped.

Why a module of its own: every module that decodes with Pillow (:mod:`shared.imaging.prepare`, the offline
engine, the document reader) decodes inside :func:`pillow_errors`, and none of them should need the
image preparation to do so. Pillow raises a zoo of exception types from corrupt files (a truncated
Huffman table is an ``OSError``, a crafted TIFF a ``struct.error`` or a ``MemoryError``); callers see
two: :class:`~shared.errors.ImageTooLarge` (413) and :class:`~shared.errors.ImageDecodeError` (422).
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, UnidentifiedImageError

from shared.errors import ImageDecodeError, ImageTooLarge

# What Pillow raises from broken or hostile input. MemoryError is here because a crafted header
# (say, a huge TIFF strip) can make a decoder ask for it.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, struct.error, EOFError, IndexError, KeyError, TypeError)
_DECODE_ERRORS += (ZeroDivisionError, NotImplementedError, MemoryError)


@contextmanager
def pillow_errors(fmt: str | None = None, *, limit: int | None = None) -> Iterator[None]:
    """Pillow's exceptions from broken or hostile input as our errors: the one place they are mapped.

    The bomb guard becomes :class:`ImageTooLarge`, anything else a decoder raises (``_DECODE_ERRORS``)
    :class:`ImageDecodeError`; ``fmt`` (the sniffed format) and ``limit`` only make the message exact.
    """
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(exc, limit) from exc
    except UnidentifiedImageError as exc:
        told = f"the bytes start like {fmt} but Pillow cannot read them" if fmt else "Pillow cannot read the image"
        raise ImageDecodeError(told, format=fmt) from exc
    except _DECODE_ERRORS as exc:
        raise _undecodable(fmt, exc) from exc


def open_image(data: bytes, fmt: str, limit: int | None) -> Image.Image:
    """Parse the header with the sniffed format's plugin only; no pixels decoded."""
    with pillow_errors(fmt, limit=limit):
        return Image.open(io.BytesIO(data), formats=[fmt])


def _too_large(exc: Exception, limit: int | None) -> ImageTooLarge:
    """ImageTooLarge from Pillow's bomb guard, whose message is all it tells us of the size."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pillow = (Image.MAX_IMAGE_PIXELS or 0) * (2 if isinstance(exc, Image.DecompressionBombError) else 1)
    effective = min((x for x in (limit, pillow) if x), default=0)
    return ImageTooLarge(int(found.group(1)) if found else effective + 1, effective)


def _undecodable(fmt: str | None, exc: BaseException) -> ImageDecodeError:
    reason = str(exc) or type(exc).__name__
    return ImageDecodeError(f"the {fmt + ' ' if fmt else ''}image cannot be decoded: {reason}", format=fmt)
