"""Which image format the bytes are, by their magic numbers alone: what :mod:`shared.imaging` accepts.

Why a module of its own: it is the gate before Pillow (names and ``Content-Type`` are the caller's
claim, the first bytes are the file's), it needs no Pillow at all, and keeping it apart keeps
:mod:`shared.imaging.prepare` to the decoding and resizing. JPEG, PNG, GIF, WEBP, BMP and TIFF are accepted;
no known signature (text, PDF, HTML, and also empty input: one answer for "this is not an image")
is ``UnsupportedImage`` (415), naming what the bytes look like when we can tell.
"""

from __future__ import annotations

from shared.errors import UnsupportedImage

SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
# Only to make the 415 message helpful; none of these is accepted.
_OTHER_SIGNATURES = ((b"%PDF", "PDF"), (b"<svg", "SVG"), (b"<?xml", "XML"), (b"<!doctype html", "HTML"))
_OTHER_SIGNATURES += ((b"<html", "HTML"), (b"PK\x03\x04", "ZIP"))
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis"})  # iPhone photos


def sniff_format(data: bytes) -> str | None:
    """The image format the first bytes announce, or None if none we accept.

    Only magic bytes count. BMP's two-byte ``BM`` is too weak on its own (plenty
    of text starts with "BM"), so its DIB header size must also be one Pillow
    reads.
    """
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def sniff_or_raise(data: bytes) -> str:
    """The sniffed format; :class:`UnsupportedImage` for empty input and for bytes of no accepted format."""
    if not data:
        raise UnsupportedImage("the image is empty (0 bytes)", size_bytes=0)
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:16].lstrip().lower()
        seen = next((name for sig, name in _OTHER_SIGNATURES if head.startswith(sig.lower())), None)
        if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
            seen = "HEIC/AVIF"
        told = f"; the bytes look like {seen}" if seen else ""
        raise UnsupportedImage(f"not an image format we accept ({', '.join(SUPPORTED_FORMATS)}){told}", detected=seen)
    return fmt
