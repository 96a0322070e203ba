"""Page ranges, document limits and render scales: pure arithmetic, checked before any page is rendered.

A hostile document must cost nothing: its page count and page sizes are read from its structure
(PDFium reads the page tree, not the pages' content), checked here, and only then is anything drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import InvalidParameter, PageTooLarge, TooManyPages

#: The largest page side accepted, in points (1/72 in): 100 in (2.54 m) is beyond any paper size (A0 is 46.8
#: in); a larger "page" is a banner or a hostile file, and rendering it for a model would make its text
#: unreadably small anyway.
MAX_PAGE_SIDE_POINTS = 72 * 100
POINTS_PER_INCH = 72.0
#: The most a page is enlarged when drawn (a business card at 600 dpi is sharp; more is only pixels).
MAX_RENDER_DPI = 600
_RANGE = re.compile(r"^\s*(\d*)\s*(?:(-)\s*(\d*))?\s*$")


@dataclass(frozen=True)
class PageSize:
    """A page as displayed (its rotation applied), in points."""

    width: float
    height: float

    @property
    def inches(self) -> tuple[float, float]:
        return self.width / POINTS_PER_INCH, self.height / POINTS_PER_INCH


def parse_pages(spec: str | None, page_count: int) -> tuple[int, ...]:
    """The 1-based page numbers ``spec`` selects (``1-3,7``, ``4-``, ``-2``), in order, without repeats.

    None or empty selects every page. A page past the end is an error, not silently dropped.
    """
    if spec is None or not spec.strip():
        return tuple(range(1, page_count + 1))
    chosen: list[int] = []
    for part in spec.split(","):
        match = _RANGE.match(part)
        if not match or not (match.group(1) or match.group(3)):
            raise InvalidParameter("pages", f"expected page numbers and ranges such as 1-3,7; got {spec!r}")
        first = int(match.group(1)) if match.group(1) else 1
        last = (int(match.group(3)) if match.group(3) else page_count) if match.group(2) else first
        if first < 1 or last < first:
            raise InvalidParameter("pages", f"{part.strip()!r} is not an ascending range of pages from 1")
        if last > page_count:
            raise InvalidParameter("pages", f"asks for page {last}, but the document has {page_count}")
        chosen.extend(page for page in range(first, last + 1) if page not in chosen)
    return tuple(chosen)


def check_selection(pages: tuple[int, ...], max_pages: int, page_count: int) -> None:
    """Refuse more pages than one request may take; the message says how to choose fewer."""
    if not pages:
        raise InvalidParameter("pages", "selects no page")
    if len(pages) > max_pages:
        whole = "the document has" if len(pages) == page_count else "the selection has"
        raise TooManyPages(f"{whole} {len(pages)} pages; the limit is {max_pages} (VISION_MAX_PAGES): "
                           "choose some with pages=, e.g. pages=1-3", pages=len(pages), limit=max_pages)


def check_page_size(number: int, size: PageSize) -> None:
    if max(size.width, size.height) > MAX_PAGE_SIDE_POINTS or min(size.width, size.height) <= 0:
        width, height = size.inches
        raise PageTooLarge(f"page {number} is {width:.0f} x {height:.0f} inches; the largest accepted side is "
                           f"{MAX_PAGE_SIDE_POINTS / POINTS_PER_INCH:.0f} inches", page=number)


def render_scale(size: PageSize, max_side: int) -> float:
    """Pixels per point that bring the page's long side to ``max_side`` pixels (the detail's view).

    Rendering straight at the size the model will see costs one rasterisation and no resize. A small page
    is enlarged at most to :data:`MAX_RENDER_DPI`: past that no text gets sharper, and a page of one
    point square must not become millions of blank pixels to OCR.
    """
    return min(max_side / max(size.width, size.height), MAX_RENDER_DPI / POINTS_PER_INCH)
