"""PDFs and multi-page TIFFs wherever an image goes: the offline engine, a model over the real SDK, HTTP,
the blob flow and the CLI."""

from __future__ import annotations

import json
import time

import pytest

from shared.analysis_options import AnalysisOptions
from shared.errors import InvalidParameter, TooManyPages
from shared.extraction import extract
from tests import documents
from tests.aoai_double import Reply
from tests.conftest import assert_problem, distinct_png, squeeze, upload
from tests.test_cli import run

LOCAL = {"VISION_PROVIDER": "local", "VISION_CACHE_ENABLED": "false"}


@pytest.fixture(scope="module")
def invoice_pdf() -> bytes:
    return documents.two_page_invoice()


@pytest.fixture
async def local_analyzer(make_analyzer):
    from shared.config import Settings

    return make_analyzer(Settings.from_mapping(LOCAL))


# --- the offline engine ------------------------------------------------------------------------------------


async def test_a_digital_two_page_invoice_is_read_exactly_from_its_text_layer(local_analyzer, invoice_pdf):
    result = await extract(local_analyzer, invoice_pdf, "invoice")
    data = result["data"]
    assert (data["invoice_number"], data["invoice_date"], data["due_date"]) == ("INV-2024-0042", "2024-03-15",
                                                                               "2024-04-15")
    assert [(item["description"], item["total"]) for item in data["line_items"]] == [("Blue widget", 60.0),
                                                                                     ("Red gadget", 40.0)]
    assert (data["subtotal"], data["tax"], data["total"], data["currency"]) == (100.0, 20.0, 120.0, "EUR")
    assert result["warnings"] == []  # the invoice checks ran on the merged result: lines add up to the subtotal
    provenance = result["provenance"]
    assert provenance["invoice_number"]["page"] == 1 and provenance["total"]["page"] == 2
    assert provenance["line_items[1].total"]["page"] == 2 and provenance["total"]["confidence"] == 1.0
    assert result["document"]["kind"] == "PDF" and [p["text_layer"] for p in result["document"]["pages"]] == [
        True, True]


async def test_a_scanned_pdf_is_read_by_ocr(local_analyzer):
    result = await extract(local_analyzer, documents.scanned_invoice(), "invoice")
    assert result["data"]["total"] == 120.0 and result["data"]["invoice_number"] == "INV-2024-0042"
    assert result["document"]["pages"][0]["text_layer"] is False
    assert result["provenance"]["total"]["confidence"] < 1.0  # read from pixels, not from a text layer


async def test_ocr_of_a_multipage_tiff_answers_per_page(local_analyzer):
    result = await local_analyzer.analyze(documents.multipage_tiff(), AnalysisOptions(task="ocr", pages="1,3"))
    text = result["analysis"]
    assert text.index("--- Page 1 ---") < text.index("--- Page 3 ---") and "Page 2" not in text
    assert squeeze("First page") in squeeze(text) and squeeze("Third page") in squeeze(text)
    assert [p["page"] for p in result["document"]["pages"]] == [1, 3]


async def test_pages_on_a_single_image_is_a_parameter_error(local_analyzer, png_bytes):
    with pytest.raises(InvalidParameter, match="pages"):
        await local_analyzer.analyze(png_bytes, AnalysisOptions(pages="2-3"))


# --- a language model over the real SDK ------------------------------------------------------------------


async def test_a_model_sees_every_page_labelled_and_the_text_layer_for_ocr(make_settings, make_analyzer, aoai,
                                                                             invoice_pdf):
    analyzer = make_analyzer(make_settings())
    aoai.enqueue(Reply.ok("Described.", prompt_tokens=2300, completion_tokens=10),
                 Reply.ok("Transcribed.", prompt_tokens=2400, completion_tokens=200))
    described = await analyzer.analyze(invoice_pdf, AnalysisOptions(task="describe"))
    transcribed = await analyzer.analyze(invoice_pdf, AnalysisOptions(task="ocr"))
    first, second = aoai.requests
    assert [part["text"] for part in first.parts() if part.get("type") == "text"][1:] == ["[Page 1]", "[Page 2]"]
    assert len(first.images) == 2 and "text layer" not in first.text_of("user")
    assert "[Page 2 text layer]" in second.text_of("user") and "Red gadget 1 40.00 40.00" in second.text_of("user")
    assert described["document"]["requests"] == 1 and described["image"]["format"] == "PDF"
    assert transcribed["usage"]["prompt_tokens"] == 2400 and transcribed["estimated_cost_usd"] > 0


async def test_a_document_over_the_request_budget_is_asked_in_page_groups(make_settings, make_analyzer, aoai,
                                                                          invoice_pdf):
    analyzer = make_analyzer(make_settings(VISION_MAX_IMAGE_TOKENS="1200"))  # one high-detail page each
    aoai.enqueue(Reply.ok("First half.", prompt_tokens=1200, completion_tokens=5),
                 Reply.ok("Second half.", prompt_tokens=1200, completion_tokens=7))
    result = await analyzer.analyze(invoice_pdf, AnalysisOptions())
    assert result["analysis"] == "Pages 1-1:\nFirst half.\n\nPages 2-2:\nSecond half."
    assert result["usage"] == {"prompt_tokens": 2400, "completion_tokens": 12, "total_tokens": 2412}
    assert result["document"]["requests"] == 2 and [len(r.images) for r in aoai.requests] == [1, 1]


async def test_extraction_over_the_request_budget_is_refused_not_truncated(make_settings, make_analyzer, aoai,
                                                                            invoice_pdf):
    analyzer = make_analyzer(make_settings(VISION_MAX_IMAGE_TOKENS="1200"))
    with pytest.raises(TooManyPages, match="pages="):
        await extract(analyzer, invoice_pdf, "invoice")
    assert aoai.requests == []


async def test_documents_are_cached_by_bytes_and_page_selection(make_settings, cache_settings, make_analyzer,
                                                                aoai, invoice_pdf):
    analyzer = make_analyzer(make_settings(**cache_settings))
    aoai.default_reply = Reply.ok("An invoice.")
    first = await analyzer.analyze(invoice_pdf, AnalysisOptions())
    again = await analyzer.analyze(invoice_pdf, AnalysisOptions())
    page_two = await analyzer.analyze(invoice_pdf, AnalysisOptions(pages="2"))
    assert (first["cached"], again["cached"], page_two["cached"]) == (False, True, False)
    assert len(aoai.requests) == 2 and len(aoai.requests[1].images) == 1


# --- HTTP --------------------------------------------------------------------------------------------------


async def test_http_takes_a_pdf_as_raw_body_or_multipart(make_settings, make_client, aoai, invoice_pdf):
    client = await make_client(make_settings())
    aoai.default_reply = Reply.ok("Page two.")
    raw = await client.post("/api/analyze?pages=2", content=invoice_pdf, headers={"content-type": "application/pdf"})
    assert raw.status_code == 200, raw.text
    assert [p["page"] for p in raw.json()["document"]["pages"]] == [2]
    form = await client.post("/api/analyze", files={"file": ("statement.pdf", invoice_pdf, "application/pdf")},
                             data={"pages": "1"})
    assert form.status_code == 200 and form.json()["document"]["page_count"] == 2


async def test_http_extracts_an_invoice_pdf_with_the_offline_engine(make_client, invoice_pdf):
    from shared.config import Settings

    client = await make_client(Settings.from_mapping(LOCAL))
    response = await client.post("/api/extract/invoice",
                                 files={"file": ("invoice.pdf", invoice_pdf, "application/pdf")})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["total"] == 120.0 and response.json()["provenance"]["total"]["page"] == 2


async def test_hostile_documents_get_clear_problems_fast(make_settings, make_client, aoai):
    client = await make_client(make_settings())
    cases = [
        (documents.encrypted(), 422, "/problems/unreadable-document"),
        (documents.truncated(), 422, "/problems/unreadable-document"),
        (documents.lying_page_count(), 413, "/problems/too-many-pages"),
        (documents.huge_page(), 422, "/problems/page-too-large"),
    ]
    for data, status, problem in cases:
        started = time.perf_counter()
        response = await client.post("/api/analyze", content=data, headers={"content-type": "application/pdf"})
        assert_problem(response, status, problem)
        assert time.perf_counter() - started < 2.0
    bad_range = await client.post("/api/analyze?pages=5-9", content=documents.two_page_invoice(),
                                  headers={"content-type": "application/pdf"})
    assert_problem(bad_range, 400, "/problems/invalid-parameter")
    assert aoai.requests == []


async def test_openapi_says_documents_are_taken(make_settings, make_client):
    client = await make_client(make_settings())
    spec = (await client.get("/api/openapi.json")).json()
    analyze = spec["paths"]["/api/analyze"]["post"]
    assert "application/pdf" in analyze["requestBody"]["content"]
    assert any(p["name"] == "pages" for p in analyze["parameters"])
    assert "application/pdf" in spec["paths"]["/api/extract/invoice"]["post"]["requestBody"]["content"]


# --- the blob flow -----------------------------------------------------------------------------------------


@pytest.fixture
async def local_pipeline(storage_connection_string, containers):
    from shared.config import Settings
    from shared.services import Services

    settings = Settings.from_mapping({**LOCAL, "AzureWebJobsStorage": storage_connection_string, **containers})
    services = Services(settings)
    services.pipeline.ensure_containers()
    yield services.pipeline
    await services.aclose()


async def test_a_pdf_in_the_blob_flow_gets_its_result_and_a_bad_one_is_quarantined(local_pipeline, invoice_pdf):
    pipeline = local_pipeline
    upload(pipeline, "invoices/statement.pdf", invoice_pdf)
    upload(pipeline, "invoices/locked.pdf", documents.encrypted())
    upload(pipeline, "ocr/scan.png", distinct_png(3))  # images still flow next to documents
    good = await pipeline.handle(pipeline.blob_client("invoices/statement.pdf"))
    bad = await pipeline.handle(pipeline.blob_client("invoices/locked.pdf"))
    assert good.status == "succeeded", good.reason
    result = pipeline.read_result("invoices/statement.pdf")
    assert result["data"]["total"] == 120.0 and result["document"]["page_count"] == 2
    assert pipeline.results.get_blob_client("invoices/statement.pdf.json").exists()
    assert bad.status == "failed"
    failed = pipeline.read_result("invoices/locked.pdf")
    assert failed["error"]["type"].endswith("/problems/unreadable-document")
    assert pipeline.quarantine.get_blob_client("invoices/locked.pdf").exists()


# --- the CLI -----------------------------------------------------------------------------------------------


def test_cli_prepare_shows_pages_tokens_and_cost(tmp_path, invoice_pdf):
    path = tmp_path / "statement.pdf"
    path.write_bytes(invoice_pdf)
    result = run("prepare", str(path), "--detail", "low", "--json", cwd=tmp_path,
                 env={"VISION_PROVIDER": "none", "VISION_CACHE_ENABLED": "false"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["document"]["page_count"] == 2 and len(report["document"]["pages"]) == 2
    assert report["estimated_image_tokens"] == 2 * 85 and report["estimated_input_cost_usd"] > 0
    one = run("prepare", str(path), "--detail", "low", "--pages", "2", cwd=tmp_path,
              env={"VISION_PROVIDER": "none", "VISION_CACHE_ENABLED": "false"})
    assert "page 2: JPEG" in one.stdout and "page 1:" not in one.stdout


# --- batch -------------------------------------------------------------------------------------------------


async def test_batch_reads_documents_next_to_images(local_analyzer, tmp_path, invoice_pdf):
    from shared.batch import run_batch

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "statement.pdf").write_bytes(invoice_pdf)
    (folder / "scan.tiff").write_bytes(documents.multipage_tiff())
    (folder / "locked.pdf").write_bytes(documents.encrypted())
    out = tmp_path / "out.jsonl"
    (folder / "photo.png").write_bytes(distinct_png(5))
    summary = await run_batch(local_analyzer, folder, out, AnalysisOptions(task="ocr", pages="2-3"), progress=False)
    lines = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert (summary.succeeded, summary.failed) == (2, 2)  # a 2-page PDF has no page 3: a clear error, as over HTTP
    assert lines["statement.pdf"]["error"]["type"].endswith("/problems/invalid-parameter")
    assert [p["page"] for p in lines["scan.tiff"]["result"]["document"]["pages"]] == [2, 3]
    assert lines["photo.png"]["success"] is True  # --pages selects documents' pages; an image is read whole
    assert lines["locked.pdf"]["error"]["type"].endswith("/problems/unreadable-document")


async def test_a_digital_table_is_read_exactly(local_analyzer):
    from tests.conftest import TABLE

    result = await extract(local_analyzer, documents.table_pdf(), "table")
    assert result["data"]["columns"] == TABLE[0]
    assert [[row[c] for c in TABLE[0]] for row in result["data"]["rows"]] == [
        [cell or None for cell in row] for row in TABLE[1:]]


async def test_a_document_falls_back_to_the_local_engine_when_the_model_is_down(make_settings, make_analyzer,
                                                                                aoai, invoice_pdf):
    aoai.default_reply = Reply.server_error(503)
    analyzer = make_analyzer(make_settings(VISION_MODEL_MAX_RETRIES="0", VISION_LOCAL_FALLBACK="all"))
    result = await analyzer.analyze(invoice_pdf, AnalysisOptions(task="ocr"))
    assert result["degraded"] is True and result["provider"] == "local"
    assert "--- Page 2 ---" in result["analysis"] and "Red gadget" in result["analysis"]


async def test_a_page_read_once_is_not_read_again(local_analyzer, monkeypatch):
    """Per-page work is reused: OCR of a scanned page serves the next request about it (another task, another range)."""
    from shared.offline import engine

    calls = []
    real = engine.ocr
    monkeypatch.setattr(engine, "ocr", lambda image: calls.append(1) or real(image))
    tiff = documents.multipage_tiff()
    await local_analyzer.analyze(tiff, AnalysisOptions(task="ocr", pages="1-2"))
    await local_analyzer.analyze(tiff, AnalysisOptions(task="ocr", pages="2-3"))
    assert len(calls) == 3  # pages 1, 2, then only 3: page 2 was remembered


async def test_the_json_body_takes_a_base64_pdf_and_its_pages(make_client, invoice_pdf):
    import base64

    from shared.config import Settings

    client = await make_client(Settings.from_mapping(LOCAL))
    body = {"image": "data:application/pdf;base64," + base64.b64encode(invoice_pdf).decode(), "pages": "2",
            "schema": {"type": "object", "properties": {"total": {"type": "number"}}}}
    response = await client.post("/api/extract", json=body)
    assert response.status_code == 200, response.text
    assert [p["page"] for p in response.json()["document"]["pages"]] == [2]
