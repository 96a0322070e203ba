"""Turn uploaded image bytes into the JPEG we send to the model.

Why: the model bills by the size of the image it receives (:mod:`shared.tokens`), uploads are often
12 MP phone photos, and a hostile upload can be a decompression bomb. So every image is checked,
decoded once at the smallest size that will do, and re-encoded as a plain RGB JPEG whose long side
is at most what the detail level needs (``DETAIL_MAX_SIDE``).

Decisions, and why:

* **Format by magic bytes only** (:mod:`shared.imaging.formats`): names and ``Content-Type`` are the
  caller's claim, the first bytes are the file's. Each format is opened with only its own Pillow
  plugin, so look-alike bytes never reach plugins such as EPS. No known signature -> ``UnsupportedImage``
  (415). A signature Pillow still cannot read (exotic TIFF, corrupt or truncated file) -> ``ImageDecodeError``
  (422), never a raw Pillow exception (:mod:`shared.imaging.pillow_errors`, the one place they are mapped).
* **Pixel limit before decoding**: ``Image.open`` parses only the header, and ``max_pixels`` (default
  50 MP) is checked on that size before any pixel is decoded. Pillow's process-wide guard
  (``Image.MAX_IMAGE_PIXELS``) is a backstop we neither rely on nor mutate: past twice its value Pillow
  refuses in ``open`` (-> ``ImageTooLarge``); between once and twice it only warns, then our check
  refuses, and a warning raised as an error (``-W error``) is mapped too.
* **Truncated files are refused**: ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False, or half a JPEG
  would "decode" with a grey lower half and the model would describe an image nobody sent.
* **As displayed**: the EXIF orientation is applied (``ImageOps.exif_transpose``'s table) after
  shrinking, where it is cheap; every size reported is as displayed.
* **Colour** (:mod:`shared.imaging.modes`): every mode becomes 8-bit RGB; transparency is flattened on
  white (documents, logos and screenshots read best so); 16-bit and float greyscale are scaled, not clipped;
  animations give their first frame. ICC profiles are not applied: the models shrug off small gamut shifts, and colour
  management would cost another pass over every pixel.
* **Fast path for JPEG**: ``Image.draft`` makes libjpeg decode at 1/2, 1/4 or 1/8 scale, never below
  the target, so a 12 MP photo is never decoded in full (a page is: text needs it, :mod:`shared.imaging.content`
  tells one from the reduced decode); a short filter then finishes the (< 2x) rest,
  on the YCbCr planes libjpeg hands over: luma sharp, chroma straight to the size it will be stored at.
  Other formats, which Pillow cannot decode reduced, are filtered from full size. Filters and their measured
  cost: :mod:`shared.imaging.resampling`. The size is the service's own view (or, at ``auto``, a whole reduced
  decode a few percent under it at the same bill; or the naive size, made from RGB as the naive image is, where
  the service's shrink of it would be small), so the bill is never higher than with a full decode.
* **The view's bytes fitted to the naive image's**: sent at the view with its own tables
  (:mod:`shared.imaging.encoding`), a photo that lands far under what the naive image would weigh (estimated
  from a sample of the decode, :mod:`shared.imaging.byte_budget`) is encoded once more, finer: grain, which
  the naive image pays for and the service throws away, gets those bytes back as fidelity. Grain is decoded in
  full (the DCT scaling's blocks stay in it), and under a small service shrink the view is checked against the
  naive image as the service will see each (:mod:`shared.imaging.view_check`); where it does not hold, the
  naive image is sent.
* **Always re-encode**, even a small JPEG: it strips EXIF (GPS positions, serial numbers), ICC and
  comments, and guarantees a baseline RGB JPEG.

Pure functions, bytes in and bytes out, no global state touched: safe in threads (the service runs
``prepare_image`` via ``asyncio.to_thread``).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image

from shared.errors import ImageTooLarge, InvalidParameter
from shared.imaging.byte_budget import EXACT_WITHIN, SAMPLE_ERROR, fitted, naive_bytes
from shared.imaging.content import look, looks_grainy, looks_sharp_edged
from shared.imaging.encoding import VIEW_MIN_SHRINK, JpegEncoding, encoded, view_encoding
from shared.imaging.formats import sniff_or_raise
from shared.imaging.modes import flatten, normalise
from shared.imaging.pillow_errors import open_image, pillow_errors
from shared.imaging.resampling import decodes_as_ycbcr, shrink
from shared.imaging.view_check import CHECK_BELOW, view_holds
from shared.tasks import HIGH_DETAIL_TASKS, LOW_DETAIL_TASKS
from shared.tokens import ModelSpec, estimate_image_tokens, service_view

DETAIL_MAX_SIDE = {"low": 512, "high": 2048, "auto": 1024}
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_JPEG_QUALITY = 85

LOW_DETAIL_BELOW = 768  # both sides under this: the 512px low-detail view loses little
HIGH_DETAIL_ABOVE = 2048  # either side over this: there is detail worth paying for

#: How much smaller than the service's view a reduced JPEG decode (1/2, 1/4, 1/8: libjpeg's DCT scaling) may
#: be and still be sent as it is, with no full decode and no resize, at the same bill. On 12 MP photos that is
#: 0.4-0.5 dB under the naive image's view (33.6 against 34.0 at "auto") for 9.5x the speed against 4.3x for
#: the exact view, filtered from the next scale (34.0): "auto" takes it, for its 8x target. "low", which has no
#: such target, sends the exact view (6.6x against 9.8x; 32.8 dB against the naive image's 32.9, was 32.4),
#: and "high" never takes it. The DCT scaling is blocky on small text (29 dB against 35 at "auto";
#: 38 at "high", with libjpeg's q94 tables at the view): a page is decoded in full instead, whether the caller
#: says it reads text (``reads_text``) or its reduced decode looks like one (:mod:`shared.imaging.content`).
#: Figures: benchmarks/README.md.
DRAFT_TOLERANCE = {"low": 0.0, "auto": 0.05, "high": 0.0}
#: At ``high`` the reduced decode is at least this much larger than the size sent, so LANCZOS does the last
#: 1.4x or more of the shrink. libjpeg's DCT scaling keeps each 8 x 8 block's low frequencies: a fine shrink
#: for photos, a blocky one for glyph edges, which only a real filter over a good part of the ratio smooths
#: out. A 4000 x 3200 text page at 1/4 (1000 x 800 for a 960 x 768 view) scored 27 dB against the naive
#: image's 41.6; at 1/2, 39.6 (benchmarks/README.md). Text still loses at 1/2: a 12 MP text page's view was
#: 38.3 dB against the naive image's 40.5, and 41.0 from a full decode, in half its bytes (libjpeg's q94 tables
#: at the view; with the view's own, 42.9 from the full decode). So a caller that
#: will read text (``reads_text``: OCR, tables, extraction) gets the full decode, at about half the speed;
#: photos keep the 1/2 decode, within 0.1 dB of the full one.
HIGH_DRAFT_HEADROOM = 1.4
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})


class _Size(NamedTuple):
    width: int
    height: int


@dataclass(frozen=True)
class PreparedImage:
    """The JPEG to send to the model, with what it cost to make and will cost to send."""

    data: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    format: str
    detail: str
    estimated_tokens: int
    mime_type: str = "image/jpeg"

    model: str = "gpt-4o"

    @property
    def service_size(self) -> _Size:
        """The size the service will shrink this image to before the model looks at it (the same, when
        it was prepared here: :func:`prepare_image` sends exactly the service's view)."""
        return _Size(*service_view(self.width, self.height, self.detail, self.model))

    @property
    def data_url(self) -> str:
        """The image inline as a ``data:`` URL, the form chat completions accept."""
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data).decode('ascii')}"


def select_detail_level(task: str | None, width: int, height: int) -> str:
    """The detail level worth paying for, from the task and the image size.

    Reading text and tables needs the high-resolution tiles; labelling or
    summarising does not. Without a telling task, small images gain nothing
    from ``high`` and very large ones usually carry fine detail; in between
    the service's ``auto`` decides.
    """
    key = (task or "").strip().lower()
    if key in HIGH_DETAIL_TASKS:
        return "high"
    if key in LOW_DETAIL_TASKS:
        return "low"
    if width < LOW_DETAIL_BELOW and height < LOW_DETAIL_BELOW:
        return "low"
    if width > HIGH_DETAIL_ABOVE or height > HIGH_DETAIL_ABOVE:
        return "high"
    return "auto"


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The prepared size: long side scaled down to ``max_side``, never up.

    Truncating (``int``) rather than rounding keeps the size, and so the bill,
    exactly what a naive full-decode-and-resize produces, never a pixel more.
    """
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    ratio = max_side / longest
    return max(1, int(width * ratio)), max(1, int(height * ratio))


def image_size(data: bytes, *, max_pixels: int | None = None) -> tuple[int, int, str]:
    """``(width, height, format)`` as displayed, from the header only.

    Cheap enough to run before accepting an upload. Raises as
    :func:`prepare_image` does; the pixel limit is checked only if
    ``max_pixels`` is given (Pillow's own hard limit always applies).
    """
    data = _as_bytes(data)
    fmt = sniff_or_raise(data)
    limit = _check_limit(max_pixels) if max_pixels is not None else None
    with open_image(data, fmt, limit) as im:
        width, height = _displayed_size(im.size, _orientation(im))
    if limit is not None and width * height > limit:
        raise ImageTooLarge(width * height, limit)
    return width, height, fmt


def prepare_image(
    data: bytes,
    detail: str = "auto",
    *,
    model: str = "gpt-4o",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    model_overrides: Mapping[str, ModelSpec] | None = None,
    to_service_view: bool = True,
    reads_text: bool = False,
) -> PreparedImage:
    """Check, decode, orient, shrink and re-encode one image for the model.

    The size sent is the detail's size (``DETAIL_MAX_SIDE``) shrunk further to what the model service
    will itself look at (:func:`shared.tokens.service_view`), unless ``to_service_view`` is False (the
    offline engine reads the image itself, and its OCR is better for every pixel it gets).
    ``reads_text`` (OCR, tables, extraction) makes a JPEG decode in full, with no DCT scaling, whatever the
    detail: see ``HIGH_DRAFT_HEADROOM``. Without it, a JPEG whose reduced decode looks like a page (sharp
    edges: :func:`shared.imaging.content.looks_sharp_edged`) is decoded again in full, and sent the same.

    Raises ``UnsupportedImage`` (not an accepted format), ``ImageTooLarge``
    (over ``max_pixels``), ``ImageDecodeError`` (recognised but unreadable) and
    ``InvalidParameter`` (bad ``detail``, ``max_pixels`` or ``jpeg_quality``).
    """
    detail = _check_detail(detail)
    limit = _check_limit(max_pixels)
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 95:
        raise InvalidParameter("jpeg_quality", f"must be an integer from 1 to 95; got {jpeg_quality!r}")
    data = _as_bytes(data)
    fmt = sniff_or_raise(data)

    with open_image(data, fmt, limit) as im:
        orientation = _orientation(im)
        width, height = _displayed_size(im.size, orientation)
        if width * height > limit:
            raise ImageTooLarge(width * height, limit)
        # What the service itself will look at: the detail's size, then the service's own shrink of it.
        # Sending more is decoding, resizing, encoding and uploading pixels the model never sees.
        naive_w, naive_h = target_size(width, height, DETAIL_MAX_SIDE[detail])
        out_w, out_h = (service_view(naive_w, naive_h, detail, model, model_overrides) if to_service_view
                        else (naive_w, naive_h))
        # The service's small shrink is worth more than the pixels it saves: the naive size is sent, made as the naive
        # image is, from an RGB decode (from the YCbCr planes, grain came out up to 0.7% larger: benchmarks/README.md).
        as_naive = max(naive_w, naive_h) < VIEW_MIN_SHRINK * max(out_w, out_h) and (out_w, out_h) != (naive_w, naive_h)
        if as_naive:
            out_w, out_h = naive_w, naive_h
        billed = estimate_image_tokens(out_w, out_h, detail, model, model_overrides)
        encoding = view_encoding(max(naive_w, naive_h) / max(out_w, out_h), jpeg_quality)
        # The view with its own tables under a small service shrink: grain there is checked against the naive image.
        small_shrink = encoding.scale is not None and max(naive_w, naive_h) < CHECK_BELOW * max(out_w, out_h)
        # Work in stored orientation until the end: rotating the small result is cheaper.
        swaps = orientation in _SWAPS_SIDES
        stored = (out_h, out_w) if swaps else (out_w, out_h)
        budget = naive_sent = None  # the naive image's bytes (and the naive image, if made): the view's budget
        naive_stored = (naive_h, naive_w) if swaps else (naive_w, naive_h)
        page = True if reads_text else None  # text or line art: the caller says so, or a look at the decode does
        grainy = None  # sensor-like noise, where it matters (the view with its own tables): a look says so
        with pillow_errors(fmt, limit=limit):
            box = None
            if fmt == "JPEG" and stored != im.size:
                # A reduced decode (1/2, 1/4, 1/8 scale) that lands at most DRAFT_TOLERANCE under the view
                # may be sent as it is, if it bills the same: no full decode and no resize at all.
                # Only for a model: the offline engine reads every pixel itself and gets the detail's size.
                tolerance = DRAFT_TOLERANCE[detail] if to_service_view else 0.0
                least = HIGH_DRAFT_HEADROOM if detail == "high" else 1 - tolerance
                divisor = _draft_scale(im.size, stored, least)
                if least < 1 and (im.width % divisor or im.height % divisor):
                    # A decode whose size was rounded up (4000 x 2250 at 1/8: 500 x 281.25) has a part-padding last
                    # row or column: sent as it is, the image is stretched (28.7 dB against 34.4 filtered), and
                    # filtered up to the view it was still 0.5-0.8 dB under the naive image. The next scale,
                    # at least the view, filtered down, is not (benchmarks/README.md).
                    least = 1.0
                full = im.size
                box = _draft(im, stored, max(full) if reads_text else least, planes=not as_naive)
                im.load()
                if im.size != full:
                    seen = look(im)
                    page = seen.sharp_edged
                    grainy = not page and encoding.scale is not None and seen.grainy
                    if page or grainy:
                        # A page sent with no text task (the reduced decode is blocky on its glyphs), or grain sent at
                        # the view, which only a filter over the whole shrink keeps: decoded again, in full
                        # (shared.imaging.content); grain as RGB, as the naive image is, which it may yet be sent as.
                        im = open_image(data, fmt, limit)
                        box = _draft(im, stored, max(full), planes=page)
            im.load()
            frame = im if im.mode == "YCbCr" else normalise(im)

        if frame.size != stored:
            shown = (frame.height, frame.width) if swaps else frame.size
            fits = frame.width <= stored[0] and frame.height <= stored[1]
            whole = box is None or tuple(box) == (0, 0, *frame.size)  # so it is above; never send a stretched one
            if fits and whole and estimate_image_tokens(*shown, detail, model, model_overrides) == billed:
                out_w, out_h = shown  # the reduced decode is the view, a few percent smaller, same bill
            else:
                if encoding.scale is not None:
                    # The view with its own tables: its bytes are fitted to the naive image's, image by image. A
                    # page's only ever downwards: text is over the naive view in half its bytes, but flat colour
                    # (screens, slides) came out at up to 1.4x the naive image's bytes at the ladder's scale. The
                    # naive image is made, not estimated, where that is cheap: a decode at its size (a 1920 x 1080
                    # screenshot), or a page's near it; rows sampled from text and flat blocks missed by 0.67-1.6x
                    # (shared.imaging.byte_budget).
                    decoded, page = frame, looks_sharp_edged(frame) if page is None else page
                    grainy = not page and small_shrink and looks_grainy(frame) if grainy is None else grainy
                    at_naive_size = frame.size == naive_stored and box in (None, (0, 0, *naive_stored))
                    if at_naive_size or (page and max(frame.size) <= EXACT_WITHIN * max(naive_stored)):
                        naive_sent = _naive_encoded(decoded, naive_stored, box, orientation, jpeg_quality)
                    budget = len(naive_sent) if naive_sent else naive_bytes(frame, box, naive_stored, jpeg_quality)
                frame = shrink(frame, stored, box, subsampling=encoding.subsampling)
        # At the naive image's own size only the encoder sets the two apart: Huffman tables fitted to the image,
        # as the naive path has, keep ours from being the larger (by ~1%). Smaller sizes are far smaller already,
        # and there the second pass would cost 10-15% of the preparation.
        view, frame = frame, _finished(frame, orientation)
        sent = encoded(frame, encoding, optimize=(out_w, out_h) == (naive_w, naive_h))
        if budget is not None:
            sent, encoding = fitted(frame, sent, encoding, budget, jpeg_quality, finer=not page)
            if page and naive_sent is None and len(sent) * SAMPLE_ERROR > budget:  # a sample can be off by that much
                naive_sent = _naive_encoded(decoded, naive_stored, box, orientation, jpeg_quality)
                budget = len(naive_sent)
            # Under a small service shrink, grain can need more bytes at the view than the naive image has: each
            # one's JPEG error as the service will see it is measured on a sample (shared.imaging.view_check; clean
            # photos measured there had 0.6-0.93 of the naive image's, and do not pay for the check).
            holds = not (small_shrink and grainy) or view_holds(view, encoding.save_options, decoded, box, naive_stored,
                                                                jpeg_quality)
            if len(sent) > budget or not holds:
                # Less faithful than the naive image, or over its bytes even at the caller's quality (flat colour:
                # full-size chroma costs more than the naive image's extra pixels; half-size chroma at the view lost
                # 3-5 dB): the naive size is sent after all, made as the naive image is (if smaller, for bytes).
                if not (holds or naive_sent or (decoded.mode != "YCbCr" and box in (None, (0, 0, *decoded.size)))):
                    # Made from planes or a reduced decode, grain came out up to 0.7% larger than the naive image, or
                    # 1 dB under its view: the naive image is made as it is, from a full RGB decode.
                    with pillow_errors(fmt, limit=limit), open_image(data, fmt, limit) as source:
                        decoded, box = normalise(source), None
                        naive_sent = _naive_encoded(decoded, naive_stored, box, orientation, jpeg_quality)
                naive_sent = naive_sent or _naive_encoded(decoded, naive_stored, box, orientation, jpeg_quality)
                if len(naive_sent) < len(sent) or not holds:
                    sent, (out_w, out_h) = naive_sent, (naive_w, naive_h)
                    billed = estimate_image_tokens(out_w, out_h, detail, model, model_overrides)

    return PreparedImage(
        data=sent,
        width=out_w,
        height=out_h,
        original_width=width,
        original_height=height,
        format=fmt,
        detail=detail,
        estimated_tokens=billed,  # a reduced decode is sent as it is only when it bills the same
        model=model,
    )


def _finished(frame: Image.Image, orientation: int) -> Image.Image:
    """A shrunk frame as it is encoded: RGB or YCbCr, turned as displayed, with nothing for the encoder to copy."""
    if frame.mode != "YCbCr":
        frame = flatten(frame)
    if orientation in _TRANSPOSE:
        frame = frame.transpose(_TRANSPOSE[orientation])
    frame.info = {}  # strip comments and anything else the encoder might copy
    return frame


def _naive_encoded(decoded: Image.Image, naive_stored: tuple[int, int], box: tuple[float, float, float, float] | None,
                   orientation: int, jpeg_quality: int) -> bytes:
    """The naive image, made as the naive preparation makes it (full-size chroma, 4:2:0 at the caller's quality,
    Huffman tables fitted), from the decode."""
    naive = _finished(shrink(decoded, naive_stored, box, subsampling="4:4:4"), orientation)
    return encoded(naive, JpegEncoding("4:2:0", quality=jpeg_quality), optimize=True)


def _draft(im: Image.Image, stored: tuple[int, int], least: float, *,
           planes: bool = True) -> tuple[int, int, int, int] | None:
    """Have libjpeg decode ``im`` at the smallest DCT scale at least ``least`` times ``stored`` (a factor over
    the image's own size is scale 1); the box of the image within the decode, or None if nothing changed.

    Most JPEGs store YCbCr: decoded as such (unless not ``planes``), they are shrunk by planes and re-encoded
    with no colour conversion either way (shared.imaging.resampling)."""
    drafted = im.draft("YCbCr" if planes and decodes_as_ycbcr(im) else "RGB", _draft_request(stored, least))
    return drafted[1] if drafted else None


def _draft_scale(size: tuple[int, int], stored: tuple[int, int], least: float) -> int:
    """The divisor (1, 2, 4, 8) ``_draft`` will have libjpeg decode a ``size`` JPEG at: Pillow's own rule."""
    smallest = _draft_request(stored, least)
    ratio = min(size[0] // smallest[0], size[1] // smallest[1])
    return next((scale for scale in (8, 4, 2) if ratio >= scale), 1)


def _draft_request(stored: tuple[int, int], least: float) -> tuple[int, int]:
    """The smallest decode ``least`` times ``stored`` allows: the size ``Image.draft`` is asked for."""
    width, height = (max(1, math.ceil(side * least)) for side in stored)
    return width, height


# --- helpers ----------------------------------------------------------------


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"image data must be bytes, not {type(data).__name__}")
    return bytes(data)


def _check_detail(detail: str) -> str:
    value = detail.strip().lower() if isinstance(detail, str) else detail
    if value not in DETAIL_MAX_SIDE:
        raise InvalidParameter("detail", f"must be one of {', '.join(DETAIL_MAX_SIDE)}; got {detail!r}")
    return value


def _check_limit(max_pixels: int) -> int:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InvalidParameter("max_pixels", f"must be a positive integer; got {max_pixels!r}")
    return max_pixels


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8, read without decoding pixels; 1 when absent or broken.

    PNG's ``getexif`` would decode the whole image to look for an eXIf chunk
    after the pixels; the PNG spec puts eXIf before IDAT, so only that one is
    honoured. Broken metadata must not cost the user their image.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return value if value in _TRANSPOSE else 1


def _displayed_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _SWAPS_SIDES else size
