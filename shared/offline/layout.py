"""Rows and columns from the boxes' positions: where a label's value is, and which rows are table headers.

Pure geometry on :class:`~shared.offline.engine.TextBox` lists (lines from
:func:`~shared.offline.engine.group_lines`); what a label or a value *says* is decided by the caller's
parse functions. The facts this encodes, each with its own test:

* **A value is on its label's row at any distance**: two-column layouts print the label at the left
  margin and the value right-aligned far away; the row ends at the next label (``Invoice Date: | Due
  Date:`` are two labels, not a label and its value), or at a word after a value (``Subtotal 100.00
  Shipping 5.00`` is two pairs).
* **Or directly below, in the same column**: a label over its value (``Invoice Date`` / ``03/20/2023``),
  the nearest text under it in its x-range (a line of other columns' notes in between is skipped).
* **A row of several texts none of which is a value is a table header**: the amount under its ``Total``
  is the first line's, not the document's total.
* **Of several amounts on a total's row the rightmost is the row's total** (the total column comes last:
  ``Total | 24.99 net | 5.00 tax | 29.99``).
* **Stray marks**: PDF text layers sometimes place a decimal point or comma as its own run, just under the
  digits it separates (``1 589 80`` over ``.`` and ``,``); :func:`attach_marks` puts it back in.
* **Letter-spaced text**: some fonts place every glyph apart, and the text layer reads ``Tota l`` and
  ``1 24 2 9 64 7``; a page where lone letters inside words are common loses its spaces
  (:func:`squeeze_spaced`), as labels already accept missing spaces.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shared.offline.engine import TextBox

#: How far under a label its value may start, in the label's heights.
BELOW_GAP = 1.5


def row_after(box: TextBox, line: list[TextBox], is_label: Callable[[TextBox], bool]) -> list[TextBox]:
    """The boxes right of ``box`` on its line, left to right, at any distance, up to the next label or
    the first word (more than three letters, no digit) after a value."""
    after = sorted((b for b in line if b is not box and b.left >= box.right - 0.5 * box.height),
                   key=lambda b: b.left)
    row: list[TextBox] = []
    for other in after:
        word = not any(c.isdigit() for c in other.text) and sum(c.isalpha() for c in other.text) > 3
        if is_label(other) or (word and any(c.isdigit() for b in row for c in b.text)):
            break
        row.append(other)
    return row


def below(box: TextBox, lines: list[list[TextBox]], index: int) -> TextBox | None:
    """The first box under ``box`` in its column: on the nearest following line with a box overlapping it
    horizontally (the most), if that box starts within :data:`BELOW_GAP` label heights of the last text
    above it in the column."""
    last_bottom = box.bottom
    for line in lines[index + 1:index + 4]:
        overlaps = [(min(b.right, box.right) - max(b.left, box.left), b) for b in line]
        overlap, best = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
        if min(b.top for b in line) - last_bottom > BELOW_GAP * box.height:
            return None
        if best is not None and overlap > 0:
            return best if best.top - last_bottom <= BELOW_GAP * box.height else None
        last_bottom = max(b.bottom for b in line)
    return None


def is_header_row(line: list[TextBox], is_value: Callable[[str], Any]) -> bool:
    """True for a table's header: three or more texts on the row and not one of them a value."""
    return len(line) >= 3 and not any(is_value(b.text) is not None for b in line)


def last_value(boxes: list[TextBox], parse: Callable[[str], Any]) -> tuple[Any, TextBox] | None:
    """The rightmost box that ``parse`` accepts, as (value, box): the total column of a row of amounts."""
    for other in reversed(boxes):
        value = parse(other.text)
        if value is not None:
            return value, other
    return None


def first_value(boxes: list[TextBox], parse: Callable[[str], Any]) -> tuple[Any, TextBox] | None:
    """The leftmost box that ``parse`` accepts, as (value, box)."""
    for other in boxes:
        value = parse(other.text)
        if value is not None:
            return value, other
    return None


def _with_box(box: TextBox, text: str) -> TextBox:
    return TextBox(text, box.confidence, box.box)


def attach_marks(boxes: list[TextBox]) -> list[TextBox]:
    """Lone ``.``/``,`` boxes put back into the text they sit under (see the module docstring).

    A mark belongs to the box whose x-range holds it and whose lower half (or the half height under it)
    holds its top; it replaces the space nearest its position in that text (characters are taken as
    evenly wide; of the spaces within one and a half characters, one before a final two digits, the
    cents, first), or is dropped when there is none (the text already has its marks).
    """
    marks = [b for b in boxes if b.text in (".", ",")]
    if not marks:
        return boxes
    texts = {id(b): b.text for b in boxes}
    placed: set[int] = set()
    for mark in marks:
        x = mark.center[0]
        hosts = [b for b in boxes if b.text not in (".", ",") and b.left < x < b.right
                 and b.top + 0.4 * b.height <= mark.top <= b.bottom + 0.5 * b.height]
        if not hosts:
            continue
        host = min(hosts, key=lambda b: abs(mark.top - b.bottom))
        text = texts[id(host)]
        position = (x - host.left) / max(host.right - host.left, 1.0) * len(text)
        spaces = [i for i, c in enumerate(text) if c == " " and abs(i + 0.5 - position) <= 1.5]
        if spaces:  # glyphs are not evenly wide: a space before a number's last two digits is the likelier slot
            i = min(spaces, key=lambda i: (not re.match(r" \d\d(?!\d)", text[i:]), abs(i + 0.5 - position)))
            texts[id(host)] = text[:i] + mark.text + text[i + 1:]
        placed.add(id(mark))
    return [_with_box(b, texts[id(b)]) if texts[id(b)] != b.text else b for b in boxes if id(b) not in placed]


#: A lone letter inside a word (``Tota l``, ``I nvoice``): text set with its letters spaced apart. Vowels
#: that are words of their own (``à``, ``a``, ``y``, ``e``, ``o``) do not count.
_FRAGMENT = re.compile(r"(?<![^\W\d_])(?![aàeiouy])[^\W\d_] (?=[a-zà-ÿ])"
                       r"|(?<=[^\W\d_]) (?![aàeiouy])[a-zà-ÿ](?![^\W\d_])", re.I)
#: Lone letters per word above which a page is letter-spaced (such pages measure 0.4-1.0, others under 0.1).
SPACED_RATIO = 0.25


def letter_spaced(boxes: list[TextBox]) -> bool:
    """True when the page's words are broken by spaces (``Su btota l $ 1 12 00``): some PDF fonts
    position every glyph apart, and their text layer comes out with spaces inside words and numbers."""
    text = "\n".join(b.text for b in boxes)
    words = len(re.findall(r"[^\W\d_]{2,}", text))
    return words >= 10 and len(_FRAGMENT.findall(text)) > SPACED_RATIO * words


def squeeze_spaced(boxes: list[TextBox]) -> list[TextBox]:
    """A letter-spaced page's boxes without their spaces (labels accept missing spaces, as OCR drops them);
    any other page unchanged."""
    if not letter_spaced(boxes):
        return boxes
    return [_with_box(b, re.sub(r"\s+", "", b.text)) if " " in b.text else b for b in boxes]


def vertical_text(boxes: list[TextBox]) -> bool:
    """True when most text runs up or down the page (a receipt scanned sideways): rows and columns then
    cannot be told from the boxes, and only a label's own box can hold its value."""
    words = [b for b in boxes if len(b.text) >= 3]
    upright = sum(1 for b in words if b.bottom - b.top > 1.5 * (b.right - b.left))
    return len(words) >= 5 and upright > 0.6 * len(words)
