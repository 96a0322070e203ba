"""How many bytes the view may take: about what the naive image would have, measured on a sample of it.

Why: the view's tables (:mod:`shared.imaging.encoding`) are set by the service's shrink alone, at the finest
scale that keeps the photo with the most fine detail (the Hubble deep field) within 95% of the naive image's
bytes. Other photos then came in far under: smooth ones at 71-85% of the naive image's bytes, grainy ones at
56-64%, where the naive image pays for grain the service throws away. So grain stayed 1-3 dB under the naive
image's view, image by image, with a third of the bytes unspent. And screens and slides (flat saturated colour,
coloured text) came in over: 1.2-1.4x the naive image's bytes, full-size chroma costing more than the naive
image's extra pixels. Here the naive image's bytes are measured for each photo: every sixteenth band of 16 rows
of the decode, at the naive image's scale, encoded as the naive image would be (4:2:0 at the caller's quality,
Huffman tables fitted): 6% under to 3% over the naive image's real size on the benchmark's photos, for ~2 ms.
Where that is cheap, :mod:`shared.imaging.prepare` makes the naive image outright instead: for a decode at the
naive size (a 1920 x 1080 screenshot), and a page's within ``EXACT_WITHIN`` of it (sampled rows missed text and
flat blocks by up to 1.6x).
:func:`shared.imaging.prepare.prepare_image` then encodes the view again, once, at the scale that should land
at ``TARGET`` of that, when the first encoding is off by much (:func:`refit_scale`; a page's only coarser),
keeps whichever of the two is the finer within ``CEILING``, and sends the naive size instead if the view still
outweighs the naive image.

The arithmetic is pure; :func:`naive_bytes` and :func:`fitted` read pixels and encode, with no I/O.
"""

from __future__ import annotations

import functools
import math

from PIL import Image

from shared.imaging.encoding import JpegEncoding, encoded, view_tables_encoding
from shared.imaging.resampling import resize_rows

#: The sample of the naive image: bands of this many rows (two JPEG blocks of 4:2:0), one band in every so many.
BAND_ROWS = 16
BAND_EVERY = 16
#: A decode within this share of the naive image's width (the 1/2 decode of a 12 MP photo: 2000 against 2048)
#: is sampled as it is (:func:`naive_bytes`).
NEAR_SCALE = 0.05
#: What share of the naive image's bytes a re-encoded view aims at, and the most it may take. On the benchmark's
#: photos the estimate is 6% under (smooth) to 3% over (grain) the naive image's real bytes; 0.95 keeps a view
#: under them through that error, and aiming at 0.9 leaves room for the scale's guess (below) to be off by 5%.
TARGET = 0.9
CEILING = 0.95
#: A page decoded at most this much larger than the naive image has its naive image made outright (a shrink
#: and an encode, 20-40 ms); a larger one's (a 12 MP page, decoded in full) cost as much again as the whole
#: preparation (~150 ms), so it is sampled, and its view only ever refitted coarser against the sample.
EXACT_WITHIN = 1.25
#: How far a page's sample was off the naive image's real bytes, either way (a synthetic colour page: 0.67-1.6x).
#: A sampled page's view over 1 / SAMPLE_ERROR of its estimate could be over the naive image's bytes: the naive
#: image is made outright to compare (a text page's view is under half of it, and pays nothing).
SAMPLE_ERROR = 1.6
#: A first encoding from 0.8 to 0.95 of the estimate is kept: a second encoding there buys little fidelity.
REFIT_BELOW = 0.8
#: How the view's bytes go with the scale of its tables: bytes ~ scale ** -BYTES_EXPONENT (0.56-0.66 measured on
#: photos, grainy and smooth, between scales 0.13 and 0.033: benchmarks/README.md).
BYTES_EXPONENT = 0.6


def naive_bytes(frame: Image.Image, box: tuple[float, float, float, float] | None, naive_size: tuple[int, int],
                jpeg_quality: int) -> float | None:
    """An estimate of the naive image's JPEG bytes: ``frame`` (the decode, whose ``box`` is the whole image)
    at ``naive_size``, 4:2:0 at ``jpeg_quality``, optimised. None for an image too short to sample, or decoded
    under the naive size (a 3000 x 3000 photo's 1/2 decode is 1500 x 1500, for 2048 x 2048): those keep the
    view's tables as the service's shrink sets them. Filtered up, such a sample came out 0.85x (grain) to 1.03x
    the naive image's bytes for ~8 ms, and bought nothing: clean photos decoded so were over the naive image's
    view with the ladder's tables, and grain, which was not, is now decoded in full (benchmarks/README.md).

    A decode within ``NEAR_SCALE`` of the naive size (a 12 MP photo's 1/2 decode: 2000 x 1500 for 2048 x 1536)
    is taken for the naive image itself, the same detail in a few percent fewer pixels: its bands are cut
    and encoded as they are (~2 ms). A larger one (a full decode: PNG, a page) has each band filtered to
    the naive scale, ~1 ms a band, little beside decoding it in full."""
    naive_width, naive_height = naive_size
    left, top, right, bottom = box or (0, 0, *frame.size)
    if right - left < (1 - NEAR_SCALE) * naive_width:
        return None
    near = right - left <= (1 + NEAR_SCALE) * naive_width
    rows_per_row = (bottom - top) / naive_height
    band_height = round(BAND_ROWS * rows_per_row) if near else BAND_ROWS
    starts = range(0, (round(bottom - top) if near else naive_height) - band_height + 1, band_height * BAND_EVERY)
    if len(starts) < 2:
        return None
    sample_width = round(right - left) if near else naive_width
    sample = Image.new(_encodable(frame.mode), (sample_width, band_height * len(starts)))
    for index, start in enumerate(starts):
        if near:
            band = frame.crop((round(left), round(top) + start, round(right), round(top) + start + band_height))
        else:
            band_box = (left, top + start * rows_per_row, right, top + (start + BAND_ROWS) * rows_per_row)
            band = resize_rows(frame, band_box, (naive_width, BAND_ROWS))
        sample.paste(band if band.mode == sample.mode else band.convert(sample.mode), (0, index * band_height))
    header = _header_size(sample.mode, jpeg_quality)
    whole_rows = (bottom - top) if near else naive_height
    return header + (_jpeg_size(sample, jpeg_quality) - header) * whole_rows / sample.height


def refit_scale(scale: float, sent_bytes: int, budget: float, *, finer: bool = True) -> float | None:
    """The tables' scale to encode the view at again, having taken ``sent_bytes`` at ``scale`` against a
    ``budget`` of the naive image's bytes: finer under ``REFIT_BELOW`` of it (unless not ``finer``: a page's
    view, already over the naive image's at fewer bytes), coarser over all of it; None in between, where the
    first encoding is kept (coarsening a view the estimate puts at 0.95-1.0 of the naive image would often be
    the estimate's error, not the view's bytes)."""
    share = sent_bytes / budget
    if (share >= REFIT_BELOW or not finer) and share <= 1:
        return None
    return float(f"{scale * (share / TARGET) ** (1 / BYTES_EXPONENT):.2g}")  # two digits: view_tables is cached


def between_scale(first_scale: float, first_bytes: int, second_scale: float, second_bytes: int,
                  budget: float) -> float | None:
    """The scale that should land at ``TARGET`` of ``budget``, from two encodings of the view: how its bytes went
    with the scale between them, where a finer refit overshot ``CEILING`` (a full decode's grain: 0.71, not 0.6,
    so a refit aimed at 0.9 of the budget landed at 0.97). None if the two do not make a slope."""
    if first_scale == second_scale or first_bytes == second_bytes:
        return None
    exponent = math.log(second_bytes / first_bytes) / math.log(first_scale / second_scale)
    if exponent <= 0:
        return None
    return float(f"{first_scale * (first_bytes / (TARGET * budget)) ** (1 / exponent):.2g}")


def best_within(first: bytes, refitted: bytes, budget: float) -> bytes:
    """The refitted encoding if it is within ``CEILING`` of the budget or smaller than the first; else the
    first. A finer refit that overshoots is dropped; a coarser one is taken."""
    return refitted if len(refitted) <= CEILING * budget or len(refitted) < len(first) else first


def fitted(view: Image.Image, sent: bytes, encoding: JpegEncoding, budget: float, jpeg_quality: int, *,
           finer: bool) -> tuple[bytes, JpegEncoding]:
    """The view's JPEG (``sent``, encoded with ``encoding``, the view's tables) fitted to ``budget``, the naive
    image's bytes: far under them (grain: the naive image pays for what the service throws away) or over them,
    encoded once more at the scale that should land at ``TARGET`` of them (:func:`refit_scale`), and where a finer
    one overshot ``CEILING``, once more in between (:func:`between_scale`); the one kept (:func:`best_within`) and
    its encoding."""
    scale = refit_scale(encoding.scale, len(sent), budget, finer=finer)
    if scale is None:
        return sent, encoding
    refitted = view_tables_encoding(scale, jpeg_quality, encoding.subsampling)
    refitted_bytes = encoded(view, refitted)
    if len(sent) < len(refitted_bytes) > CEILING * budget:
        between = between_scale(encoding.scale, len(sent), scale, len(refitted_bytes), budget)
        if between is not None and between != scale:
            refitted = view_tables_encoding(between, jpeg_quality, encoding.subsampling)
            refitted_bytes = encoded(view, refitted)
    chosen = best_within(sent, refitted_bytes, budget)
    return chosen, encoding if chosen is sent else refitted


def _encodable(mode: str) -> str:
    return mode if mode in ("L", "RGB", "YCbCr") else "RGB"


@functools.cache
def _header_size(mode: str, jpeg_quality: int) -> int:
    """The bytes of an 8 x 8 JPEG: its tables and markers, which a sample pays once, as the image does."""
    return _jpeg_size(Image.new(mode, (8, 8)), jpeg_quality)


def _jpeg_size(image: Image.Image, jpeg_quality: int) -> int:
    """The bytes of ``image`` encoded as the naive image is: 4:2:0 at ``jpeg_quality``, Huffman tables fitted."""
    return len(encoded(image, JpegEncoding("4:2:0", quality=jpeg_quality), optimize=True))
