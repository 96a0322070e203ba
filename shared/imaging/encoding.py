"""How the JPEG we send is quantised: the caller's quality at the naive image's size, finer tables at the view.

Why: sent at the service's view (what :mod:`shared.imaging.prepare` does wherever the service would shrink the
naive image by ``VIEW_MIN_SHRINK`` or more), an image has no service shrink left to average its JPEG noise away
and restore its chroma, so it carries both itself: full-size chroma (4:4:4), and quantisation the finer the
more the service would have shrunk the naive image, but never so fine that it outweighs the naive image, which
has that shrink squared as many pixels.

Why not libjpeg's own tables at a higher quality: they quantise the highest frequencies coarsest (they were
made for images seen at their own size), and at the view those hold the finest detail the model will see. The
naive image carries that same detail in its middle frequencies, which its tables quantise finely; so the view,
encoded with the standard tables, lost faint texture and grain first (SSIM 0.9725 against the naive image's
0.9940 on the Hubble deep field). The view's tables are libjpeg's base tables pulled halfway to their mean
(``VIEW_FLATTENING``) and scaled. Against libjpeg's at the qualities chosen before: on smooth photos as many
bytes or fewer and 0.3-0.9 dB nearer the ideal; on the Hubble 2-3 dB nearer and a third of the SSIM deficit,
within 95% of the naive image's bytes; grain 1-2 dB nearer (benchmarks/README.md, ``bench_view_encoding.py``).

Pure: numbers in, Pillow ``save`` options out; :func:`encoded` is the one place a JPEG is written with them.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

from PIL import Image

#: Below this, the naive size is sent rather than the service's view: when the service would shrink the naive
#: image by less than 1.3x, its shrink (which averages the JPEG's noise away and restores chroma) is worth more
#: than the under 40% of the pixels the view saves. Measured on photos from 1.07x to 1.25x: no encoding of the
#: view was both smaller than the naive image and as good after the service's shrink (benchmarks/README.md).
#: Sent at the naive size, ours is the naive image, only faster to make.
VIEW_MIN_SHRINK = 1.3
#: How far the view's tables are pulled from libjpeg's base tables towards their mean (0: libjpeg's shape,
#: 1: one step for every frequency). Halfway measured best: flat tables cost more bytes on detailed photos
#: (the Hubble deep field over the naive image's), libjpeg's lose the view's finest texture.
VIEW_FLATTENING = 0.5
#: How the view is encoded, by how much the service would have shrunk the naive image (its long side over
#: the view's): ``(shrink below, table scale, subsampling)``, scale None for the caller's quality. Each step is
#: the finest scale at which the photo with the most fine detail (the Hubble deep field) stays within 95% of
#: the naive image's bytes (``bench_view_encoding.py``, twelve shapes): the bytes saved go to fidelity. Smooth
#: photos then come in 12-21% under the naive image's bytes and 0.4-1.6 dB over its view, the detailed one
#: 1.8-3.7 dB over.
VIEW_ENCODING: tuple[tuple[float, float | None, str], ...] = (
    (VIEW_MIN_SHRINK, None, "4:2:0"),
    (1.55, 0.13, "4:4:4"),
    (1.7, 0.11, "4:4:4"),
    (1.95, 0.085, "4:4:4"),
    (2.05, 0.07, "4:4:4"),
    (2.2, 0.06, "4:4:4"),
    (2.35, 0.05, "4:4:4"),
    (2.5, 0.045, "4:4:4"),
    (math.inf, 0.04, "4:4:4"),
)

#: libjpeg's base tables (ITU-T T.81 Annex K; quality 50), luma then chroma, in natural (row-major) order, the
#: order Pillow's ``qtables`` takes and ``quantization`` gives back.
BASE_TABLES: tuple[tuple[int, ...], tuple[int, ...]] = (
    (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
    (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
     47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32,
)  # fmt: skip


@dataclass(frozen=True)
class JpegEncoding:
    """How one JPEG is quantised: a libjpeg quality, or explicit tables (the view's, at ``scale``); and its
    chroma subsampling."""

    subsampling: str
    quality: int | None = None
    tables: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    scale: float | None = None

    @property
    def save_options(self) -> dict:
        """The options for Pillow's JPEG ``save``."""
        if self.tables is not None:
            return {"qtables": [list(table) for table in self.tables], "subsampling": self.subsampling}
        return {"quality": self.quality, "subsampling": self.subsampling}


def view_encoding(service_shrink: float, jpeg_quality: int) -> JpegEncoding:
    """How to encode an image we send (pages of documents too), by how much the service would have shrunk
    the naive image (1 when what we send is the naive size). The caller's ``jpeg_quality`` is a floor: no
    step of the view's tables is coarser than libjpeg's at that quality."""
    for below, scale, subsampling in VIEW_ENCODING:
        if service_shrink < below:
            if scale is None:
                return JpegEncoding(subsampling, quality=jpeg_quality)
            return view_tables_encoding(scale, jpeg_quality, subsampling)
    raise AssertionError("not reached: the last step of VIEW_ENCODING has no upper bound")


def encoded(image: Image.Image, encoding: JpegEncoding, *, optimize: bool = False) -> bytes:
    """``image`` as a JPEG with ``encoding``; ``optimize`` fits the Huffman tables to it (a second pass)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **encoding.save_options, optimize=optimize)
    return buffer.getvalue()


def view_tables_encoding(scale: float, jpeg_quality: int, subsampling: str = "4:4:4") -> JpegEncoding:
    """The view's tables at ``scale`` (the caller's ``jpeg_quality`` a floor), as an encoding."""
    return JpegEncoding(subsampling, tables=view_tables(scale, jpeg_quality), scale=scale)


@functools.cache  # a handful of (scale, quality) pairs in a process; built once each, not per image (~0.2 ms)
def view_tables(scale: float, floor_quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """libjpeg's base tables pulled ``VIEW_FLATTENING`` of the way to their mean, times ``scale``, each step
    at least 1 and at most libjpeg's at ``floor_quality``."""
    tables = []
    for base, floor in zip(BASE_TABLES, standard_tables(floor_quality), strict=True):
        mean = sum(base) / len(base)
        tables.append(tuple(
            min(ceiling, max(1, round(scale * ((1 - VIEW_FLATTENING) * step + VIEW_FLATTENING * mean))))
            for step, ceiling in zip(base, floor, strict=True)
        ))  # fmt: skip
    return tables[0], tables[1]


def standard_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """libjpeg's tables at ``quality`` 1-100 (``jpeg_quality_scaling``, baseline: steps 1 to 255)."""
    scaling = 5000 // quality if quality < 50 else 200 - 2 * quality
    luma, chroma = (tuple(min(255, max(1, (step * scaling + 50) // 100)) for step in base) for base in BASE_TABLES)
    return luma, chroma
