"""Whether a decoded image is drawn with sharp edges (text, line art, screens) or is a photo.

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

Pure: a Pillow image in, a number out; reads a sample of rows, so it costs under a millisecond.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: From this share of sharp bends up, an image is treated as text or line art (see the module's docstring).
SHARP_EDGE_SHARE = 0.2
#: A second difference of the luma, in levels, that is visible (a bend) and that is sharp (a step).
VISIBLE = 15
SHARP = 60
#: Rows looked at: enough for a stable share (a page has text on most of them), few enough to cost nothing.
ROWS_SAMPLED = 256


def sharp_edge_share(image: Image.Image) -> float:
    """The share of visible luma bends that are sharp, over evenly spaced rows; 0.0 for a flat image.

    ``image`` is L, RGB, RGBA or YCbCr (a JPEG's planes, as :mod:`shared.imaging.prepare` decodes it); the
    luma is the Y plane, or Pillow's ITU-R 601 luma of the others.
    """
    if image.width < 3:
        return 0.0
    # Whole rows, evenly spaced, picked (not averaged) by a nearest-neighbour resize of the height alone:
    # copying only them keeps the look under a millisecond on a 2000 x 1500 decode (8 ms with the whole plane).
    sampled = image.resize((image.width, min(image.height, ROWS_SAMPLED)), Image.Resampling.NEAREST)
    luma = sampled.getchannel(0) if sampled.mode in ("L", "YCbCr") else sampled.convert("L")
    rows = np.asarray(luma).astype(np.int16)
    bends = np.abs(rows[:, 2:] - 2 * rows[:, 1:-1] + rows[:, :-2])
    visible = np.count_nonzero(bends > VISIBLE)
    return float(np.count_nonzero(bends > SHARP) / visible) if visible else 0.0


def looks_sharp_edged(image: Image.Image) -> bool:
    """Whether ``image`` is text, line art or a screen rather than a photo (``SHARP_EDGE_SHARE``)."""
    return sharp_edge_share(image) >= SHARP_EDGE_SHARE
