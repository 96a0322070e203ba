"""Any Pillow mode as 8-bit RGB: what every image the service reads or sends is made of.

Why a module of its own: the image preparation (:mod:`shared.imaging.prepare`), the offline engine and the
document reader all convert the same way, and the choices are decisions: transparency is flattened on white
(documents, logos and screenshots read best so), 16-bit and float greyscale are scaled rather than clipped,
greyscale stays one channel through a resize (a third of the work) and RGBA stays RGBA so the premultiplied
resize keeps edges clean. Pure: a Pillow image in, a Pillow image out.
"""

from __future__ import annotations

from PIL import Image

_WHITE = (255, 255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB, exactly as ``prepare_image`` converts it (alpha on white)."""
    return flatten(normalise(image))


def normalise(im: Image.Image) -> Image.Image:
    """Any mode to L, RGB or RGBA: the modes the resize handles correctly and cheaply.

    Greyscale stays one channel through the resize (a third of the work);
    RGBA stays RGBA so the premultiplied resize keeps edges clean, and
    is flattened afterwards.
    """
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_l(im)
    if im.has_transparency_data:
        if mode == "RGBA":
            return im
        # La has no direct route to RGBA; LA does.
        return (im.convert("LA") if mode == "La" else im).convert("RGBA")
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX ...


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale to 8-bit, scaled rather than clipped.

    Pillow's plain ``convert("L")`` clips these at 255, turning most 16-bit
    scans white. The value range is inferred: ``I;16*`` is 0..65535. ``I``
    holding 0..255 is 8-bit data, 0..65535 is 16-bit data, anything else is
    stretched from its min to its max. ``F`` holding 0..1 is normalised
    data, 0..255 is 8-bit data, anything else is stretched likewise.
    """
    if im.mode.startswith("I;16"):
        im, nominal = im.convert("I"), (0, 65535)
    else:
        low, high = im.getextrema()
        if im.mode == "F" and low >= 0 and high <= 1:
            nominal = (0, 1)
        elif low >= 0 and high <= 255:
            nominal = (0, 255)
        elif im.mode == "I" and low >= 0 and high <= 65535:
            nominal = (0, 65535)
        else:
            nominal = (low, high)
    low, high = nominal
    if high <= low:  # a flat image out of any nominal range: mid-grey, not a guess at black or white
        return Image.new("L", im.size, 128)
    scale = 255 / (high - low)
    offset = -low * scale
    return im.point(lambda v: v * scale + offset).convert("L")


def flatten(im: Image.Image) -> Image.Image:
    """L, RGB or RGBA to RGB, compositing any alpha over white."""
    if im.mode == "RGBA":
        background = Image.new("RGBA", im.size, _WHITE)
        background.alpha_composite(im)
        return background.convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")
