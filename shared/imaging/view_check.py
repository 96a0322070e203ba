"""Whether the view, as it will be encoded, shows the model as much as the naive image would once the service has
shrunk it: measured on a sample of rows, image by image.

Why: at ``high`` the view is sent with its own tables, within the naive image's bytes
(:mod:`shared.imaging.byte_budget`). Where the service's shrink is small (under ``CHECK_BELOW``: 1.45x for a
12 MP photo and patch models, 1.5x for a 16:9 photo and tile models), the view has only 2-2.5x fewer pixels
than the naive image, and grain does not fit in them: the naive image's JPEG noise sits in the grain's high
frequencies, which the service's shrink averages away, while the view must carry the grain itself. Grainy photos
came in 0.7-1.6 dB under the naive image's view at 0.8-0.95 of its bytes, where clean photos at those shrinks
were 0.1-2 dB over it at fewer bytes; parity needed 1.13-1.25x the naive image's bytes. No cheap content
measure told the two apart (the bytes at the ladder's tables did not), so the thing itself is measured: each
one's JPEG error as the service will see it, on the same rows of the image (:func:`seen_errors`), for ~10 ms.
:func:`shared.imaging.prepare.prepare_image` runs it on grainy photos (:func:`shared.imaging.content.looks_grainy`;
clean ones measured 0.6-0.93 of the naive image's error), and where the view's is over ``HOLDS_WITHIN`` of the
naive image's, sends the naive image itself, made from a full RGB decode as the naive image is. At larger
shrinks every photo measured, grainy or not, was over the naive image's view after the byte budget's refit
(benchmarks/README.md), and the check is not run.

Pixels in, numbers out: no I/O.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageChops, ImageStat

from shared.imaging.byte_budget import NEAR_SCALE
from shared.imaging.resampling import resize_rows

#: The service's shrink (the naive image's long side over the view's) under which the view is checked.
CHECK_BELOW = 1.6
#: The most of the naive image's error, as the service sees it, the view's may be and the view still hold. The
#: sample measures the JPEG error alone, not the error both share before encoding (the filter's, 8-bit rounding),
#: which narrows the gap in what the model sees: at 0.97 of the naive image's error a view was 0.1 dB under the
#: naive image's view, at 0.95 0.1-0.3 dB over (benchmarks/README.md).
HOLDS_WITHIN = 0.95
#: The sample: bands of this many of the view's rows (one JPEG block row at 4:2:0, aligned as the view's own
#: blocks are, so each band is encoded exactly as it is in the view), one band in every so many.
BAND_ROWS = 16
BAND_EVERY = 8
#: The naive image's band around each of the view's: the view's rows at the naive scale, with the filter's three
#: taps each side, rounded up to whole block rows.
_TAPS = 3


def seen_errors(view: Image.Image, view_options: dict, decoded: Image.Image,
                box: tuple[float, float, float, float] | None, naive_size: tuple[int, int],
                jpeg_quality: int) -> tuple[float, float] | None:
    """The mean squared error, over every sample of every plane, of the ``view`` encoded with ``view_options``
    (Pillow's JPEG ``save`` options), and of the naive image (``decoded``, whose ``box`` is the whole image, at
    ``naive_size``, 4:2:0 at ``jpeg_quality``) shrunk to the view as the service shrinks it: each against its
    own pixels before encoding, on every ``BAND_EVERY``-th band of ``BAND_ROWS`` of the view's rows. None when the
    view has under two bands, or a mode other than L, RGB and YCbCr (transparency is flattened later).

    Each naive band is the decode's rows under the view's band and the filter's taps, filtered to the naive scale,
    or cut as they are from a decode within ``NEAR_SCALE`` of it (a 12 MP photo's 1/2 decode, as the byte budget
    takes it). The bands are stacked, encoded, and the stack and its encoding shrunk to the view's scale in one
    pass each: the filter is linear, so the difference is the naive image's JPEG error as the service sees it."""
    if view.mode not in ("L", "RGB", "YCbCr") or decoded.mode != view.mode:
        return None
    view_width, view_height = view.size
    starts = range(0, view_height - BAND_ROWS + 1, BAND_ROWS * BAND_EVERY)
    if len(starts) < 2:
        return None
    left, top, right, bottom = box or (0, 0, *decoded.size)
    near = abs(right - left - naive_size[0]) <= NEAR_SCALE * naive_size[0]
    # The naive image's pixels: the decode itself where it is near the naive size, else the decode filtered to it.
    naive_width, naive_height = (round(right - left), round(bottom - top)) if near else naive_size
    scale = naive_height / view_height  # naive rows per view row
    naive_rows = 16 * math.ceil((BAND_ROWS + 2 * _TAPS) * scale / 16)
    if naive_rows > naive_height:
        return None
    rows_per_row = (bottom - top) / naive_height  # decoded rows per naive row

    view_bands, naive_bands, windows = [], [], []
    for index, start in enumerate(starts):
        view_bands.append(view.crop((0, start, view_width, start + BAND_ROWS)))
        first = min(max(0, round((start + BAND_ROWS / 2) * scale - naive_rows / 2)), naive_height - naive_rows)
        if near:
            rows = (round(left), round(top) + first, round(left) + naive_width, round(top) + first + naive_rows)
            naive_bands.append(decoded.crop(rows))
        else:
            naive_box = (left, top + first * rows_per_row, right, top + (first + naive_rows) * rows_per_row)
            naive_bands.append(resize_rows(decoded, naive_box, (naive_width, naive_rows)))
        # Where the view's band lies in the stack shrunk to the view's scale: away from the bands' edges, where
        # the stack's unrelated neighbours meet (in the filter, and in the decoder's chroma upsampling).
        top_row = round((index * naive_rows + start * scale - first) / scale)
        windows.append((0, top_row, view_width, top_row + BAND_ROWS))

    view_error = _mean_squared(_stacked(view_bands), _round_trip(_stacked(view_bands), view_options))
    naive_stack = _stacked(naive_bands)
    naive_encoded = _round_trip(naive_stack, {"quality": jpeg_quality, "subsampling": "4:2:0"})
    seen_size = (view_width, round(naive_stack.height / scale))
    whole = (0, 0, *naive_stack.size)
    naive_seen, encoded_seen = (resize_rows(stack, whole, seen_size) for stack in (naive_stack, naive_encoded))
    naive_error = _mean_squared(_stacked([naive_seen.crop(window) for window in windows]),
                                _stacked([encoded_seen.crop(window) for window in windows]))
    return view_error, naive_error


def view_holds(view: Image.Image, view_options: dict, decoded: Image.Image,
               box: tuple[float, float, float, float] | None, naive_size: tuple[int, int], jpeg_quality: int) -> bool:
    """Whether the view, encoded with ``view_options``, is at least as faithful as the naive image after the
    service's shrink, on the sample (:func:`seen_errors`, within ``HOLDS_WITHIN``; True where it cannot be
    measured)."""
    errors = seen_errors(view, view_options, decoded, box, naive_size, jpeg_quality)
    return errors is None or errors[0] <= HOLDS_WITHIN * errors[1]


def _stacked(bands: list[Image.Image]) -> Image.Image:
    width, height = bands[0].size
    stack = Image.new(bands[0].mode, (width, height * len(bands)))
    for index, band in enumerate(bands):
        stack.paste(band, (0, index * height))
    return stack


def _round_trip(image: Image.Image, options: dict) -> Image.Image:
    """``image`` encoded as JPEG with ``options`` and decoded to its mode."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    with Image.open(buffer) as encoded:
        if image.mode == "YCbCr":
            encoded.draft("YCbCr", encoded.size)  # the planes as stored, with no colour conversion
        encoded.load()
        return encoded.copy()


def _mean_squared(clean: Image.Image, encoded: Image.Image) -> float:
    """Over every sample of every plane; by Pillow's histogram of the difference (numpy's copy of the pixels cost
    more than the rest)."""
    squares = ImageStat.Stat(ImageChops.difference(clean, encoded)).sum2
    return sum(squares) / (clean.width * clean.height * len(squares))
