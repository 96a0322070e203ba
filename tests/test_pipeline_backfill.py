"""A backfill (``process``) spends as few storage calls per blob as it safely can (issue 10).

At the deployment's quota the backfill is bound by the CPU its storage calls take, so a new blob
costs three (claim the result, download the blob, write the result) instead of six: the listing
brings the blob's properties and metadata, and the seed's complete listing of results says which
blobs have none. The shortcuts must never cost correctness: a result written after the listing,
a blob replaced after it, and unfinished results are all handled as without them.
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import unquote, urlsplit

import pytest
from azure.core.pipeline.transport import RequestsTransport

from shared.blob.jobs import result_name
from shared.blob.watch import process
from shared.services import Services
from tests.aoai_double import Reply
from tests.conftest import distinct_png, upload

pytestmark = pytest.mark.azurite


@pytest.fixture
async def env(make_settings, storage_connection_string, containers):
    settings = make_settings(AzureWebJobsStorage=storage_connection_string, VISION_CACHE_ENABLED="false",
                             VISION_MODEL_MAX_RETRIES="0", **containers)
    services = Services(settings)
    services.pipeline.ensure_containers()
    yield services
    await services.aclose()


@pytest.fixture
def storage_calls(monkeypatch, containers):
    """Every storage request of this test's containers, as (method, container, blob name or '')."""
    ours = set(containers.values())
    calls: list[tuple[str, str, str]] = []
    real_send = RequestsTransport.send

    def send(self, request, **kwargs):
        container, _, name = unquote(urlsplit(request.url).path).lstrip("/").partition("/")
        if container.startswith("devstoreaccount1/"):  # Azurite's path-style URLs name the account first
            container, _, name = container.partition("/")[2].partition("/")
        else:
            container, _, name = f"{container}/{name}".partition("/")[2].partition("/")
        if container in ours:
            calls.append((request.method, container, name))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(RequestsTransport, "send", send)
    return calls


def per_blob(calls: list[tuple[str, str, str]]) -> Counter:
    """Calls that name a blob (listings and container creation left out), by (method, container)."""
    return Counter((method, container) for method, container, name in calls if name)


async def test_a_new_blob_costs_three_storage_calls(env, aoai, containers, storage_calls):
    pipeline = env.pipeline
    names = [f"new/{index}.png" for index in range(4)]
    for index, name in enumerate(names):
        upload(pipeline, name, distinct_png(index), prompt="Say%20hi")
    aoai.default_reply = Reply.ok("Hi.")
    storage_calls.clear()

    summary = await process(pipeline, concurrency=2, progress=False, wait_seconds=0.01)

    assert summary.counts["succeeded"] == 4
    inputs, results = containers["VISION_INPUT_CONTAINER"], containers["VISION_RESULTS_CONTAINER"]
    # Per blob: one create of the claim, one conditional download, one final write; no HEADs, no result read.
    assert per_blob(storage_calls) == {("PUT", results): 8, ("GET", inputs): 4}
    for name in names:
        document = pipeline.read_result(name)
        assert document["status"] == "succeeded" and document["attempts"] == 1
        assert document["source"]["etag"] == pipeline.blob_client(name).get_blob_properties().etag
        assert document["source"]["content_md5"] and document["source"]["size"] == len(
            pipeline.blob_client(name).download_blob().readall())
    # The prompt came from the metadata the listing brought.
    assert len(aoai.requests) == 4 and all("Say hi" in request.text for request in aoai.requests)


async def test_a_second_pass_reads_nothing_per_blob(env, aoai, storage_calls):
    pipeline = env.pipeline
    for index in range(3):
        upload(pipeline, f"done/{index}.png", distinct_png(index))
    aoai.default_reply = Reply.ok("Done.")
    await process(pipeline, concurrency=2, progress=False, wait_seconds=0.01)
    storage_calls.clear()

    again = await process(pipeline, concurrency=2, progress=False, wait_seconds=0.01)

    assert sum(again.counts.values()) == 0 and per_blob(storage_calls) == {}
    assert len(aoai.requests) == 3


async def test_an_unfinished_result_in_the_seed_is_read_and_resumed(env, aoai, storage_calls):
    """A ``retrying`` result for this version: the claim reads it and counts the next attempt."""
    pipeline = env.pipeline
    blob = upload(pipeline, "retry/a.png", distinct_png(1))
    etag = blob.get_blob_properties().etag
    stale = {"status": "retrying", "blob": "retry/a.png", "attempts": 1, "created_at": "2026-01-01T00:00:00Z",
             "source": {"name": "retry/a.png", "etag": etag}, "result_version": 1}
    pipeline.results.get_blob_client(result_name("retry/a.png")).upload_blob(
        json.dumps(stale), metadata={"status": "retrying", "source_etag": etag.strip('"'), "attempts": "1"})
    aoai.default_reply = Reply.ok("Second time lucky.")

    summary = await process(pipeline, concurrency=1, progress=False, wait_seconds=0.01)

    assert summary.counts["succeeded"] == 1
    document = pipeline.read_result("retry/a.png")
    assert document["attempts"] == 2 and document["created_at"] == "2026-01-01T00:00:00Z"


async def test_a_result_written_after_the_listing_is_respected(env, aoai):
    """The hint says no result, but a delivery finished meanwhile: the create fails, the claim reads it, skips."""
    pipeline = env.pipeline
    blob = upload(pipeline, "race/a.png", distinct_png(2))
    listed = next(iter(pipeline.inputs.list_blobs(include=["metadata"])))
    aoai.enqueue(Reply.ok("First."))
    assert (await pipeline.handle(blob)).status == "succeeded"

    outcome = await pipeline.handle(blob, listed=listed, result_absent=True)

    assert outcome.status == "skipped" and "already succeeded" in outcome.reason
    assert pipeline.read_result("race/a.png")["analysis"] == "First." and len(aoai.requests) == 1


async def test_a_blob_replaced_after_the_listing_is_skipped_then_done_as_the_new_version(env, aoai):
    pipeline = env.pipeline
    blob = upload(pipeline, "swap/a.png", distinct_png(3))
    listed = next(iter(pipeline.inputs.list_blobs(include=["metadata"])))
    blob = upload(pipeline, "swap/a.png", distinct_png(4))  # replaced: a new ETag
    aoai.default_reply = Reply.ok("The new one.")

    outcome = await pipeline.handle(blob, listed=listed, result_absent=True)
    assert outcome.status == "skipped" and "changed" in outcome.reason
    assert aoai.requests == []

    summary = await process(pipeline, concurrency=1, progress=False, wait_seconds=0.01)
    assert summary.counts["succeeded"] == 1
    document = pipeline.read_result("swap/a.png")
    assert document["status"] == "succeeded"
    assert document["source"]["etag"] == blob.get_blob_properties().etag != listed.etag


async def test_a_later_pass_of_watch_still_checks_results_it_did_not_list(env, aoai, storage_calls):
    """After the seeding pass, another writer (the trigger) may have written results: one HEAD per new blob."""
    from shared.blob.watch import Scanner

    pipeline = env.pipeline
    scanner = Scanner(pipeline, concurrency=1)
    assert sum((await scanner.scan()).counts.values()) == 0  # seeds from an empty results container
    blob = upload(pipeline, "late/a.png", distinct_png(5))
    aoai.enqueue(Reply.ok("By the trigger."))
    assert (await pipeline.handle(blob)).status == "succeeded"  # the trigger got there first
    storage_calls.clear()

    summary = await scanner.scan()

    assert sum(summary.counts.values()) == 0 and len(aoai.requests) == 1
    assert [method for method, _, name in storage_calls if name] == ["HEAD"]


async def test_a_result_write_lost_to_an_outage_keeps_the_claim_for_this_process(env, aoai, monkeypatch):
    """Storage drops the final write: the retry here resumes its own claim (not 'another delivery')."""
    from azure.core.exceptions import ServiceRequestError

    from shared.blob import claims
    from shared.blob.pipeline import TransientFailure

    pipeline = env.pipeline
    blob = upload(pipeline, "outage/a.png", distinct_png(6))
    real_write = claims.write_result
    failures = []

    def flaky_write(target, document, *, etag):
        if document["status"] != "processing" and not failures:
            failures.append(document["status"])
            raise ServiceRequestError("connection refused")
        return real_write(target, document, etag=etag)

    monkeypatch.setattr(claims, "write_result", flaky_write)
    aoai.default_reply = Reply.ok("Kept.")

    with pytest.raises(TransientFailure):
        await pipeline.handle(blob)
    outcome = await pipeline.handle(blob)

    assert failures == ["succeeded"] and outcome.status == "succeeded"
    assert pipeline.read_result("outage/a.png")["attempts"] == 2


async def test_a_replaced_blob_with_an_old_result_is_done_again_when_guessed_new(env, aoai):
    """The trigger guesses 'no result yet': a blob replaced under its name has one, for the old version."""
    pipeline = env.pipeline
    blob = upload(pipeline, "again/a.png", distinct_png(7))
    aoai.enqueue(Reply.ok("Old."), Reply.ok("New."))
    assert (await pipeline.handle(blob, result_absent=True)).status == "succeeded"
    blob = upload(pipeline, "again/a.png", distinct_png(8))

    outcome = await pipeline.handle(blob, result_absent=True)

    document = pipeline.read_result("again/a.png")
    assert outcome.status == "succeeded" and document["analysis"] == "New." and document["attempts"] == 1
    assert document["source"]["etag"] == blob.get_blob_properties().etag
    assert (await pipeline.handle(blob, result_absent=True)).status == "skipped"  # a redelivery
