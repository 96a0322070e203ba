"""Pages into what a model is sent: a JPEG per page, its token estimate, its text layer; then request groups.

Pure functions over rendered pages (no I/O beyond encoding); the services run them in a worker thread.
A request carries at most a provider's ``max_pages_per_request`` pages and ``VISION_MAX_IMAGE_TOKENS``
image tokens: a longer document is split into page groups (:func:`page_groups`), never cut short.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.documents.reader import DocumentInfo, iter_pages
from shared.documents.selection import PageSize
from shared.imaging import DETAIL_MAX_SIDE, PreparedImage, view_encoding
from shared.offline.engine import TextBox, reading_order
from shared.tokens import ModelSpec, estimate_image_tokens, service_view


@dataclass(frozen=True)
class DocumentPage:
    """One page, prepared: the JPEG to send, and the page's own text when it has a text layer."""

    number: int
    image: PreparedImage
    words: tuple[TextBox, ...] | None

    def info(self) -> dict[str, Any]:
        """What the caller is told about the page."""
        return {"page": self.number, "width": self.image.width, "height": self.image.height,
                "bytes": len(self.image.data), "estimated_tokens": self.image.estimated_tokens,
                "text_layer": self.words is not None}


def prepare_pages(data: bytes, info: DocumentInfo, detail: str, *, model: str, jpeg_quality: int,
                  model_overrides: Mapping[str, ModelSpec] | None = None,
                  to_service_view: bool = True) -> list[DocumentPage]:
    """Render and encode the selected pages one at a time (only the JPEGs are kept, never the bitmaps).

    Each page is drawn at the size the model service will look at (the detail's size, then the
    service's own shrink: :func:`shared.tokens.service_view`), or at the detail's size for a reader
    that uses every pixel (``to_service_view`` False: the offline engine).
    """
    def naive(size: PageSize) -> tuple[int, int]:
        scale = DETAIL_MAX_SIDE[detail] / max(size.width, size.height)
        if info.kind != "PDF":
            scale = min(1.0, scale)  # a scan is never enlarged; a PDF page is drawn at any scale
        return max(1, int(size.width * scale)), max(1, int(size.height * scale))

    def long_side(size: PageSize) -> int:
        if not to_service_view:
            return max(naive(size))
        return max(service_view(*naive(size), detail, model, model_overrides))

    prepared = []
    for page in iter_pages(data, info, max_side=long_side):
        width, height = page.image.size
        # Drawn at the service's view at "high": encoded as finely as an image at its view (shared.imaging).
        encoding = view_encoding(max(naive(page.size)) / max(width, height), jpeg_quality)
        buffer = io.BytesIO()
        page.image.save(buffer, "JPEG", **encoding.save_options)
        page.image.close()
        image = PreparedImage(data=buffer.getvalue(), width=width, height=height,
                              original_width=round(page.size.width), original_height=round(page.size.height),
                              format=info.kind, detail=detail, model=model,
                              estimated_tokens=estimate_image_tokens(width, height, detail, model, model_overrides))
        prepared.append(DocumentPage(number=page.number, image=image, words=page.words))
    return prepared


def page_groups(pages: list[DocumentPage], *, max_pages: int, max_tokens: int) -> list[list[DocumentPage]]:
    """Consecutive pages in groups of at most ``max_pages`` pages and ``max_tokens`` image tokens each.

    A single page over ``max_tokens`` still gets a group of its own: the per-request budget is for
    bundling pages, and one page is what the detail level made it.
    """
    groups: list[list[DocumentPage]] = []
    current: list[DocumentPage] = []
    tokens = 0
    for page in pages:
        cost = page.image.estimated_tokens
        if current and (len(current) >= max_pages or tokens + cost > max_tokens):
            groups.append(current)
            current, tokens = [], 0
        current.append(page)
        tokens += cost
    if current:
        groups.append(current)
    return groups


def text_layer_prompt(pages: list[DocumentPage]) -> str:
    """The pages' own text, line by line, for a model to read next to the images (exact where pixels blur)."""
    parts = []
    for page in pages:
        if page.words:
            parts.append(f"[Page {page.number} text layer]\n" + "\n".join(reading_order(list(page.words))))
    if not parts:
        return ""
    return ("\n\nThe document's own text layer follows; it is exact, prefer it to reading the pixels when "
            "they disagree.\n\n" + "\n\n".join(parts))


def stack_pages(pages: list[tuple[int, list[TextBox]]]) -> tuple[list[TextBox], list[tuple[int, float, float, float]]]:
    """Boxes of several pages as one tall sheet, so line items and totals that continue over a page break
    read as one document: each page's text starts one line below the last text of the page before (the
    blank foot and head of a page are not a gap in the document). Input: (page number, boxes) in order;
    returns the boxes and each page's ``(page, shift, top, bottom)`` on the sheet, for :func:`page_of`."""
    stacked: list[TextBox] = []
    spans: list[tuple[int, float, float, float]] = []
    cursor = 0.0
    for number, boxes in pages:
        if not boxes:
            continue
        first_top = min(box.top for box in boxes)
        line_height = statistics.median(box.height for box in boxes)
        shift = (cursor + line_height if stacked else 0.0) - (first_top if stacked else 0.0)
        for box in boxes:
            stacked.append(TextBox(text=box.text, confidence=box.confidence,
                                   box=tuple((x, y + shift) for x, y in box.box)))
        bottom = max(box.bottom for box in boxes) + shift
        spans.append((number, shift, min(box.top for box in boxes) + shift, bottom))
        cursor = bottom
    return stacked, spans


def page_of(provenance: dict[str, Any], spans: list[tuple[int, float, float, float]]) -> dict[str, Any]:
    """A stacked sheet's provenance entry back on its page: ``page`` added, the box in that page's pixels."""
    box = provenance.get("box")
    if not box or not spans:
        return provenance
    centre = sum(y for _, y in box) / len(box)
    number, shift, _, _ = min(spans, key=lambda span: 0 if span[2] <= centre <= span[3]
                              else min(abs(centre - span[2]), abs(centre - span[3])))
    return {**provenance, "page": number, "box": [[x, round(y - shift, 1)] for x, y in box]}
