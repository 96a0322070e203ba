"""Reading documents: page ranges, the checks made before rendering, pages one at a time, text layers."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from shared.documents.prepare import page_groups, page_of, prepare_pages, stack_pages
from shared.documents.reader import inspect_document, iter_pages, sniff_document
from shared.documents.selection import PageSize, parse_pages, render_scale
from shared.errors import InvalidParameter, PageTooLarge, TooManyPages, UnreadableDocument
from shared.offline.engine import TextBox
from tests import documents
from tests.conftest import encode

LIMITS = {"max_pages": 20, "max_pixels": 50_000_000}


@pytest.fixture(scope="module")
def invoice_pdf() -> bytes:
    return documents.two_page_invoice()


@pytest.fixture(scope="module")
def ten_thousand_pages() -> bytes:
    return documents.many_pages()


def inspect(data: bytes, pages: str | None = None, **limits):
    kind = sniff_document(data)
    assert kind is not None
    return inspect_document(data, kind, pages=pages, **{**LIMITS, **limits})


# --- page ranges and scales (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    (None, (1, 2, 3, 4, 5, 6, 7, 8)), ("", (1, 2, 3, 4, 5, 6, 7, 8)), ("1-3,7", (1, 2, 3, 7)),
    ("7, 1-2", (7, 1, 2)), ("6-", (6, 7, 8)), ("-2", (1, 2)), ("2,2,1-2", (2, 1)), ("8", (8,)),
])
def test_page_ranges(spec, expected):
    assert parse_pages(spec, 8) == expected


@pytest.mark.parametrize("spec", ["0", "3-1", "9", "1-9", "a", "1..3", "-", "1,,2"])
def test_bad_page_ranges_name_the_parameter(spec):
    with pytest.raises(InvalidParameter) as caught:
        parse_pages(spec, 8)
    assert caught.value.parameter == "pages"


def test_pages_are_rendered_at_the_detail_view():
    assert render_scale(PageSize(595, 842), 2048) == pytest.approx(2048 / 842)
    assert render_scale(PageSize(842, 595), 512) == pytest.approx(512 / 842)
    assert render_scale(PageSize(1, 1), 2048) == pytest.approx(600 / 72)  # a tiny page is not blown up


# --- what is a document -------------------------------------------------------------------------------


def test_documents_are_sniffed_from_their_bytes(invoice_pdf):
    assert sniff_document(invoice_pdf) == "PDF"
    assert sniff_document(documents.multipage_tiff()) == "TIFF"
    single = encode(Image.new("RGB", (50, 40), "red"), "TIFF")
    assert sniff_document(single) is None  # one frame is an image, read by the image path
    assert sniff_document(encode(Image.new("RGB", (50, 40), "red"), "PNG")) is None
    assert sniff_document(b"II*\x00garbage") is None


# --- checks before rendering ---------------------------------------------------------------------------


def test_hostile_documents_are_refused_quickly_without_rendering(ten_thousand_pages, monkeypatch):
    import pypdfium2

    rendered = []
    monkeypatch.setattr(pypdfium2.PdfPage, "render", lambda *a, **k: rendered.append(a))
    cases = [
        (documents.encrypted(), UnreadableDocument, "encrypted"),
        (documents.truncated(), UnreadableDocument, "damaged"),
        (ten_thousand_pages, TooManyPages, "10000 pages"),
        (documents.lying_page_count(), TooManyPages, "10000 pages"),
        (documents.huge_page(), PageTooLarge, "200 x 200 inches"),
    ]
    for data, error, words in cases:
        started = time.perf_counter()
        with pytest.raises(error, match=words):
            inspect(data)
        assert time.perf_counter() - started < 2.0, error
    assert rendered == []


def test_a_page_range_reads_a_long_document(ten_thousand_pages):
    info = inspect(ten_thousand_pages, "9998-10000")
    assert (info.page_count, info.pages) == (10_000, (9998, 9999, 10_000))
    assert [page.number for page in iter_pages(ten_thousand_pages, info, max_side=256)] == [9998, 9999, 10_000]


def test_a_page_the_tree_only_claims_is_unreadable():
    data = documents.lying_page_count()
    assert [page.number for page in iter_pages(data, inspect(data, "1"), max_side=256)] == [1]
    with pytest.raises(UnreadableDocument, match="page 2"):
        inspect(data, "1-2")


def test_too_many_selected_pages_say_how_to_choose(invoice_pdf):
    with pytest.raises(TooManyPages, match="pages=") as caught:
        inspect(invoice_pdf, max_pages=1)
    assert caught.value.status == 413
    assert inspect(invoice_pdf, "2", max_pages=1).pages == (2,)


def test_an_empty_pdf_is_unreadable():
    with pytest.raises(UnreadableDocument, match=r"no pages|cannot be read"):  # PDFium calls it either
        inspect(documents.empty_pdf())


# --- pages, one at a time, with their text layers ------------------------------------------------------


def test_digital_pages_come_with_their_text_layer_in_rendered_pixels(invoice_pdf):
    info = inspect(invoice_pdf)
    first, second = list(iter_pages(invoice_pdf, info, max_side=2048))
    assert first.image.size == (1449, 2048) and first.image.mode == "RGB"
    texts = [box.text for box in first.words]
    assert "Invoice No: INV-2024-0042" in texts and "Blue widget" in texts
    assert [box.text for box in second.words][:1] == ["Red gadget"]
    total = next(box for box in second.words if box.text == "120.00")
    scale = 2048 / 841.89
    assert total.left == pytest.approx(420 * scale, abs=15)  # fpdf2 wrote it at x = 420 pt (plus its cell margin)
    assert all(box.confidence == 1.0 for box in first.words)


def test_a_scanned_page_has_no_text_layer():
    info = inspect(documents.scanned_invoice())
    [page] = list(iter_pages(documents.scanned_invoice(), info, max_side=1024))
    assert page.words is None and page.image.size == (725, 1024)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_rotated_page_keeps_its_text_where_it_is_drawn(degrees):
    data = documents.rotated(documents.text_page("ROTATED TEXT HERE"), degrees)
    info = inspect(data)
    [page] = list(iter_pages(data, info, max_side=1024))
    [word] = page.words
    ink = page.image.convert("L").point(lambda v: 255 if v < 128 else 0).getbbox()
    assert ink is not None
    box = (word.left, word.top, word.right, word.bottom)
    overlap_w = min(box[2], ink[2]) - max(box[0], ink[0])
    overlap_h = min(box[3], ink[3]) - max(box[1], ink[1])
    assert overlap_w > 0.8 * (ink[2] - ink[0]) and overlap_h > 0.8 * (ink[3] - ink[1])
    assert (page.image.width > page.image.height) == (degrees in (90, 270))


def test_tiff_frames_are_pages():
    data = documents.multipage_tiff()
    info = inspect(data, "2-3")
    assert (info.kind, info.page_count) == ("TIFF", 3)
    pages = list(iter_pages(data, info, max_side=512))
    assert [p.number for p in pages] == [2, 3] and pages[0].image.size == (512, 256)


def test_prepared_pages_are_jpegs_with_token_estimates(invoice_pdf):
    pages = prepare_pages(invoice_pdf, inspect(invoice_pdf), "low", model="gpt-4o", jpeg_quality=85)
    assert [p.number for p in pages] == [1, 2]
    assert pages[0].image.data[:2] == b"\xff\xd8" and max(pages[0].image.width, pages[0].image.height) == 512
    assert pages[0].image.estimated_tokens == 85 and pages[0].image.format == "PDF"
    assert pages[0].info()["text_layer"] is True


def test_page_groups_respect_pages_and_tokens(invoice_pdf):
    page = prepare_pages(invoice_pdf, inspect(invoice_pdf, "1"), "low", model="gpt-4o", jpeg_quality=85)[0]
    pages = [page] * 7  # 85 tokens each
    assert [len(g) for g in page_groups(pages, max_pages=3, max_tokens=10_000)] == [3, 3, 1]
    assert [len(g) for g in page_groups(pages, max_pages=10, max_tokens=200)] == [2, 2, 2, 1]
    assert [len(g) for g in page_groups(pages, max_pages=10, max_tokens=10)] == [1] * 7


def test_stacked_pages_continue_one_line_below_and_map_back_to_their_page():
    def box(y):
        return TextBox("x", 1.0, ((10, y), (20, y), (20, y + 10), (10, y + 10)))

    stacked, spans = stack_pages([(1, [box(100), box(120)]), (2, [box(40)])])
    assert [b.top for b in stacked] == [100, 120, 140]  # page 2's first line one line below page 1's last
    back = page_of(stacked[2].as_provenance(), spans)
    assert back["page"] == 2 and back["box"][0] == [10, 40]
    assert page_of(stacked[0].as_provenance(), spans)["page"] == 1


def test_text_runs_are_joined_into_phrases_as_ocr_boxes_them():
    from shared.documents.reader import Run, merge_runs

    letters = [Run(100 + 6 * i, 700, 105.5 + 6 * i, 710, c) for i, c in enumerate("Total")]
    words = [Run(100, 680, 130, 690, "Invoice"), Run(133, 680, 150, 690, "No:"), Run(154, 680, 194, 690, "A-42")]
    column = [Run(400, 700, 440, 710, "120.00")]  # far right of "Total": a value, not the same phrase
    merged = merge_runs(letters + words + column)
    assert [run.text for run in merged] == ["Total", "120.00", "Invoice No: A-42"]
    assert merged[0].left == 100 and merged[0].right == 105.5 + 24


def test_a_scanned_tiff_with_large_pages_is_read_page_after_page():
    from PIL import ImageDraw

    frames = []
    for text in ("one", "two", "three"):
        frame = Image.new("RGB", (3000, 2000), "white")
        ImageDraw.Draw(frame).text((100, 100), text, fill="black")
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    data = buffer.getvalue()
    pages = prepare_pages(data, inspect(data), "high", model="gpt-4o", jpeg_quality=85)
    assert [p.number for p in pages] == [1, 2, 3]
    assert all((p.image.width, p.image.height) == (1152, 768) for p in pages)  # the service's view of 2048x1365


@pytest.mark.parametrize(("detail", "to_service_view", "sampling"), [
    ("high", True, [(1, 1), (1, 1), (1, 1)]),   # drawn at the service's view: full chroma, the view's tables
    ("high", False, [(2, 2), (1, 1), (1, 1)]),  # the detail's size, for the offline engine: as asked
    ("low", True, [(2, 2), (1, 1), (1, 1)]),    # low's view is the naive size itself
])
def test_pages_drawn_at_the_high_view_are_encoded_like_images_at_it(invoice_pdf, detail, to_service_view, sampling):
    """A page sent at the service's view at "high" has no service shrink left to clean it up, exactly like an
    image (shared.imaging.view_encoding): full-size chroma, quantised as finely as that shrink would have."""
    from shared.imaging import view_encoding
    from shared.imaging.encoding import standard_tables

    page = prepare_pages(invoice_pdf, inspect(invoice_pdf, "1"), detail, model="gpt-4o", jpeg_quality=85,
                         to_service_view=to_service_view)[0]
    naive_long = {"high": 2048, "low": 512}[detail]  # an A4 page drawn at the detail's size, long side
    encoding = view_encoding(naive_long / max(page.image.width, page.image.height), 85)
    finer = sampling[0] == (1, 1)
    assert (encoding.tables is not None) == finer  # the view's tables, or the caller's quality 85
    with Image.open(io.BytesIO(page.image.data)) as sent:
        assert [(h, v) for _, h, v, _ in sent.layer] == sampling
        tables = tuple(map(tuple, sent.quantization.values()))
        assert tables == (encoding.tables if finer else standard_tables(85))
