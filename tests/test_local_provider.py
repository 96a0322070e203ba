"""The ``local`` provider: honest replies for OCR and reports, extraction JSON, 501 for the rest."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from shared import extraction
from shared.analysis import Analyzer
from shared.analysis_options import AnalysisOptions
from shared.config import Settings
from shared.errors import NotSupported
from shared.imaging import PreparedImage, prepare_image
from shared.offline.report import markdown_table
from shared.providers.base import Provider, VisionRequest
from shared.providers.local import LocalProvider
from shared.tasks import DEFAULT_PROMPT, PREFIX_TASKS
from tests.conftest import TABLE, encode, render_invoice, render_table, squeeze

OCR_PROMPT = PREFIX_TASKS["ocr"][1]

pytestmark = pytest.mark.usefixtures("ocr_once")  # OCR each page once, not once per test


@pytest.fixture(scope="module")
def invoice() -> PreparedImage:
    return prepare_image(encode(render_invoice()), "high")


@pytest.fixture(scope="module")
def table() -> PreparedImage:
    return prepare_image(encode(render_table()), "high")


def request(image: PreparedImage, *, prompt: str = DEFAULT_PROMPT, task: str | None = None, **more) -> VisionRequest:
    return VisionRequest(prompt=prompt, images=(image,), max_tokens=500, task=task, **more)


async def test_ocr_reply_is_the_text_line_by_line(invoice):
    completion = await LocalProvider().complete(request(invoice, prompt=OCR_PROMPT, task="ocr"))
    lines = completion.text.splitlines()
    assert squeeze(lines[0]) == squeeze("ACME Widgets Ltd")
    assert squeeze("Total 120.00") in [squeeze(line) for line in lines]
    assert completion.model.startswith("rapidocr-onnxruntime-1.4")
    assert completion.usage.total_tokens == 0 and completion.finish_reason == "stop"


async def test_ocr_with_the_default_prompt_and_a_blank_image():
    blank = prepare_image(encode(Image.new("RGB", (300, 200), "white")), "high")
    completion = await LocalProvider().complete(request(blank, task="ocr"))
    assert completion.text == "No text was found."


@pytest.mark.parametrize(("task", "prompt"), [
    (None, DEFAULT_PROMPT), ("describe", DEFAULT_PROMPT), ("quick_summary", PREFIX_TASKS["summary"][1]),
    ("classification", PREFIX_TASKS["classify"][1]), ("detailed_analysis", DEFAULT_PROMPT),
])
async def test_report_says_what_was_measured_and_read(invoice, task, prompt):
    completion = await LocalProvider().complete(request(invoice, prompt=prompt, task=task))
    head, _, text = completion.text.partition("\n")
    assert head.startswith("Local analysis (no language model): 1240x1100 landscape PNG image; dominant colours: white")
    assert "EXIF: removed when the image was prepared" in head
    assert "text found (" in head and squeeze("Invoice No: INV-2024-0042") in squeeze(text)


async def test_report_without_text():
    photo = Image.new("RGB", (200, 400), (30, 90, 200))
    completion = await LocalProvider().complete(request(prepare_image(encode(photo), "auto")))
    assert completion.text.startswith("Local analysis (no language model): 200x400 portrait PNG image; "
                                      "dominant colours: blue #")
    assert completion.text.endswith("no text found.")


async def test_table_extraction_task_is_a_markdown_table(table):
    completion = await LocalProvider().complete(request(table, task="table_extraction"))
    lines = completion.text.splitlines()
    assert lines[0] == "| Product | Region | Units | Price |" and lines[1] == "|---|---|---|---|"
    assert lines[3] == "| Pears | South |  | 0.75 |" and len(lines) == 2 + len(TABLE) - 1


@pytest.mark.parametrize("task", [None, "ocr", "describe"])
async def test_a_free_form_prompt_is_not_supported(invoice, task):
    with pytest.raises(NotSupported) as caught:
        await LocalProvider().complete(request(invoice, prompt="What is the total in dollars?", task=task))
    error = caught.value
    assert error.status == 501
    for setting in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        assert setting in error.detail


async def test_two_images_are_not_supported(invoice, table):
    two = VisionRequest(prompt=DEFAULT_PROMPT, images=(invoice, table), max_tokens=100, image_labels=("[1]", "[2]"))
    with pytest.raises(NotSupported, match=r"comparing images needs a language model.*AZURE_OPENAI_ENDPOINT"):
        await LocalProvider().complete(two)


async def test_unknown_task_and_unrecognised_extraction_are_not_supported(invoice):
    provider = LocalProvider()
    with pytest.raises(NotSupported, match="no 'poetry' task"):
        await provider.complete(request(invoice, task="poetry"))
    with pytest.raises(NotSupported, match="only invoices, tables and simple schemas"):
        await provider.complete(request(invoice, task="describe", response_format={"type": "json_object"}))


async def test_invoice_extraction_is_json_with_provenance(invoice):
    fmt = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": {"type": "object"}}}
    completion = await LocalProvider().complete(request(invoice, prompt="Extract the invoice", task="invoice",
                                                        response_format=fmt))
    data = json.loads(completion.text)
    assert (data["invoice_number"], data["invoice_date"], data["total"]) == ("INV-2024-0042", "2024-03-15", 120.0)
    assert "_provenance" not in data and completion.provenance["total"]["text"] == "120.00"
    assert completion.usage.total_tokens == 0


async def test_table_and_schema_extraction(table, invoice):
    provider = LocalProvider()
    fmt = {"type": "json_schema", "json_schema": {"name": "table", "schema": {"type": "object"}}}
    completion = await provider.complete(request(table, prompt="x", task="table", response_format=fmt))
    grid = json.loads(completion.text)  # the grid a model is asked for: rows are lists of cells
    assert grid == {"columns": TABLE[0], "rows": [[cell or None for cell in row] for row in TABLE[1:]]}
    assert completion.provenance["rows[0].Product"]["text"] == "Apples"
    schema = {"type": "object", "properties": {"invoice_number": {"type": "string"}, "due": {"type": "string",
                                                                                           "format": "date"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "custom", "schema": schema}}
    completion = await provider.complete(request(invoice, prompt="x", task="schema", response_format=fmt))
    assert json.loads(completion.text) == {"invoice_number": "INV-2024-0042", "due": "2024-04-15"}
    with pytest.raises(NotSupported, match=r"json_schema\.schema"):
        await provider.complete(request(invoice, task="schema", response_format={"type": "json_object"}))


def test_describe_says_offline_and_names_the_engine():
    provider = LocalProvider()
    assert isinstance(provider, Provider) and provider.max_images_per_request == 1
    info = provider.describe()
    assert info["provider"] == "local" and info["offline"] is True
    assert info["engine"].startswith("rapidocr-onnxruntime 1.4") and "onnxruntime" in info["engine"]


async def test_behind_the_analyzer_with_no_cloud_settings():
    """What the lead will wire: the analysis layer with the local provider and nothing configured."""
    settings = Settings.from_mapping({"VISION_CACHE_ENABLED": "false"})
    analyzer = Analyzer(settings, LocalProvider(), cache=None)
    result = await analyzer.analyze(encode(render_invoice()), AnalysisOptions(task="ocr"))
    assert result["provider"] == "local" and result["estimated_cost_usd"] == 0
    assert result["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert squeeze("Invoice No: INV-2024-0042") in squeeze(result["analysis"])
    await analyzer.aclose()


def test_markdown_table_escapes_pipes_and_handles_empty():
    assert markdown_table({"columns": [], "rows": []}) == ""
    assert markdown_table({"columns": ["a|b"], "rows": [{"a|b": None}]}) == "| a\\|b |\n|---|\n|  |"


async def test_through_the_extraction_layer():
    """The extraction layer validates the local replies like a model's, and keeps the provenance."""
    analyzer = Analyzer(Settings.from_mapping({"VISION_CACHE_ENABLED": "false"}), LocalProvider(), cache=None)
    invoice = await extraction.extract(analyzer, encode(render_invoice()), "invoice")
    assert invoice["attempts"] == 1 and invoice["provider"] == "local"
    assert (invoice["data"]["total"], invoice["data"]["due_date"]) == (120.0, "2024-04-15")
    assert squeeze(invoice["provenance"]["invoice_number"]["text"]) == squeeze("Invoice No: INV-2024-0042")
    table = await extraction.extract(analyzer, encode(render_table()), "table")
    assert table["data"]["columns"] == TABLE[0] and table["data"]["rows"][1]["Units"] is None
    schema = {"type": "object", "properties": {"invoice_number": {"type": "string"},
                                               "due": {"type": "string", "format": "date"}}}
    custom = await extraction.extract(analyzer, encode(render_invoice()), "schema", schema=schema)
    assert custom["data"] == {"invoice_number": "INV-2024-0042", "due": "2024-04-15"}
    await analyzer.aclose()
