"""Open a PDF or a multi-page TIFF, check it, and yield its pages one at a time.

Why this shape:

* **Check before drawing.** :func:`inspect_document` reads only the structure: the page count (PDFium's
  page tree; the TIFF's chain of frames) and each selected page's size, and refuses too many pages,
  pages larger than any paper, and encrypted, damaged or empty files. A PDF declaring 10,000 pages is
  refused in milliseconds, without rendering one.
* **One page at a time.** :func:`iter_pages` is a generator: each page is rendered straight at the size
  the detail level needs (PDFium rasterises at any scale, so there is no full-size bitmap to shrink),
  handed over, and dropped before the next; a 20-page document never holds 20 bitmaps.
* **The text layer.** A digital PDF carries its text with positions; it is read (PDFium's text
  rectangles: runs of text on one line, the same granularity as OCR lines) and mapped into the rendered
  page's pixels, rotation included, as :class:`~shared.offline.engine.TextBox` es with confidence 1.0, so
  the offline engine reads it exactly where it would otherwise OCR, and a model gets it as text.
* **PDFium is not thread-safe** (one library state for every document): every call into it holds
  :data:`PDFIUM_LOCK`, released between pages so concurrent requests interleave page by page.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pypdfium2 as pdfium
from PIL import Image, ImageSequence

from shared.documents.selection import PageSize, check_page_size, check_selection, parse_pages, render_scale
from shared.errors import ImageTooLarge, UnreadableDocument
from shared.imaging import to_rgb
from shared.imaging.pillow_errors import pillow_errors
from shared.offline.engine import TextBox

PDFIUM_LOCK = threading.Lock()
#: Fewer visible characters than this and a page counts as scanned (a page number is not a text layer).
MIN_TEXT_LAYER_CHARS = 10
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class DocumentInfo:
    """What a document is, checked: its kind, its page count, and the pages selected with their sizes."""

    kind: str  # "PDF" or "TIFF"
    page_count: int
    pages: tuple[int, ...]
    sizes: tuple[PageSize, ...]


@dataclass
class RenderedPage:
    """One page as the model will see it, and its text layer in the same pixels (None: scanned)."""

    number: int
    image: Image.Image
    size: PageSize
    words: tuple[TextBox, ...] | None


def sniff_document(data: bytes) -> str | None:
    """``PDF``, ``TIFF`` (more than one frame), or None for anything else (a single image is not a document)."""
    if b"%PDF-" in data[:1024]:
        return "PDF"
    if data[:4] in _TIFF_SIGNATURES:
        try:
            with Image.open(io.BytesIO(data)) as image:
                return "TIFF" if getattr(image, "n_frames", 1) > 1 else None
        except Exception:  # a broken TIFF is the image path's to report, with its own error
            return None
    return None


def inspect_document(data: bytes, kind: str, *, pages: str | None, max_pages: int, max_pixels: int) -> DocumentInfo:
    """Check the document and the selection without rendering anything; raises :mod:`shared.errors`."""
    if kind == "PDF":
        with PDFIUM_LOCK:
            document = _open_pdf(data)
            try:
                count = len(document)
                if count == 0:
                    raise UnreadableDocument("the PDF has no pages")
                selected = parse_pages(pages, count)
                check_selection(selected, max_pages, count)
                sizes = tuple(_pdf_page_size(document, number) for number in selected)
            finally:
                document.close()
    else:
        with pillow_errors("TIFF", limit=max_pixels), Image.open(io.BytesIO(data)) as image:
            count = image.n_frames
            selected = parse_pages(pages, count)
            check_selection(selected, max_pages, count)
            frame_sizes = []
            for number in selected:
                image.seek(number - 1)
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLarge(width * height, max_pixels)
                frame_sizes.append(PageSize(float(width), float(height)))
            sizes = tuple(frame_sizes)
    if kind == "PDF":  # a TIFF frame's size is in pixels, checked against the pixel limit above
        for number, size in zip(selected, sizes, strict=True):
            check_page_size(number, size)
    return DocumentInfo(kind=kind, page_count=count, pages=selected, sizes=sizes)


def iter_pages(data: bytes, info: DocumentInfo, *, max_side: int | Callable[[PageSize], int]
               ) -> Iterator[RenderedPage]:
    """The selected pages, rendered (PDF) or scaled down (TIFF) to a long side of ``max_side`` (or of what it
    says for each page's size), one at a time."""
    if isinstance(max_side, int):
        side = max_side
        max_side = lambda _size: side  # noqa: E731 - the same side for every page
    if info.kind == "PDF":
        yield from _pdf_pages(data, info, max_side)
    else:
        yield from _tiff_pages(data, info, max_side)


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc)
        if "password" in reason.lower():
            raise UnreadableDocument("the PDF is encrypted (password-protected); send an unlocked copy") from None
        if "PDFium: Success" in reason:  # PDFium refuses a page tree without pages, reporting no error code
            raise UnreadableDocument("the PDF has no pages") from None
        raise UnreadableDocument(f"the PDF is damaged and cannot be read ({reason.rstrip('.')})") from None


def _pdf_page_size(document: pdfium.PdfDocument, number: int) -> PageSize:
    try:
        return PageSize(*document.get_page_size(number - 1))
    except pdfium.PdfiumError:  # the page tree claims a page the file does not hold
        raise UnreadableDocument(f"page {number} of the PDF is missing or damaged") from None


def _pdf_pages(data: bytes, info: DocumentInfo, max_side: Callable[[PageSize], int]) -> Iterator[RenderedPage]:
    with PDFIUM_LOCK:
        document = _open_pdf(data)
    try:
        for number, size in zip(info.pages, info.sizes, strict=True):
            with PDFIUM_LOCK:
                page = document[number - 1]
                try:
                    scale = render_scale(size, max_side(size))
                    bitmap = page.render(scale=scale, may_draw_forms=True)
                    image = to_rgb(bitmap.to_pil())
                    bitmap.close()
                    words = _text_layer(page, scale)
                except pdfium.PdfiumError as exc:
                    raise UnreadableDocument(f"page {number} of the PDF cannot be drawn ({exc})") from None
                finally:
                    page.close()
            yield RenderedPage(number=number, image=image, size=size, words=words)
    finally:
        with PDFIUM_LOCK:
            document.close()


def _text_layer(page: pdfium.PdfPage, scale: float) -> tuple[TextBox, ...] | None:
    """The page's text runs as boxes in rendered pixels, or None when it has (almost) no text: a scan."""
    textpage = page.get_textpage()
    try:
        width, height = page.get_size()  # as displayed
        rotation = page.get_rotation() % 360
        unrotated_w, unrotated_h = (height, width) if rotation in (90, 270) else (width, height)
        runs = []
        for index in range(textpage.count_rects()):
            left, bottom, right, top = textpage.get_rect(index)
            text = " ".join(textpage.get_text_bounded(left, bottom, right, top).split())
            if text:
                runs.append(Run(left, bottom, right, top, text))
    finally:
        textpage.close()
    boxes = []
    for run in merge_runs(runs):
        x0, y0, x1, y1 = _to_display(run.left, run.bottom, run.right, run.top, rotation, unrotated_w, unrotated_h)
        corners = ((x0 * scale, y0 * scale), (x1 * scale, y0 * scale),
                   (x1 * scale, y1 * scale), (x0 * scale, y1 * scale))
        boxes.append(TextBox(text=run.text, confidence=1.0, box=corners))
    visible = sum(len(box.text.replace(" ", "")) for box in boxes)
    return tuple(boxes) if visible >= MIN_TEXT_LAYER_CHARS else None


@dataclass(frozen=True)
class Run:
    """A piece of a text layer in PDF page space (points, origin bottom left)."""

    left: float
    bottom: float
    right: float
    top: float
    text: str

    @property
    def height(self) -> float:
        return max(self.top - self.bottom, 1e-6)

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


#: Runs on one line closer than this many line heights are one phrase (as OCR would box them); wider
#: gaps are columns (a label and its value, table cells) and stay apart.
MERGE_GAP = 0.8
#: A gap under this many line heights is inside a word (no space is added); over it, a word space.
WORD_GAP = 0.15


def merge_runs(runs: list[Run]) -> list[Run]:
    """Text runs joined into phrases: some PDFs place every character (or word) on its own, which no
    label matching survives. Runs on the same line (vertical middles within half a height) that nearly
    touch are merged, with a space where the gap is a word space; line order is top to bottom."""
    lines: list[list[Run]] = []
    for run in sorted(runs, key=lambda r: (-r.middle, r.left)):
        line = lines[-1] if lines else None
        if line and abs(line[0].middle - run.middle) < 0.5 * min(line[0].height, run.height):
            line.append(run)
        else:
            lines.append([run])
    merged: list[Run] = []
    for line in lines:
        current: Run | None = None
        for run in sorted(line, key=lambda r: r.left):
            height = max(run.height, current.height) if current else run.height
            gap = run.left - current.right if current else 0.0
            if current is not None and gap < MERGE_GAP * height:
                space = " " if gap >= WORD_GAP * height and not current.text.endswith(" ") else ""
                current = Run(current.left, min(current.bottom, run.bottom), max(current.right, run.right),
                              max(current.top, run.top), current.text + space + run.text)
            else:
                if current is not None:
                    merged.append(current)
                current = run
        if current is not None:
            merged.append(current)
    return merged


def _to_display(left: float, bottom: float, right: float, top: float, rotation: int, width: float,
                height: float) -> tuple[float, float, float, float]:
    """A rectangle in PDF page space (origin bottom left, unrotated) as (x0, y0, x1, y1) on the displayed page.

    ``/Rotate`` turns the page clockwise for display; checked against PDFium's own rendering in the tests.
    """
    if rotation == 90:
        return bottom, left, top, right
    if rotation == 180:
        return width - right, bottom, width - left, top
    if rotation == 270:
        return height - top, width - right, height - bottom, width - left
    return left, height - top, right, height - bottom


def _tiff_pages(data: bytes, info: DocumentInfo, max_side: Callable[[PageSize], int]) -> Iterator[RenderedPage]:
    with Image.open(io.BytesIO(data)) as image:
        frames = ImageSequence.Iterator(image)
        for number, size in zip(info.pages, info.sizes, strict=True):
            with pillow_errors("TIFF"):
                frame = frames[number - 1]
                frame.load()
                page = to_rgb(frame)
                if page is frame:  # the frame belongs to the open file, which the next page reads: work on a copy
                    page = frame.copy()
                side = max_side(size)
                if max(page.size) > side:
                    page.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
            yield RenderedPage(number=number, image=page, size=size, words=None)
