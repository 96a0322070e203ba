"""Pages into what a model is sent: a JPEG per page, its token estimate, its text layer; then request groups.

Pure functions over rendered pages (no I/O beyond encoding); the services run them in a worker thread.
A request carries at most a provider's ``max_pages_per_request`` pages and ``VISION_MAX_IMAGE_TOKENS``
image tokens: a longer document is split into page groups (:func:`page_groups`), never cut short.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.documents.reader import DocumentInfo, iter_pages
from shared.imaging import DETAIL_MAX_SIDE, PreparedImage
from shared.offline.engine import TextBox, reading_order
from shared.tokens import ModelSpec, estimate_image_tokens

#: Gap, in pixels, between stacked pages when one reader looks at several pages as one tall sheet.
PAGE_GAP = 40.0


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
                  model_overrides: Mapping[str, ModelSpec] | None = None) -> list[DocumentPage]:
    """Render and encode the selected pages one at a time (only the JPEGs are kept, never the bitmaps)."""
    prepared = []
    for page in iter_pages(data, info, max_side=DETAIL_MAX_SIDE[detail]):
        buffer = io.BytesIO()
        page.image.save(buffer, "JPEG", quality=jpeg_quality)
        width, height = page.image.size
        page.image.close()
        image = PreparedImage(data=buffer.getvalue(), width=width, height=height,
                              original_width=round(page.size.width), original_height=round(page.size.height),
                              format=info.kind, detail=detail,
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


def stack_pages(pages: list[tuple[int, list[TextBox], float]]) -> tuple[list[TextBox], list[tuple[int, float, float]]]:
    """Boxes of several pages as one tall sheet, each page below the one before, so line items and
    totals that continue over a page break read as one document; returns the boxes and each page's
    vertical span ``(page, top, bottom)`` for :func:`page_of`. Input: (page number, boxes, page height)."""
    stacked: list[TextBox] = []
    spans: list[tuple[int, float, float]] = []
    offset = 0.0
    for number, boxes, height in pages:
        for box in boxes:
            stacked.append(TextBox(text=box.text, confidence=box.confidence,
                                   box=tuple((x, y + offset) for x, y in box.box)))
        spans.append((number, offset, offset + height))
        offset += height + PAGE_GAP
    return stacked, spans


def page_of(provenance: dict[str, Any], spans: list[tuple[int, float, float]]) -> dict[str, Any]:
    """A stacked sheet's provenance entry back on its page: ``page`` added, the box in that page's pixels."""
    box = provenance.get("box")
    if not box:
        return provenance
    centre = sum(y for _, y in box) / len(box)
    for number, top, bottom in spans:
        if top - PAGE_GAP <= centre <= bottom:
            return {**provenance, "page": number, "box": [[x, round(y - top, 1)] for x, y in box]}
    return provenance
