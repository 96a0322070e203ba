"""Documents for the tests, written here (fpdf2, Pillow) so what each holds is known exactly.

Friendly ones (a two-page invoice whose line items continue on page 2 and whose totals are there, a
scanned page, a rotated page, a multi-page TIFF) and hostile ones (encrypted, truncated, 10,000
pages, a lying page count, a 200 x 200 inch page).
"""

from __future__ import annotations

import io
import re

from fpdf import FPDF
from PIL import Image, ImageDraw

from tests.conftest import font, render_invoice

A4 = (595.28, 841.89)
# Where each piece of text goes (x, y in points, text, font size); amounts right of their labels.
PAGE_1 = [
    (40, 40, "ACME Widgets Ltd", 22),
    (40, 80, "12 Harbour Road, Bristol", 12), (40, 98, "VAT No: GB123456789", 12),
    (40, 140, "Invoice No: INV-2024-0042", 12), (40, 160, "Date: 2024-03-15", 12),
    (40, 180, "Due: 15/04/2024", 12),
    (340, 140, "Bill to:", 12), (340, 160, "Globex Corporation", 12), (340, 178, "1 Main Street, Leeds", 12),
    (40, 240, "Description", 12), (250, 240, "Qty", 12), (310, 240, "Unit price", 12), (420, 240, "Total", 12),
    (40, 265, "Blue widget", 12), (250, 265, "2", 12), (310, 265, "30.00", 12), (420, 265, "60.00", 12),
]
PAGE_2 = [
    (40, 40, "Red gadget", 12), (250, 40, "1", 12), (310, 40, "40.00", 12), (420, 40, "40.00", 12),
    (350, 100, "Subtotal", 12), (420, 100, "100.00", 12), (350, 120, "Tax (20%)", 12), (420, 120, "20.00", 12),
    (350, 140, "Total", 12), (420, 140, "120.00", 12), (350, 160, "Currency: EUR", 12),
]


def _pdf(**options) -> FPDF:
    pdf = FPDF(unit="pt", format=options.pop("page_format", "A4"))
    pdf.set_auto_page_break(False)
    pdf.set_font("Helvetica", size=12)
    return pdf


def _write(pdf: FPDF, lines) -> None:
    for x, y, text, size in lines:
        pdf.set_font("Helvetica", size=size)
        pdf.set_xy(x, y)
        pdf.cell(text=text)


def two_page_invoice() -> bytes:
    """A digital invoice: header and the first line item on page 1; the second item and the totals on page 2."""
    pdf = _pdf()
    pdf.add_page()
    _write(pdf, PAGE_1)
    pdf.add_page()
    _write(pdf, PAGE_2)
    return bytes(pdf.output())


def scanned_invoice() -> bytes:
    """An image-only PDF: the rendered invoice page placed as a picture, no text layer at all."""
    buffer = io.BytesIO()
    render_invoice().save(buffer, "PNG")
    buffer.seek(0)
    pdf = _pdf()
    pdf.add_page()
    pdf.image(buffer, x=0, y=0, w=A4[0])
    return bytes(pdf.output())


def text_page(text: str, *, orientation: str = "P") -> bytes:
    pdf = _pdf()
    pdf.add_page(orientation=orientation)
    _write(pdf, [(60, 80, text, 28)])
    return bytes(pdf.output())


def rotated(data: bytes, degrees: int) -> bytes:
    """The same PDF with ``/Rotate`` on its page (as scanners and viewers write it)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    document[0].set_rotation(degrees)
    out = io.BytesIO()
    document.save(out)
    document.close()
    return out.getvalue()


def encrypted() -> bytes:
    pdf = _pdf()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    _write(pdf, [(60, 80, "Confidential", 20)])
    return bytes(pdf.output())


def truncated() -> bytes:
    data = two_page_invoice()
    return data[: len(data) // 2]


def empty_pdf() -> bytes:
    """A well-formed PDF with no page at all (PDFium writes it)."""
    import pypdfium2 as pdfium

    out = io.BytesIO()
    document = pdfium.PdfDocument.new()
    document.save(out)
    document.close()
    return out.getvalue()


def many_pages(count: int = 10_000) -> bytes:
    pdf = _pdf()
    for _ in range(count):
        pdf.add_page()
    return bytes(pdf.output())


def lying_page_count(count: int = 10_000) -> bytes:
    """One real page whose page tree declares ``count`` pages."""
    data = text_page("One page")
    return re.sub(rb"/Count 1\b", b"/Count " + str(count).encode(), data, count=1)


def huge_page() -> bytes:
    """One 200 x 200 inch page."""
    pdf = FPDF(unit="pt", format=(72 * 200, 72 * 200))
    pdf.add_page()
    return bytes(pdf.output())


def multipage_tiff(texts=("First page", "Second page", "Third page")) -> bytes:
    frames = []
    for text in texts:
        frame = Image.new("L", (800, 400), "white")
        ImageDraw.Draw(frame).text((40, 160), text, fill="black", font=font(48))
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    return buffer.getvalue()


def table_pdf() -> bytes:
    """The conftest table (a caption, a header and four rows, one cell empty) as a digital PDF page."""
    from tests.conftest import TABLE

    pdf = _pdf()
    pdf.add_page()
    lines = [(40, 40, "Quarterly stock report", 14)]
    for r, row in enumerate(TABLE):
        lines.extend((x, 90 + r * 30, cell, 12) for x, cell in zip((40, 170, 300, 420), row, strict=True) if cell)
    _write(pdf, lines)
    return bytes(pdf.output())
