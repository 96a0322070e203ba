"""Whether a decoded image is drawn with sharp edges (text, line art, screens) or is a photo; and whether it is grainy.

Why it matters: libjpeg's reduced decode (DCT scaling, :mod:`shared.imaging.prepare`) keeps each 8 x 8 block's
lowest frequencies. For a photo that is a shrink as good as a filter's (within 0.5 dB of the naive image's view)
at 4-8x the speed. For glyph edges it is blocky: scanned receipts at ``auto`` scored 31-36 dB against the naive
image's 37-38, a 12 MP text page 29 against 35, invoice pages at ``high`` 43 against 47 (libjpeg's q93 tables
at the view). Callers that say they
will read text (OCR, tables, extraction) get a full decode anyway; this catches the pages sent with any other
task, from the reduced decode already made, so a photo pays nothing but this look.

The measure, :func:`sharp_edge_share`: of the pixels where the luma bends visibly (a second difference along
the row over ``VISIBLE`` levels), the share that bend sharply (over ``SHARP``). Ink on paper and pixels on a
screen change in a step, so most of their visible bends are sharp; a photo's edges are soft and its texture is
low, so few are. Measured on reduced decodes (``benchmarks/README.md``, "Pages sent with no text task"): photos
0.00-0.17 (the highest, the Hubble deep field at ``low``: stars), grain included; scanned receipts 0.22-0.60,
rendered invoices 0.60-0.78, the text page 0.51-0.77, invoices photographed with blur and noise 0.15-0.63.
Mistaking a photo for a page costs time (a second, full decode), never fidelity; the reverse costs fidelity.

Grain is the other content libjpeg's reduced decode serves badly: where only 1.4-1.5x of the shrink is left
to a filter (``high`` under a small service shrink, :mod:`shared.imaging.view_check`), the DCT scaling's
blocks stay in sensor-like noise: a grainy 12 MP photo's 1/2 decode, shrunk to the view and not encoded, was
43.4 dB from the ideal against 47.7 from a full decode (a clean one: 49.1 against 49.7), which left its view
under the naive image's at any bytes. The measure, :func:`quiet_share`: the share of those second differences
within a level, which noise leaves few of. On 1/2 decodes: clean photos 0.71-0.88, the Hubble deep field 0.36,
Gaussian grain of sigma 2 (at 12 MP) 0.41-0.46, sigma 4 0.22-0.25, sigma 10 0.09-0.10; pages 0.73-0.96.
Photos were under the naive image's view from sigma 4 up with the reduced decode, at or over it with the full
one (benchmarks/README.md).

Pure: a Pillow image in, a number out; reads a sample of rows, so it costs about a millisecond.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

#: From this share of sharp bends up, an image is treated as text or line art (see the module's docstring).
SHARP_EDGE_SHARE = 0.2
#: A second difference of the luma, in levels, that is visible (a bend) and that is sharp (a step).
VISIBLE = 15
SHARP = 60
#: Under this share of quiet second differences (within ``QUIET`` levels), an image is grainy.
QUIET_SHARE = 0.3
QUIET = 1
#: Rows looked at: enough for a stable share (a page has text on most of them), few enough to cost nothing.
ROWS_SAMPLED = 256


class Look(NamedTuple):
    """What one look at a decode's sampled rows tells (both from one sample: :func:`look`)."""

    sharp_edged: bool  # text, line art or a screen (``SHARP_EDGE_SHARE``)
    grainy: bool  # sensor-like noise over most of it (``QUIET_SHARE``)


def look(image: Image.Image) -> Look:
    """Both looks at ``image`` from one sample of its rows: :mod:`shared.imaging.prepare` takes both at every
    reduced decode of a photo at ``high``, where sampling twice cost ~1 ms."""
    bends = _bends(image)
    return Look(_sharp_share(bends) >= SHARP_EDGE_SHARE, _quiet_share(bends) < QUIET_SHARE)


def sharp_edge_share(image: Image.Image) -> float:
    """The share of visible luma bends that are sharp, over evenly spaced rows; 0.0 for a flat image.

    ``image`` is L, RGB, RGBA or YCbCr (a JPEG's planes, as :mod:`shared.imaging.prepare` decodes it); the
    luma is the Y plane, or Pillow's ITU-R 601 luma of the others.
    """
    return _sharp_share(_bends(image))


def quiet_share(image: Image.Image) -> float:
    """The share of the luma's second differences along evenly spaced rows within ``QUIET`` levels; 1.0 for an
    image under three pixels wide. ``image`` as for :func:`sharp_edge_share`."""
    return _quiet_share(_bends(image))


def looks_sharp_edged(image: Image.Image) -> bool:
    """Whether ``image`` is text, line art or a screen rather than a photo (``SHARP_EDGE_SHARE``)."""
    return sharp_edge_share(image) >= SHARP_EDGE_SHARE


def looks_grainy(image: Image.Image) -> bool:
    """Whether ``image`` carries sensor-like noise over most of it (``QUIET_SHARE``)."""
    return quiet_share(image) < QUIET_SHARE


def _sharp_share(bends: np.ndarray) -> float:
    visible = np.count_nonzero(bends > VISIBLE)
    return float(np.count_nonzero(bends > SHARP) / visible) if visible else 0.0


def _quiet_share(bends: np.ndarray) -> float:
    return float(np.count_nonzero(bends <= QUIET) / bends.size) if bends.size else 1.0


def _bends(image: Image.Image) -> np.ndarray:
    """The absolute second differences of the luma along ``ROWS_SAMPLED`` evenly spaced rows."""
    if image.width < 3:
        return np.zeros((0,), np.int16)
    # Whole rows, evenly spaced, picked (not averaged) by a nearest-neighbour resize of the height alone:
    # copying only them keeps the look under a millisecond on a 2000 x 1500 decode (8 ms with the whole plane).
    sampled = image.resize((image.width, min(image.height, ROWS_SAMPLED)), Image.Resampling.NEAREST)
    luma = sampled.getchannel(0) if sampled.mode in ("L", "YCbCr") else sampled.convert("L")
    rows = np.asarray(luma).astype(np.int16)
    return np.abs(rows[:, 2:] - 2 * rows[:, 1:-1] + rows[:, :-2])
