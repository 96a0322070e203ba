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
one's JPEG error as the service will see it, on the same rows of the image (:func:`seen_errors`), for ~3 ms.
Where the view's is the larger, :func:`shared.imaging.prepare.prepare_image` sends the naive size instead,
made as the naive image is. At larger shrinks every photo measured, grainy or not, was over the naive image's
view after the byte budget's refit (benchmarks/README.md), and the check is not run.

Pixels in, numbers out: no I/O.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

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

    Each naive band is the decode's rows under the view's band, filtered to the naive scale (or cut as they are
    from a decode within a few percent of it, as the byte budget does), encoded, and both it and its encoding
    shrunk to the view's band: the filter is linear, so the difference is the naive image's JPEG error as the
    service sees it."""
    if view.mode not in ("L", "RGB", "YCbCr") or decoded.mode != view.mode:
        return None
    view_width, view_height = view.size
    starts = range(0, view_height - BAND_ROWS + 1, BAND_ROWS * BAND_EVERY)
    if len(starts) < 2:
        return None
    left, top, right, bottom = box or (0, 0, *decoded.size)
    naive_width, naive_height = naive_size
    scale = naive_height / view_height  # naive rows per view row
    naive_rows = 16 * math.ceil((BAND_ROWS + 2 * _TAPS) * scale / 16)
    if naive_rows > naive_height:
        return None
    rows_per_row = (bottom - top) / naive_height  # decoded rows per naive row

    view_bands, naive_bands, windows = [], [], []
    for start in starts:
        view_bands.append(view.crop((0, start, view_width, start + BAND_ROWS)))
        first = min(max(0, round((start + BAND_ROWS / 2) * scale - naive_rows / 2)), naive_height - naive_rows)
        naive_box = (left, top + first * rows_per_row, right, top + (first + naive_rows) * rows_per_row)
        naive_bands.append(resize_rows(decoded, naive_box, (naive_width, naive_rows)))
        windows.append((0, start * scale - first, naive_width, (start + BAND_ROWS) * scale - first))

    view_error = _mean_squared(view_bands, _round_trip(view_bands, view_options))
    naive_encoded = _round_trip(naive_bands, {"quality": jpeg_quality, "subsampling": "4:2:0"})
    band_size = (view_width, BAND_ROWS)
    naive_error = _mean_squared(
        [resize_rows(band, window, band_size) for band, window in zip(naive_bands, windows, strict=True)],
        [resize_rows(band, window, band_size) for band, window in zip(naive_encoded, windows, strict=True)],
    )
    return view_error, naive_error


def view_holds(view: Image.Image, view_options: dict, decoded: Image.Image,
               box: tuple[float, float, float, float] | None, naive_size: tuple[int, int], jpeg_quality: int) -> bool:
    """Whether the view, encoded with ``view_options``, is at least as faithful as the naive image after the
    service's shrink, on the sample (:func:`seen_errors`, within ``HOLDS_WITHIN``; True where it cannot be
    measured)."""
    errors = seen_errors(view, view_options, decoded, box, naive_size, jpeg_quality)
    return errors is None or errors[0] <= HOLDS_WITHIN * errors[1]


def _round_trip(bands: list[Image.Image], options: dict) -> list[Image.Image]:
    """The bands stacked into one image, encoded as JPEG with ``options``, decoded to their mode, cut apart."""
    width, height = bands[0].size
    stack = Image.new(bands[0].mode, (width, height * len(bands)))
    for index, band in enumerate(bands):
        stack.paste(band, (0, index * height))
    buffer = io.BytesIO()
    stack.save(buffer, "JPEG", **options)
    with Image.open(buffer) as encoded:
        if stack.mode == "YCbCr":
            encoded.draft("YCbCr", encoded.size)  # the planes as stored, with no colour conversion
        encoded.load()
        return [encoded.crop((0, index * height, width, (index + 1) * height)) for index in range(len(bands))]


def _mean_squared(clean: list[Image.Image], encoded: list[Image.Image]) -> float:
    total = sum(float(np.square(np.asarray(a, np.float32) - np.asarray(b, np.float32)).sum())
                for a, b in zip(clean, encoded, strict=True))
    return total / sum(np.asarray(a).size for a in clean)
