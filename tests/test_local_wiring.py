"""The offline engine wired in: the default with no model configured, and the fallback in an outage."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.services import Services
from tests.aoai_double import Reply
from tests.conftest import encode, render_invoice, squeeze, upload

NO_MODEL = {"VISION_CACHE_ENABLED": "false"}

pytestmark = pytest.mark.usefixtures("ocr_once")  # OCR each page once, not once per test


@pytest.fixture(scope="module")
def invoice_png() -> bytes:
    return encode(render_invoice(), "PNG")


async def test_no_model_settings_means_the_local_engine(make_client, invoice_png):
    client = await make_client(Settings.from_mapping(NO_MODEL))
    health = (await client.get("/api/health")).json()
    assert health["model"]["provider"] == "local" and health["model"]["offline"] is True
    assert health["model"]["configured"] is True and health["model"]["language_model"] is False
    response = await client.post("/api/analyze?task=ocr", content=invoice_png)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "local" and body["deployment"] == "local"
    assert body["usage"]["total_tokens"] == 0 and body["estimated_cost_usd"] == 0
    assert "inv-2024-0042" in squeeze(body["analysis"])
    described = (await client.post("/api/analyze", content=invoice_png)).json()
    assert described["analysis"].startswith("Local analysis (no language model)")


async def test_what_the_local_engine_cannot_do_is_501(make_client, invoice_png, corpus):
    client = await make_client(Settings.from_mapping(NO_MODEL))
    free_form = await client.post("/api/analyze?prompt=Is%20this%20invoice%20overdue%3F", content=invoice_png)
    assert free_form.status_code == 501
    assert free_form.json()["type"] == "/problems/not-supported"
    assert "AZURE_OPENAI_ENDPOINT" in free_form.json()["detail"]
    files = [("file", ("a.png", (corpus / "motorcycle_left.png").read_bytes(), "image/png")),
             ("file", ("b.png", (corpus / "motorcycle_right.png").read_bytes(), "image/png"))]
    compare = await client.post("/api/compare", files=files)
    assert compare.status_code == 501, compare.text


async def test_local_invoice_extraction_over_http(make_client, invoice_png):
    client = await make_client(Settings.from_mapping(NO_MODEL))
    response = await client.post("/api/extract/invoice", content=invoice_png)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "local"
    assert body["data"]["invoice_number"] == "INV-2024-0042"
    assert body["provenance"]["invoice_number"]["text"]


async def test_http_fallback_is_off_unless_asked(make_settings, make_client, aoai, invoice_png):
    aoai.default_reply = Reply.server_error(503)
    off = await make_client(make_settings(VISION_MODEL_MAX_RETRIES="0"))
    assert (await off.post("/api/analyze?task=ocr", content=invoice_png)).status_code == 503
    on = await make_client(make_settings(VISION_MODEL_MAX_RETRIES="0", VISION_LOCAL_FALLBACK="all"))
    response = await on.post("/api/analyze?task=ocr", content=invoice_png)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] is True and body["provider"] == "local"
    assert "inv-2024-0042" in squeeze(body["analysis"])
    # A question only a language model can answer still reports the outage, not a 501.
    question = await on.post("/api/analyze?prompt=Who%20pays%3F", content=invoice_png)
    assert question.status_code == 503


async def test_pipeline_records_degraded_ocr_on_its_last_attempt(make_settings, aoai, containers,
                                                                 storage_connection_string, invoice_png):
    aoai.default_reply = Reply.server_error(503)
    settings = make_settings(**containers, AzureWebJobsStorage=storage_connection_string,
                             VISION_MODEL_MAX_RETRIES="0", VISION_MAX_ATTEMPTS="2")
    services = Services(settings)
    pipeline = services.pipeline
    try:
        pipeline.ensure_containers()
        upload(pipeline, "ocr/outage.png", invoice_png)
        from shared.blob.pipeline import TransientFailure

        with pytest.raises(TransientFailure):  # first attempt: the host should retry
            await pipeline.handle(pipeline.blob_client("ocr/outage.png"))
        outcome = await pipeline.handle(pipeline.blob_client("ocr/outage.png"))
        document = pipeline.read_result("ocr/outage.png")
    finally:
        await services.aclose()
    assert outcome.status == "succeeded"
    assert document["degraded"] is True and document["provider"] == "local"
    assert "inv-2024-0042" in squeeze(document["analysis"])


async def test_drop_a_file_with_no_cloud_account(containers, storage_connection_string, invoice_png):
    settings = Settings.from_mapping({**NO_MODEL, **containers, "AzureWebJobsStorage": storage_connection_string})
    services = Services(settings)
    pipeline = services.pipeline
    try:
        pipeline.ensure_containers()
        upload(pipeline, "ocr/invoice.png", invoice_png)
        outcome = await pipeline.handle(pipeline.blob_client("ocr/invoice.png"))
        document = pipeline.read_result("ocr/invoice.png")
    finally:
        await services.aclose()
    assert outcome.status == "succeeded"
    assert document["provider"] == "local" and "degraded" not in document
    assert "inv-2024-0042" in squeeze(document["analysis"])


async def test_ocr_runs_on_its_own_thread_and_the_key_is_hashed_off_the_loop(monkeypatch, png_bytes):
    """CPU work never runs on the event loop the routes and the blob trigger share: the cache key's SHA-256 in a
    worker thread, OCR in the engine's own executor (so queued OCR cannot take the default pool's threads)."""
    import threading

    from shared import analysis
    from shared.analysis_options import AnalysisOptions
    from shared.config import Settings
    from shared.offline import engine
    from shared.services import build_analyzer

    seen: dict[str, str] = {}
    real_key, real_ocr = analysis.cache_key, engine.ocr

    def key(*args, **kwargs):
        seen["key"] = threading.current_thread().name
        return real_key(*args, **kwargs)

    def ocr(image):
        seen["ocr"] = threading.current_thread().name
        return real_ocr(image)

    monkeypatch.setattr(analysis, "cache_key", key)
    monkeypatch.setattr(engine, "ocr", ocr)
    analyzer = build_analyzer(Settings.from_mapping({"VISION_PROVIDER": "local", "VISION_CACHE_ENABLED": "false"}))
    try:
        await analyzer.analyze(png_bytes, AnalysisOptions(task="ocr"))
    finally:
        await analyzer.aclose()
    assert seen["key"] != threading.main_thread().name
    assert seen["ocr"].startswith("ocr")
