"""End to end over Azurite: 50 blobs (hostile ones included), faults, an Azurite restart, watch."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid

import pytest
from azure.storage.blob import LinearRetry
from PIL import Image

from shared.blob.pipeline import BlobPipeline
from shared.blob.watch import process, watch
from shared.config import Settings
from shared.services import Services, build_analyzer
from shared.storage import images_blob_service
from tests.aoai_double import Reply
from tests.azurite import Azurite
from tests.conftest import distinct_png, encode

HOSTILE = {
    "junk/notes.txt": b"plain text, not an image",
    "junk/empty.png": b"",
    "junk/truncated.jpg": None,  # filled from the corpus
    "junk/bomb.png": encode(Image.new("1", (12000, 6000)), "PNG"),
    "junk/fake.gif": b"GIF89a" + b"\x00" * 20,
}


def hostile(corpus) -> dict[str, bytes]:
    cases = dict(HOSTILE)
    rocket = (corpus / "rocket.jpg").read_bytes()
    cases["junk/truncated.jpg"] = rocket[: len(rocket) // 3]
    return cases


def settings_for(make_settings, connection: str, **values: str) -> Settings:
    tag = uuid.uuid4().hex[:10]
    return make_settings(
        AzureWebJobsStorage=connection,
        VISION_CACHE_ENABLED="false",
        VISION_MODEL_MAX_RETRIES="0",
        VISION_INPUT_CONTAINER=f"in-{tag}",
        VISION_RESULTS_CONTAINER=f"out-{tag}",
        VISION_QUARANTINE_CONTAINER=f"bad-{tag}",
        **values,
    )


def upload_all(pipeline, blobs: dict[str, bytes]) -> None:
    pipeline.ensure_containers()
    for name, data in blobs.items():
        pipeline.inputs.get_blob_client(name).upload_blob(data, overwrite=True)


def check_every_blob_has_one_result(pipeline, good: set[str], bad: set[str]) -> dict[str, dict]:
    results = {
        item.name: json.loads(pipeline.results.download_blob(item.name).readall())
        for item in pipeline.results.list_blobs()
    }
    assert set(results) == {f"{name}.json" for name in good | bad}
    for name in good:
        assert results[f"{name}.json"]["status"] == "succeeded", results[f"{name}.json"]
    for name in bad:
        assert results[f"{name}.json"]["status"] == "failed", results[f"{name}.json"]
    quarantined = {item.name for item in pipeline.quarantine.list_blobs()}
    assert quarantined == bad
    return results


@pytest.mark.timeout(300)
async def test_fifty_blobs_each_get_exactly_one_result(make_settings, storage_connection_string, aoai, corpus):
    services = Services(settings_for(make_settings, storage_connection_string))
    pipeline = services.pipeline
    good = {f"{['describe', 'ocr', 'classify', 'photos'][i % 4]}/img {i:02d} ü.png": distinct_png(100 + i)
            for i in range(45)}
    bad = hostile(corpus)
    upload_all(pipeline, {**good, **bad})
    try:
        summary = await process(pipeline, concurrency=4, progress=False, wait_seconds=0.05)
        again = await process(pipeline, concurrency=4, progress=False, wait_seconds=0.05)
        check_every_blob_has_one_result(pipeline, set(good), set(bad))
    finally:
        await services.aclose()
    assert summary.counts == {"succeeded": 45, "failed": 5}
    assert summary.unresolved == []
    assert sum(again.counts.values()) == 0  # a second pass finds nothing to do
    assert len(aoai.requests) == 45  # one call per good image, none for the hostile ones


@pytest.mark.timeout(300)
async def test_model_faults_then_recovery_lose_nothing(make_settings, storage_connection_string, aoai):
    failures = {"left": 12}
    lock = threading.Lock()

    def flaky(request):
        with lock:
            if failures["left"] > 0:
                failures["left"] -= 1
                return Reply.throttled(retry_after_ms=5) if failures["left"] % 2 else Reply.server_error(500)
        return None

    aoai.set_responder(flaky)
    # Six 500s in a row would open the deployment's breaker (tests/test_failover.py); this test is about
    # redelivery, so the breaker is set to tolerate them.
    services = Services(settings_for(make_settings, storage_connection_string, VISION_MAX_ATTEMPTS="10",
                                     VISION_BREAKER_FAILURES="20"))
    pipeline = services.pipeline
    good = {f"faults/{i}.png": distinct_png(200 + i) for i in range(10)}
    upload_all(pipeline, good)
    try:
        summary = await process(pipeline, concurrency=3, progress=False, wait_seconds=0.02)
        results = check_every_blob_has_one_result(pipeline, set(good), set())
    finally:
        await services.aclose()
    assert summary.counts == {"succeeded": 10}
    assert len(aoai.requests) == 10 + 12  # every failure was retried, no success was paid twice
    # A 429 is waited out inside the delivery (the limiter's pause); each 500 costs a redelivery
    # (VISION_MODEL_MAX_RETRIES=0).
    assert sum(doc["attempts"] for doc in results.values()) == 10 + 6


@pytest.mark.azurite
@pytest.mark.timeout(300)
async def test_azurite_restart_mid_run_resumes_and_completes(make_settings, aoai, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="shared.blob.watch")
    emulator = Azurite(location=str(tmp_path / "azurite")).start()
    settings = settings_for(make_settings, emulator.connection_string)
    # An impatient storage client, so the outage outlasts the SDK's own retries and reaches ours.
    impatient = images_blob_service(settings, retry_policy=LinearRetry(backoff=0.1, retry_total=1))
    analyzer = build_analyzer(settings)
    services = Services(settings, analyzer, BlobPipeline(analyzer, impatient, settings))
    pipeline = services.pipeline
    good = {f"restart/{i:02d}.png": distinct_png(300 + i) for i in range(16)}
    upload_all(pipeline, good)
    aoai.default_reply = Reply.timeout(seconds=0.15, then=Reply.ok("slow but fine"))

    async def outage() -> None:
        while len(aoai.requests) < 4:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(emulator.stop, keep_data=True)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(emulator.start)

    try:
        run = asyncio.create_task(process(pipeline, concurrency=2, progress=False, wait_seconds=0.5))
        await outage()
        summary = await run
        if summary.unresolved:  # blobs whose retries all fell inside the outage: a later pass finishes them
            summary = await process(pipeline, concurrency=2, progress=False, wait_seconds=0.5)
        check_every_blob_has_one_result(pipeline, set(good), set())
    finally:
        await services.aclose()
        emulator.stop()
    assert any("retrying in" in record.getMessage() for record in caplog.records), "the outage was not felt"
    # Every image reached the model; one whose answer was lost in the outage may have been asked twice.
    assert len({r.body["messages"][-1]["content"][1]["image_url"]["url"] for r in aoai.requests}) == 16


@pytest.mark.timeout(120)
async def test_watch_picks_up_new_blobs(make_settings, storage_connection_string, aoai):
    services = Services(settings_for(make_settings, storage_connection_string))
    pipeline = services.pipeline
    upload_all(pipeline, {"w/first.png": distinct_png(400)})

    def drop_the_second_while_the_first_is_analysed(rec):
        """A new blob lands mid-watch, after the first scan has listed the container, whatever the timing."""
        if len(aoai.requests) == 1:
            upload_all(pipeline, {"w/second.png": distinct_png(401)})

    aoai.set_responder(drop_the_second_while_the_first_is_analysed)
    try:
        summary = await watch(pipeline, interval=0.01, iterations=2, wait_seconds=0.05)
        assert pipeline.read_result("w/second.png")["status"] == "succeeded"
    finally:
        await services.aclose()
    assert summary.counts["succeeded"] == 2
    assert len(aoai.requests) == 2
