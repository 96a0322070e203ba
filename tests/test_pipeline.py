"""The blob pipeline against Azurite and the model double: nothing lost, nothing paid twice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from PIL import Image

from shared.blob.claims import write_result
from shared.blob.jobs import plan_job, result_name
from shared.blob.pipeline import BlobPipeline, TransientFailure
from shared.errors import InvalidParameter
from shared.services import Services, build_analyzer
from tests.aoai_double import Reply
from tests.conftest import distinct_png, encode, upload


@pytest.fixture
async def env(make_settings, storage_connection_string, containers, cache_settings):
    """Settings, a pipeline and a blob service, all on the session Azurite."""
    settings = make_settings(**cache_settings, **containers, VISION_MODEL_MAX_RETRIES="0")
    services = Services(settings)
    pipeline = services.pipeline
    pipeline.ensure_containers()
    yield services
    await services.aclose()


def results_of(pipeline: BlobPipeline) -> dict[str, dict]:
    return {
        item.name: json.loads(pipeline.results.download_blob(item.name).readall())
        for item in pipeline.results.list_blobs()
    }


# -- pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "task", "prompt_start"),
    [
        ("cat.png", "describe", "Describe"),
        ("ocr/scan.png", "ocr", "Transcribe"),
        ("OCR/scan.png", "ocr", "Transcribe"),
        ("classify/a/b.jpg", "classification", "Classify"),
        ("unknown/x.png", "describe", "Describe"),
    ],
)
def test_prefix_picks_the_task(name, task, prompt_start):
    job = plan_job(name, {})
    assert job.task == task and job.options.task == task
    assert job.options.prompt.startswith(prompt_start)


def test_metadata_overrides_prefix():
    job = plan_job("ocr/x.png", {"Task": "classification", "prompt": "Qu%C3%A9%20es%3F", "detail": "low",
                                 "max_tokens": "55"})
    assert job.task == "classification"
    assert job.options.prompt == "Qué es?"
    assert job.options.detail == "low" and job.options.max_tokens == 55


@pytest.mark.parametrize(
    "name",
    ["a b/ü ñ.png", "../escape.png", "x/../../y.png", "./a.png", "a//b.png", "back\\slash.png", "z" * 2000],
)
def test_result_name_never_escapes(name):
    safe = result_name(name)
    assert safe.endswith(".json") and len(safe) <= 1024
    assert all(segment not in ("", ".", "..") for segment in safe.split("/"))
    assert not safe.startswith("/")


def test_long_names_stay_distinct():
    assert result_name("z" * 2000 + "a") != result_name("z" * 2000 + "b")


# -- the handler --------------------------------------------------------------------------


async def test_success_writes_the_documented_result(env, aoai):
    pipeline = env.pipeline
    blob = upload(pipeline, "describe/a cat ü.png", distinct_png(1))
    aoai.enqueue(Reply.ok("A small square.", prompt_tokens=100, completion_tokens=4))
    outcome = await pipeline.handle(blob)
    assert outcome.status == "succeeded"
    document = pipeline.read_result("describe/a cat ü.png")
    assert document["status"] == "succeeded"
    assert document["analysis"] == "A small square."
    assert document["blob"] == "describe/a cat ü.png"
    assert document["task"] == "describe"
    properties = blob.get_blob_properties()
    assert document["source"]["etag"] == properties.etag
    assert document["source"]["size"] == properties.size
    assert document["source"]["content_md5"]
    assert document["usage"]["total_tokens"] == 104
    assert {"model", "deployment", "detail", "cached", "image", "created_at", "completed_at"} <= set(document)
    assert outcome.result_name == "describe/a cat ü.png.json"


async def test_host_invocation_through_the_sdk_binding(env, aoai, monkeypatch, storage_connection_string,
                                                      indexed_functions):
    """As the host calls it: model_binding_data -> the extension's converter -> our function."""
    from azurefunctions.extensions.base import Datum
    from azurefunctions.extensions.bindings.blob import BlobClient as BindingBlobClient
    from azurefunctions.extensions.bindings.blob import BlobClientConverter

    import function_app

    pipeline = env.pipeline
    upload(pipeline, "ocr/page.png", distinct_png(2))
    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    monkeypatch.setattr(function_app.api.state, "services", env)
    content = json.dumps({"Connection": "AzureWebJobsStorage", "ContainerName": pipeline.inputs.container_name,
                          "BlobName": "ocr/page.png"})
    model_binding_data = type("ModelBindingData", (), {"version": "1.0", "source": "AzureStorageBlobs",
                                                       "content_type": "application/json", "content": content})()
    client = BlobClientConverter.decode(Datum(model_binding_data, "model_binding_data"), trigger_metadata={},
                                        pytype=BindingBlobClient)
    function = indexed_functions["on_image_uploaded"]
    await function.get_user_function()(client)
    await function.get_user_function()(client)  # Event Grid delivers at least once
    assert pipeline.read_result("ocr/page.png")["task"] == "ocr"
    assert len(aoai.requests) == 1
    assert aoai.requests[0].body["messages"][-1]["content"][1]["image_url"]["detail"] == "high"


async def test_duplicate_and_concurrent_deliveries_pay_once(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "dup.png", distinct_png(3))
    aoai.enqueue(Reply.timeout(seconds=0.5, then=Reply.ok("only once")))
    outcomes = await asyncio.gather(*(pipeline.handle(pipeline.blob_client("dup.png")) for _ in range(4)))
    assert sorted(o.status for o in outcomes) == ["skipped", "skipped", "skipped", "succeeded"]
    again = await pipeline.handle(pipeline.blob_client("dup.png"))
    assert again.status == "skipped" and "already succeeded" in again.reason
    assert len(aoai.requests) == 1
    assert list(results_of(pipeline)) == ["dup.png.json"]


async def test_a_new_version_of_the_blob_is_processed_again(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "v.png", distinct_png(4))
    assert (await pipeline.handle(pipeline.blob_client("v.png"))).status == "succeeded"
    upload(pipeline, "v.png", distinct_png(5))
    assert (await pipeline.handle(pipeline.blob_client("v.png"))).status == "succeeded"
    assert len(aoai.requests) == 2
    assert pipeline.read_result("v.png")["source"]["etag"] == pipeline.blob_client("v.png").get_blob_properties().etag


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"just some text", "/problems/unsupported-media-type"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "/problems/undecodable-image"),
        (encode(Image.new("1", (12000, 6000)), "PNG"), "/problems/image-too-large"),
    ],
)
async def test_terminal_failures_are_recorded_and_quarantined(env, aoai, payload, problem):
    pipeline = env.pipeline
    upload(pipeline, "bad/input.png", payload)
    outcome = await pipeline.handle(pipeline.blob_client("bad/input.png"))
    assert outcome.status == "failed"
    document = pipeline.read_result("bad/input.png")
    assert document["status"] == "failed"
    assert document["error"]["type"] == problem
    assert document["quarantined"] == f"{pipeline.quarantine.container_name}/bad/input.png"
    copy = pipeline.quarantine.get_blob_client("bad/input.png")
    assert copy.download_blob().readall() == payload
    assert copy.get_blob_properties().metadata["reason"]
    assert aoai.requests == []
    assert (await pipeline.handle(pipeline.blob_client("bad/input.png"))).status == "skipped"


async def test_over_limit_blob_is_refused_without_downloading(env, aoai, monkeypatch):
    pipeline = env.pipeline
    pipeline.settings = env.settings.replace(max_image_bytes=1000)
    upload(pipeline, "huge.png", distinct_png(6) + b"\x00" * 2000)

    def no_download(*args, **kwargs):
        raise AssertionError("an over-limit blob must not be downloaded")

    monkeypatch.setattr(pipeline, "_download", no_download)
    outcome = await pipeline.handle(pipeline.blob_client("huge.png"))
    assert outcome.status == "failed"
    assert pipeline.read_result("huge.png")["error"]["type"] == "/problems/payload-too-large"
    assert pipeline.quarantine.get_blob_client("huge.png").exists()


async def test_content_filtered_is_terminal(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "filtered.png", distinct_png(7))
    aoai.enqueue(Reply.content_filter_completion())
    outcome = await pipeline.handle(pipeline.blob_client("filtered.png"))
    assert outcome.status == "failed"
    assert pipeline.read_result("filtered.png")["error"]["type"] == "/problems/content-filtered"


async def test_transient_failure_raises_then_recovers(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "flaky.png", distinct_png(8))
    aoai.enqueue(Reply.server_error(503))
    with pytest.raises(TransientFailure) as caught:
        await pipeline.handle(pipeline.blob_client("flaky.png"))
    assert caught.value.attempts == 1
    pending = pipeline.read_result("flaky.png")
    assert pending["status"] == "retrying" and pending["attempts"] == 1
    outcome = await pipeline.handle(pipeline.blob_client("flaky.png"))
    assert outcome.status == "succeeded"
    assert pipeline.read_result("flaky.png")["attempts"] == 2


async def test_throttling_is_waited_out_within_the_background_deadline_then_redelivered(env, aoai):
    """A blob waits for the quota far longer than an HTTP caller, and past its deadline takes the transient path."""
    pipeline = env.pipeline
    upload(pipeline, "busy.png", distinct_png(11))
    aoai.enqueue_many(Reply.throttled(retry_after_ms=20), times=3)  # short pauses: waited out, one delivery
    outcome = await pipeline.handle(pipeline.blob_client("busy.png"))
    assert outcome.status == "succeeded"
    assert pipeline.read_result("busy.png")["attempts"] == 1
    assert pipeline.read_result("busy.png")["call"]["throttled"] == 3

    upload(pipeline, "later.png", distinct_png(12))
    pipeline.settings = env.settings.replace(background_deadline_seconds=1.0)
    aoai.enqueue(Reply.throttled(retry_after_ms=60_000))  # a pause longer than the deadline
    with pytest.raises(TransientFailure):
        await pipeline.handle(pipeline.blob_client("later.png"))
    assert pipeline.read_result("later.png")["status"] == "retrying"
    assert len([r for r in aoai.requests if r.status == 429]) == 4  # no call was made inside the pause


async def test_after_the_last_attempt_the_failure_is_recorded(env, aoai):
    pipeline = env.pipeline
    pipeline.settings = env.settings.replace(max_attempts=2, local_fallback="off")
    upload(pipeline, "down.png", distinct_png(9))
    aoai.default_reply = Reply.server_error(503)  # every try of both deliveries
    with pytest.raises(TransientFailure):
        await pipeline.handle(pipeline.blob_client("down.png"))
    outcome = await pipeline.handle(pipeline.blob_client("down.png"))
    assert outcome.status == "failed"
    document = pipeline.read_result("down.png")
    assert document["error"]["type"] == "/problems/model-unavailable"
    assert "after 2 attempts" in document["error"]["detail"]


async def test_stale_claim_of_a_crashed_worker_is_taken_over(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "crash.png", distinct_png(10))
    blob = pipeline.blob_client("crash.png")
    source = {"name": "crash.png", "etag": blob.get_blob_properties().etag}
    target = pipeline.results.get_blob_client(result_name("crash.png"))
    write_result(target, {"status": "processing", "source": source, "attempts": 1,
                              "claimed_at": 0, "created_at": "2026-01-01T00:00:00Z"}, etag=None)
    outcome = await pipeline.handle(blob)
    assert outcome.status == "succeeded"
    assert pipeline.read_result("crash.png")["attempts"] == 2


async def test_fresh_claim_makes_other_deliveries_skip(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "busy.png", distinct_png(11))
    blob = pipeline.blob_client("busy.png")
    source = {"name": "busy.png", "etag": blob.get_blob_properties().etag}
    target = pipeline.results.get_blob_client(result_name("busy.png"))
    import time

    write_result(target, {"status": "processing", "source": source, "attempts": 1,
                              "claimed_at": time.time(), "created_at": "2026-01-01T00:00:00Z"}, etag=None)
    outcome = await pipeline.handle(blob)
    assert outcome.status == "skipped" and "processing" in outcome.reason
    assert aoai.requests == []


async def test_deleted_blob_is_skipped(env, aoai):
    outcome = await env.pipeline.handle(env.pipeline.blob_client("never-existed.png"))
    assert outcome.status == "skipped"


# -- the results route --------------------------------------------------------------------


async def test_results_route(env, aoai, make_client):
    pipeline = env.pipeline
    upload(pipeline, "route/cat ü.png", distinct_png(12))
    client = await make_client(env.settings)
    missing = await client.get("/api/results/route/cat ü.png")
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/result-not-found"
    await pipeline.handle(pipeline.blob_client("route/cat ü.png"))
    found = await client.get("/api/results/route/cat ü.png")
    assert found.status_code == 200
    assert found.json()["status"] == "succeeded" and found.json()["blob"] == "route/cat ü.png"
    upload(pipeline, "route/later.png", distinct_png(13))
    aoai.enqueue(Reply.server_error(500))
    with pytest.raises(TransientFailure):
        await pipeline.handle(pipeline.blob_client("route/later.png"))
    pending = await client.get("/api/results/route/later.png")
    assert pending.status_code == 404
    assert pending.json()["type"] == "/problems/result-pending" and pending.json()["state"] == "retrying"


def test_build_pipeline_reads_the_images_connection(make_settings, storage_connection_string):
    settings = make_settings(VISION_IMAGES_STORAGE=storage_connection_string, AzureWebJobsStorage="")
    pipeline = Services(settings).pipeline
    assert isinstance(pipeline.blob_service, BlobServiceClient)
    assert pipeline.blob_service.account_name == "devstoreaccount1"
    analyzer = build_analyzer(settings)
    assert analyzer.cache is None  # the cache needs AzureWebJobsStorage, the pipeline does not


# -- structured extraction in the blob flow ------------------------------------------------

EXTRACTION = Path(__file__).parent / "fixtures" / "extraction"


def test_prefixes_and_metadata_pick_extractions():
    assert plan_job("invoices/march.png", {}).extraction == "invoice"
    assert plan_job("tables/t.png", {}).extraction == "table"
    job = plan_job("anything/r.png", {"schema": "receipt.schema.json"})
    assert (job.extraction, job.schema_blob) == ("schema", "receipt.schema.json")
    with pytest.raises(InvalidParameter):
        plan_job("extract/r.png", {})
    assert plan_job("ocr/x.png", {}).extraction is None


async def test_invoices_prefix_runs_the_invoice_extraction(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "invoices/march.png", distinct_png(20))
    aoai.enqueue(Reply.ok((EXTRACTION / "invoice.json").read_text()))
    outcome = await pipeline.handle(pipeline.blob_client("invoices/march.png"))
    assert outcome.status == "succeeded", outcome.reason
    document = pipeline.read_result("invoices/march.png")
    assert document["task"] == "invoice" and document["kind"] == "invoice"
    assert document["data"]["total"] == 309.36
    assert document["warnings"] == []
    body = aoai.requests[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True


async def test_schema_metadata_points_to_a_schema_blob(env, aoai):
    pipeline = env.pipeline
    pipeline.schemas.create_container()
    pipeline.schemas.upload_blob("receipt.schema.json", (EXTRACTION / "receipt.schema.json").read_bytes())
    upload(pipeline, "receipts/r1.png", distinct_png(21), schema="receipt.schema.json")
    reply = {"merchant": "Corner Shop", "date": "2024-05-01", "store_code": "ABC-1234",
             "items": [{"name": "Tea", "price": 2.5}], "payment": "card", "total": 2.5}
    aoai.enqueue(Reply.ok(json.dumps(reply)))
    outcome = await pipeline.handle(pipeline.blob_client("receipts/r1.png"))
    assert outcome.status == "succeeded", outcome.reason
    assert pipeline.read_result("receipts/r1.png")["data"]["merchant"] == "Corner Shop"
    upload(pipeline, "receipts/r2.png", distinct_png(22), schema="missing.json")
    outcome = await pipeline.handle(pipeline.blob_client("receipts/r2.png"))
    assert outcome.status == "failed" and "missing.json" in outcome.reason
    assert len(aoai.requests) == 1


async def test_extraction_that_stays_invalid_is_recorded_not_retried(env, aoai):
    pipeline = env.pipeline
    upload(pipeline, "invoices/bad.png", distinct_png(23))
    aoai.enqueue(Reply.ok("not json at all"), Reply.ok("still not json"))
    outcome = await pipeline.handle(pipeline.blob_client("invoices/bad.png"))
    assert outcome.status == "failed"
    document = pipeline.read_result("invoices/bad.png")
    assert document["error"]["type"] == "/problems/extraction-failed"
    assert len(aoai.requests) == 2  # the one re-ask, then recorded
