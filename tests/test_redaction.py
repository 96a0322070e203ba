"""Secrets never reach a log line, a result document or a problem document (issue 9, part 1).

One :func:`shared.errors.redact` serves the cache, the blob pipeline, ``watch`` and
:class:`~shared.errors.ConfigError`; these tests hold each of them to it.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from azure.core.exceptions import AzureError

from shared.blob.pipeline import TransientFailure
from shared.blob.watch import process
from shared.config import Settings
from shared.errors import ConfigError, InvalidParameter, ModelUnavailable, redact
from shared.services import Services
from tests.azurite import DEV_KEY
from tests.test_pipeline import distinct_png

PASSWORD = "hunter2-" + "x" * 8
SIG = "sv2024SIGNATUREabc%3D"
API_KEY = "0123456789abcdef0123456789abcdef"
LEAKY = (f"upstream said AccountKey={DEV_KEY}; SharedAccessSignature=sv=2024&sig={SIG} "
         f"https://admin:{PASSWORD}@storage.example/c?se=1&sig={SIG} {{'api-key': '{API_KEY}'}} "
         f"Authorization: Bearer {API_KEY}")
SECRETS = (DEV_KEY, PASSWORD, SIG, API_KEY)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"AccountName=dev;AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:1/dev", "AccountName=dev"),
        (f"https://acct.blob.core.windows.net/c/b.png?sv=2024&sig={SIG}&se=x", "acct.blob.core.windows.net/c/b.png"),
        (f"https://user:{PASSWORD}@host.example/v1", "https://user:***@host.example/v1"),
        (f"headers: {{'api-key': '{API_KEY}', 'Accept': 'json'}}", "'Accept': 'json'"),
        (f"Authorization: Bearer {API_KEY}", "Authorization"),
        (f"x-functions-key={API_KEY}", "x-functions-key=***"),
    ],
)
def test_redact_masks_every_kind_of_secret(text, kept):
    redacted = redact(text)
    assert leaked(redacted) == [] and kept in redacted


def test_redact_leaves_ordinary_text_alone():
    text = "ocr/page.png: attempt 2 failed transiently: ModelUnavailable http://127.0.0.1:7071/api/health"
    assert redact(text) == text


@pytest.mark.parametrize("setting", ["AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL",
                                     "VISION_IMAGES_STORAGE__blobServiceUri"])
def test_config_error_for_a_url_does_not_echo_its_credentials(setting):
    values = {setting: f"ftp://user:{PASSWORD}@host.example/x?sig={SIG}", "OPENAI_MODEL": "m",
              "AZURE_OPENAI_DEPLOYMENT": "d"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping(values)
    assert caught.value.setting == setting
    assert leaked(str(caught.value)) == [] and leaked(caught.value.to_problem()["detail"]) == []
    assert "host.example" in caught.value.detail  # still says which value was wrong


def test_config_error_redacts_whatever_detail_it_is_given():
    error = ConfigError("AzureWebJobsStorage", f"cannot use {LEAKY}")
    assert leaked(str(error)) == [] and leaked(str(error.to_problem())) == []


@pytest.fixture
async def services(make_settings, storage_connection_string):
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(AzureWebJobsStorage=storage_connection_string, VISION_INPUT_CONTAINER=f"in-{tag}",
                             VISION_RESULTS_CONTAINER=f"out-{tag}", VISION_QUARANTINE_CONTAINER=f"bad-{tag}",
                             VISION_MAX_ATTEMPTS="1", VISION_LOCAL_FALLBACK="off")
    services = Services(settings)
    services.pipeline.ensure_containers()
    yield services
    await services.aclose()


def failing(error: Exception):
    async def analyze(*args, **kwargs):
        raise error
    return analyze


@pytest.mark.azurite
@pytest.mark.parametrize("error", [ModelUnavailable(LEAKY), InvalidParameter("prompt", LEAKY)],
                         ids=["transient", "terminal"])
async def test_pipeline_failures_log_and_record_no_secret(services, error, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="shared")
    pipeline = services.pipeline
    pipeline.inputs.upload_blob("leaky.png", distinct_png(1))
    monkeypatch.setattr(services.analyzer, "analyze", failing(error))
    outcome = await pipeline.handle(pipeline.blob_client("leaky.png"))
    assert outcome.status == "failed"
    assert caplog.records, "the failure was not logged"
    assert leaked(caplog.text) == []
    assert leaked(str(pipeline.read_result("leaky.png"))) == [] and leaked(outcome.reason or "") == []


@pytest.mark.azurite
async def test_transient_failure_raised_for_the_host_carries_no_secret(services, monkeypatch):
    pipeline = services.pipeline
    pipeline.settings = pipeline.settings.replace(max_attempts=3)
    pipeline.inputs.upload_blob("again.png", distinct_png(2))
    monkeypatch.setattr(services.analyzer, "analyze", failing(ModelUnavailable(LEAKY)))
    with pytest.raises(TransientFailure) as caught:
        await pipeline.handle(pipeline.blob_client("again.png"))
    assert leaked(str(caught.value)) == []
    assert leaked(str(pipeline.read_result("again.png"))) == []


@pytest.mark.azurite
async def test_watch_and_process_log_storage_errors_without_secrets(services, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="shared")
    pipeline = services.pipeline
    pipeline.inputs.upload_blob("storage.png", distinct_png(3))

    async def handle(blob, *, force=False, **hints):
        raise AzureError(f"request to https://acct.blob.core.windows.net/c?sig={SIG} failed: {LEAKY}")

    monkeypatch.setattr(pipeline, "handle", handle)
    summary = await process(pipeline, progress=False, wait_seconds=0)
    assert summary.unresolved == ["storage.png"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("retrying" in m for m in messages) and any("still failing" in m for m in messages)
    assert leaked(caplog.text) == []
