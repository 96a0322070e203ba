"""The HTTP edge (issue 9): Entra token failures, result-read failures, 405's Allow, offline API docs."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.storage.blob import BlobServiceClient

from shared.blob.jobs import result_name
from shared.blob.pipeline import BlobPipeline
from shared.errors import ModelBadResponse, ModelCredentialsError
from shared.providers.base import VisionRequest
from shared.providers.factory import build_provider
from shared.services import Services, build_analyzer
from tests.aoai_double import Reply
from tests.azurite import free_port
from tests.conftest import assert_problem


class NoTokenCredential:
    """An async TokenCredential whose every token request fails, as azure-identity's do when no identity answers.

    Async like the ``azure.identity.aio`` credential the model path uses (``shared.services``).
    """

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or ClientAuthenticationError(
            "ManagedIdentityCredential authentication unavailable, no response from the IMDS endpoint.")
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls += 1
        raise self.error

    async def get_token_info(self, *scopes: str, options=None):
        self.calls += 1
        raise self.error

    async def close(self) -> None:
        pass


# -- 1. Entra token failures at the model edge -------------------------------------------------


def keyless(make_settings):
    return make_settings(AZURE_OPENAI_API_KEY="")


async def test_token_failure_is_a_503_naming_the_credential(make_settings, make_client, aoai, png_bytes):
    settings = keyless(make_settings)
    credential = NoTokenCredential()
    analyzer = build_analyzer(settings, model_credential=lambda: credential)
    client = await make_client(settings)
    client._transport.app.state.services = Services(settings, analyzer)  # type: ignore[attr-defined]
    response = await client.post("/api/analyze", content=png_bytes)
    body = assert_problem(response, 503, "/problems/model-credentials")
    assert body["credential"] == "NoTokenCredential"
    assert "NoTokenCredential" in body["detail"] and "IMDS" in body["detail"]
    assert response.headers["Retry-After"].isdigit()
    assert aoai.api_key not in response.text
    assert credential.calls >= 1 and aoai.requests == []  # no request left without a token


async def test_token_failure_through_the_sdk_provider(make_settings, aoai):
    provider = build_provider(keyless(make_settings), credential=lambda: NoTokenCredential())
    request = VisionRequest(prompt="hi", images=(), max_tokens=10)
    with pytest.raises(ModelCredentialsError) as caught:
        await provider.complete(request)
    assert isinstance(caught.value.__cause__, ClientAuthenticationError)
    assert caught.value.to_problem()["type"] == "/problems/model-credentials"
    await provider.aclose()


async def test_a_token_failure_never_repeats_a_secret_it_quotes(make_settings, aoai):
    leaky = ClientAuthenticationError("ClientSecretCredential: AADSTS7000215 client_secret=s3cr3t-value is invalid")
    provider = build_provider(keyless(make_settings), credential=lambda: NoTokenCredential(leaky))
    with pytest.raises(ModelCredentialsError) as caught:
        await provider.complete(VisionRequest(prompt="hi", images=(), max_tokens=10))
    await provider.aclose()
    assert "s3cr3t-value" not in caught.value.detail
    assert "AADSTS7000215" in caught.value.detail


async def test_value_and_type_errors_are_not_reported_as_not_json(make_settings, aoai):
    """A ValueError or TypeError is a bug, not a body that is not JSON: it surfaces as itself (a 500)."""
    for error in (ValueError("bad tenant id"), TypeError("unexpected keyword")):
        provider = build_provider(keyless(make_settings), credential=lambda e=error: NoTokenCredential(e))
        with pytest.raises(type(error)):
            await provider.complete(VisionRequest(prompt="hi", images=(), max_tokens=10))
        await provider.aclose()


async def test_a_body_that_is_not_json_is_still_a_bad_response(make_settings, aoai):
    aoai.enqueue(Reply.malformed())
    provider = build_provider(make_settings(VISION_MODEL_MAX_RETRIES="0"))
    with pytest.raises(ModelBadResponse, match="not JSON"):
        await provider.complete(VisionRequest(prompt="hi", images=(), max_tokens=10))
    await provider.aclose()


# -- 2. reading results: corrupt documents and storage outages ----------------------------------


@pytest.fixture
async def results_env(make_settings, storage_connection_string, make_client):
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(AzureWebJobsStorage=storage_connection_string, VISION_INPUT_CONTAINER=f"in-{tag}",
                             VISION_RESULTS_CONTAINER=f"out-{tag}", VISION_QUARANTINE_CONTAINER=f"bad-{tag}")
    client = await make_client(settings)
    pipeline = client._transport.app.state.services.pipeline  # type: ignore[attr-defined]
    pipeline.ensure_containers()
    return client, pipeline


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'"succeeded"',
                                     json.dumps({"status": "succeeded"}).encode(),
                                     json.dumps({"status": 3, "blob": "x"}).encode()])
async def test_a_corrupt_result_is_a_502(results_env, content):
    client, pipeline = results_env
    pipeline.results.get_blob_client(result_name("broken/one.png")).upload_blob(content, overwrite=True)
    body = assert_problem(await client.get("/api/results/broken/one.png"), 502, "/problems/result-corrupt")
    assert body["blob"] == "broken/one.png"


async def test_a_valid_result_still_reads(results_env):
    client, pipeline = results_env
    document = {"status": "failed", "blob": "ok.png", "attempts": 1, "source": {"name": "ok.png"},
                "error": {"type": "/problems/unsupported-media-type", "title": "t", "status": 415, "detail": "d"}}
    pipeline.results.get_blob_client(result_name("ok.png")).upload_blob(json.dumps(document), overwrite=True)
    response = await client.get("/api/results/ok.png")
    assert response.status_code == 200 and response.json() == document


async def test_storage_down_is_a_503_with_retry_after(make_settings, make_client):
    port = free_port()  # nothing listens there
    connection = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                  f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    settings = make_settings(AzureWebJobsStorage=connection)
    service = BlobServiceClient.from_connection_string(connection, retry_total=0, connection_timeout=2)
    analyzer = build_analyzer(settings)
    client = await make_client(settings)
    app = client._transport.app  # type: ignore[attr-defined]
    app.state.services = Services(settings, analyzer, BlobPipeline(analyzer, service, settings))
    response = await client.get("/api/results/any.png")
    body = assert_problem(response, 503, "/problems/storage-unavailable")
    assert "ServiceRequestError" in body["detail"] and "a2V5" not in response.text
    assert response.headers["Retry-After"].isdigit()


# -- 5. 405 carries Allow --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/api/analyze", {"POST"}), ("PUT", "/api/extract", {"POST"}), ("DELETE", "/api/compare", {"POST"}),
    ("POST", "/api/health", {"GET"}), ("POST", "/api/results/a.png", {"GET"}),
])
async def test_405_problems_carry_allow(make_settings, make_client, method, path, allowed):
    client = await make_client(make_settings())
    response = await client.request(method, path)
    assert_problem(response, 405, "/problems/http-405")
    assert {part.strip() for part in response.headers["Allow"].split(",")} >= allowed


# -- 3. /api/docs works offline ----------------------------------------------------------------


async def test_docs_reference_only_local_assets_that_are_served(make_settings, make_client):
    client = await make_client(make_settings())
    page = await client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert not [url for url in urls if "//" in url], urls  # nothing from a CDN (or any other host)
    assets = {url: await client.get(url) for url in urls if url != "/api/openapi.json"}
    kinds = {url.rsplit(".", 1)[-1] for url in assets}
    assert {"js", "css"} <= kinds
    for url, response in assets.items():
        assert response.status_code == 200, url
        assert len(response.content) > 1000, url
        expected = {"js": "javascript", "css": "text/css", "png": "image/png"}[url.rsplit(".", 1)[-1]]
        assert expected in response.headers["content-type"], (url, response.headers["content-type"])
    bundle = next(response for url, response in assets.items() if url.endswith("swagger-ui-bundle.js"))
    assert b"SwaggerUIBundle" in bundle.content
    assert (await client.get("/api/openapi.json")).status_code == 200


async def test_docs_assets_are_an_allowlist(make_settings, make_client):
    client = await make_client(make_settings())
    for name in ("../../app.py", "core.py", "redoc.standalone.js", "%2e%2e/core.py"):
        response = await client.get(f"/api/docs/assets/{name}")
        assert response.status_code == 404, name
