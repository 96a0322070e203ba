"""The offline engine: OCR on pages the tests render, layout, invoices, tables, schemas, image facts.

The pages are drawn by ``tests/conftest.py`` (``render_invoice``, ``render_table``), so the expected text
is known exactly; OCR may drop a space ("Date:2024-03-15"), so text is compared through ``squeeze``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from shared.offline import documents as lx
from shared.offline import engine as le
from shared.offline import forms
from shared.offline import values as lv
from shared.offline.engine import TextBox
from tests.conftest import TABLE, encode, render_invoice, render_table, squeeze

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def invoice_boxes() -> list[TextBox]:
    return le.ocr(encode(render_invoice(), "PNG"))


@pytest.fixture(scope="module")
def table_boxes() -> list[TextBox]:
    return le.ocr(render_table())


def box(text: str, left: float, top: float, width: float = 100, height: float = 30, confidence: float = 0.99):
    right, bottom = left + width, top + height
    return TextBox(text, confidence, ((left, top), (right, top), (right, bottom), (left, bottom)))


# --- OCR on rendered pages ---------------------------------------------------------------------------


def test_invoice_text_is_read_in_order(invoice_boxes):
    lines = [squeeze(line) for line in le.reading_order(invoice_boxes)]
    for expected in ("ACME Widgets Ltd", "Invoice No: INV-2024-0042 Bill to:", "Description Qty Unit price Total",
                     "Blue widget 2 30.00 60.00", "Subtotal 100.00", "Total 120.00", "Currency: EUR"):
        assert squeeze(expected) in lines
    assert lines.index(squeeze("Subtotal 100.00")) < lines.index(squeeze("Total 120.00"))
    assert all(0.5 <= b.confidence <= 1 and len(b.box) == 4 for b in invoice_boxes)


def test_table_geometry(table_boxes):
    table = lx.table_from_boxes(table_boxes)
    assert table["columns"] == TABLE[0]  # the caption above is not the header
    assert table["rows"] == [{c: (v or None) for c, v in zip(TABLE[0], row, strict=True)} for row in TABLE[1:]]
    assert table["rows"][1]["Units"] is None
    provenance = lx.table_provenance(table_boxes)
    assert provenance["rows[3].Price"]["text"] == "2.10" and "rows[1].Units" not in provenance


def test_invoice_fields_and_provenance(invoice_boxes):
    data, provenance = lx.invoice_from_boxes(invoice_boxes)
    assert data["invoice_number"] == "INV-2024-0042"
    assert (data["invoice_date"], data["due_date"]) == ("2024-03-15", "2024-04-15")
    assert (data["subtotal"], data["tax"], data["total"], data["currency"]) == (100.0, 20.0, 120.0, "EUR")
    assert data["vendor"] == {"name": "ACME Widgets Ltd", "address": "12 Harbour Road, Bristol",
                              "tax_id": "GB123456789"}
    assert data["customer"]["name"] == "Globex Corporation"
    assert squeeze(data["customer"]["address"]) == squeeze("1 Main Street, Leeds")
    assert data["line_items"] == [
        {"description": "Blue widget", "quantity": 2, "unit_price": 30.0, "total": 60.0},
        {"description": "Red gadget", "quantity": 1, "unit_price": 40.0, "total": 40.0},
    ]
    total = provenance["total"]
    assert total["text"] == "120.00" and total["confidence"] > 0.9
    assert 990 <= total["box"][0][0] <= 1010 and 720 <= total["box"][0][1] <= 745
    assert set(provenance) >= {"invoice_number", "invoice_date", "due_date", "tax", "line_items[1].total"}
    json.dumps(data)  # the provider sends it as JSON text


def test_schema_on_the_invoice_page_is_conservative(invoice_boxes):
    schema = {"properties": {"description": {"type": "string"}, "total": {"type": "number"},
                             "vat_no": {"type": "string"}, "due": {"type": "string", "format": "date"}}}
    data, _ = forms.fill_schema_from_boxes(schema, invoice_boxes)
    # "Description" is a table header: its right neighbour "Qty" is not its value.
    assert data == {"description": None, "total": 120.0, "vat_no": "GB123456789", "due": "2024-04-15"}


def test_corpus_page_yields_lines(corpus):
    lines = le.reading_order(le.ocr((corpus / "page.png").read_bytes()))
    assert len(lines) >= 6
    text = squeeze(" ".join(lines))
    for word in ("region-basedsegmentation", "markers", "background", "histogram"):
        assert word in text


def test_blank_image_has_no_text():
    assert le.ocr(Image.new("RGB", (400, 300), "white")) == []


def test_the_engine_is_built_once_across_threads():
    engines: list[object] = []
    threads = [threading.Thread(target=lambda: engines.append(le.get_engine())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(e) for e in engines}) == 1


NO_NETWORK = r"""
import json, socket, sys
LOOPBACK = {"127.0.0.1", "::1", "localhost", None}
attempts = []
real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

def allowed(sock, address):
    host = address[0] if isinstance(address, tuple) else address
    return sock.family == getattr(socket, "AF_UNIX", None) or host in LOOPBACK

def connect(self, address):
    if not allowed(self, address):
        attempts.append(repr(address))
        raise OSError("network blocked by the test")
    return real_connect(self, address)

def connect_ex(self, address):
    if not allowed(self, address):
        attempts.append(repr(address))
        return 111
    return real_connect_ex(self, address)

def getaddrinfo(host, *args, **kwargs):
    if host not in LOOPBACK:
        attempts.append(repr(host))
        raise socket.gaierror("name resolution blocked by the test")
    return real_getaddrinfo(host, *args, **kwargs)

socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
import onnxruntime
loaded = []
real_init = onnxruntime.InferenceSession.__init__
def init(self, path_or_bytes, *args, **kwargs):
    loaded.append(str(path_or_bytes))
    return real_init(self, path_or_bytes, *args, **kwargs)
onnxruntime.InferenceSession.__init__ = init

from shared.offline import engine as local_engine
from shared.providers import local as local_provider  # importing it must not load the engine
lazy = "rapidocr_onnxruntime" not in sys.modules and local_engine.model_files() == []
lines = local_engine.reading_order(local_engine.ocr(open(sys.argv[1], "rb").read()))
import rapidocr_onnxruntime
print(json.dumps({"attempts": attempts, "loaded": loaded, "reported": local_engine.model_files(),
                  "package": rapidocr_onnxruntime.__file__, "lines": lines, "lazy": lazy}))
"""


def test_no_model_is_downloaded_at_run_time(corpus):
    """A fresh interpreter with non-loopback sockets and DNS blocked: loads the wheel's models, reads text."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", NO_NETWORK, str(corpus / "page.png")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [] and result["lazy"]  # importing the modules loads no engine
    models = Path(result["package"]).parent / "models"
    assert "site-packages" in models.parts
    assert len(result["loaded"]) == 3 and sorted(result["loaded"]) == sorted(result["reported"])
    for path in map(Path, result["loaded"]):
        assert path.parent == models and path.suffix == ".onnx" and path.is_file()
    assert len(result["lines"]) >= 6


# --- pure functions: layout, values, schemas, facts -------------------------------------------------


def test_reading_order_groups_lines_by_vertical_overlap():
    boxes = [box("world", 300, 104), box("Hello", 50, 100), box("second", 50, 160), box("line", 250, 158)]
    assert le.reading_order(boxes) == ["Hello world", "second line"]
    assert le.reading_order([box("a  b", 0, 0)]) == ["a b"]
    assert le.reading_order([]) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("Date: 2024-03-15", "2024-03-15"), ("15/03/2024", "2024-03-15"), ("03/15/2024", "2024-03-15"),
    ("15 Mar 2024", "2024-03-15"), ("March 15, 2024", "2024-03-15"), ("15.03.2024", "2024-03-15"),
    ("1st April 2024", "2024-04-01"), ("04/05/2024", "2024-05-04"), ("31/02/2024", None), ("15/03/24", None),
    ("INV-2024-0042", None), ("no date here", None),
])
def test_parse_date(text, expected):
    assert lv.parse_date(text) == expected


def test_ambiguous_slash_dates_follow_the_page():
    assert lv.date_order(["Date: 03/15/2024", "Due 04/05/2024"]) is False
    assert lv.parse_date("04/05/2024", day_first=False) == "2024-04-05"
    assert lv.date_order(["15/03/2024"]) is True and lv.date_order(["2024-03-15"]) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("120.00", 120.0), ("€1,234.50", 1234.5), ("1.234,50 EUR", 1234.5), ("1,234", 1234.0), ("12,5", 12.5),
    ("Tax (20%) 20.00", 20.0), ("20%", None), ("INV-2024-0042", None), ("2024-03-15", None), ("CHF 1'050.00", 1050.0),
])
def test_parse_amount(text, expected):
    assert lv.parse_amount(text) == expected


def test_currency_needs_one_unambiguous_name():
    assert lv.find_currency([box("Total €120.00", 0, 0)])[0] == "EUR"
    assert lv.find_currency([box("Total $120.00", 0, 0)]) == (None, None)
    assert lv.find_currency([box("EUR", 0, 0), box("USD", 0, 50)]) == (None, None)


def test_table_from_synthetic_boxes_merges_split_cells_and_skips_captions():
    boxes = [box("Stock", 0, 0, width=500), box("Name", 0, 50), box("Qty", 300, 50),
             box("Big", 0, 100, width=40), box("apple", 50, 100, width=50), box("3", 300, 100, width=20),
             box("Pear", 0, 150)]
    assert lx.table_from_boxes(boxes) == {"columns": ["Name", "Qty"],
                                          "rows": [{"Name": "Big apple", "Qty": "3"}, {"Name": "Pear", "Qty": None}]}
    assert lx.table_from_boxes([]) == {"columns": [], "rows": []}


def test_invoice_from_synthetic_boxes_avoids_look_alike_labels():
    boxes = [box("INVOICE", 0, 0, height=60), box("Customer No: 12345", 0, 100, width=300),
             box("Date of delivery: 03/01/2024", 0, 150, width=400), box("Issue date: 03/15/2024", 0, 200, width=400),
             box("Due date", 0, 250), box("04/02/2024", 300, 250),
             box("Amount due", 0, 300), box("$1,080.00", 300, 300)]
    data, provenance = lx.invoice_from_boxes(boxes)
    assert data["customer"] == {"name": None, "address": None} and data["vendor"]["name"] is None
    # 03/15/2024 shows the page writes month first, so 04/02/2024 is April 2.
    assert (data["invoice_date"], data["due_date"]) == ("2024-03-15", "2024-04-02")
    assert (data["total"], data["currency"], data["line_items"]) == (1080.0, None, [])
    assert provenance["total"]["text"] == "$1,080.00" and "currency" not in provenance


def test_fill_schema_matches_labels_and_coerces():
    boxes = [box("Invoice No.: A-17", 0, 0, width=300), box("Order date: 15 Mar 2024", 0, 50, width=300),
             box("Amount", 0, 100), box("1,250.00", 200, 100), box("Paid: yes", 0, 150, width=200),
             box("Pages: many", 0, 200, width=200), box("Colour: teal", 0, 250, width=200)]
    schema = {"type": "object", "properties": {
        "invoice_number": {"type": "string"}, "orderDate": {"type": "string", "format": "date"},
        "amount": {"type": ["number", "null"]}, "paid": {"type": "boolean"}, "pages": {"type": "integer"},
        "colour": {"type": "string", "enum": ["red", "blue"]}, "customer": {"type": "string"},
        "items": {"type": "array", "items": {"type": "string"}},
        "meta": {"anyOf": [{"type": "object"}, {"type": "null"}]},
    }}
    data, provenance = forms.fill_schema_from_boxes(schema, boxes)
    assert data == {"invoice_number": "A-17", "orderDate": "2024-03-15", "amount": 1250.0, "paid": True,
                    "pages": None, "colour": None, "customer": None, "items": [], "meta": None}
    assert provenance["amount"]["text"] == "1,250.00" and set(provenance) == {"invoice_number", "orderDate",
                                                                              "amount", "paid"}


def test_fill_schema_prefers_null_when_equal_labels_disagree():
    boxes = [box("Total: 10.00", 0, 0, width=300), box("Total: 12.00", 0, 100, width=300)]
    assert forms.fill_schema_from_boxes({"properties": {"total": {"type": "number"}}}, boxes)[0] == {"total": None}


def test_image_facts_orientation_colours_and_safe_exif():
    image = Image.new("RGB", (400, 200), (250, 250, 250))
    ImageDraw.Draw(image).rectangle((0, 0, 99, 199), fill=(20, 40, 200))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "Canon", "EOS 5D", "2024:03:15 10:00:00"
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS must never come out
    facts = le.image_facts(encode(image, "JPEG", exif=exif, quality=95))
    assert (facts["width"], facts["height"], facts["orientation"], facts["format"]) == (400, 200, "landscape", "JPEG")
    assert facts["exif"] == {"make": "Canon", "model": "EOS 5D", "datetime": "2024:03:15 10:00:00"}
    colours = facts["dominant_colours"]
    assert colours[0]["name"] == "white" and 0.7 <= colours[0]["share"] <= 0.8
    assert any(c["name"] == "blue" and c["share"] >= 0.2 for c in colours)
    assert le.image_facts(Image.new("L", (100, 101)))["orientation"] == "square"


def test_image_facts_apply_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored landscape, displayed portrait
    facts = le.image_facts(encode(Image.new("RGB", (300, 100), "red"), "JPEG", exif=exif))
    assert (facts["width"], facts["height"], facts["orientation"], facts["exif"]["orientation"]) == (
        100, 300, "portrait", 6)


@pytest.mark.parametrize(("rgb", "name"), [
    ((0, 0, 0), "black"), ((255, 255, 255), "white"), ((128, 128, 128), "grey"), ((220, 20, 30), "red"),
    ((20, 160, 40), "green"), ((10, 10, 90), "dark blue"), ((120, 70, 20), "brown"), ((250, 200, 10), "yellow"),
])
def test_colour_names(rgb, name):
    assert le.colour_name(rgb) == name


def test_undecodable_bytes_are_an_input_error():
    from shared.errors import ImageDecodeError

    with pytest.raises(ImageDecodeError):
        le.ocr(b"not an image at all")
