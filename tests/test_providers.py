"""Providers over the real openai SDK against the spec-validating double."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shared.errors import (
    ConfigError,
    ContentFiltered,
    ModelBadResponse,
    ModelError,
    ModelNotConfigured,
    ModelThrottled,
    ModelUnavailable,
)
from shared.providers.base import UnconfiguredProvider, VisionRequest
from shared.providers.factory import build_provider
from tests.aoai_double import Reply
from tests.conftest import complete
from tests.fake_credentials import FakeAsyncCredential


def request_for(image, prompt="What colour?", max_tokens=30):
    return VisionRequest(prompt=prompt, images=(image,), max_tokens=max_tokens)


async def test_azure_request_shape_and_usage(make_settings, aoai, prepared):
    aoai.enqueue(Reply.ok("Teal.", prompt_tokens=99, completion_tokens=2))
    completion = await complete(make_settings(), request_for(prepared))
    assert completion.text == "Teal."
    assert completion.usage.total_tokens == 101
    assert completion.finish_reason == "stop"
    [request] = aoai.requests
    assert request.deployment == "gpt-4o"
    assert request.query["api-version"] == "2024-10-21"
    assert request.headers["api-key"] == aoai.api_key
    [message] = request.body["messages"]
    assert message["role"] == "user"
    text, image = message["content"]
    assert text == {"type": "text", "text": "What colour?"}
    assert image["type"] == "image_url"
    assert image["image_url"]["detail"] == "low"
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert request.body["max_tokens"] == 30
    assert any(name.startswith("x-ratelimit-remaining") for name in completion.rate_limit)


async def test_openai_compatible_server(aoai, prepared):
    from shared.config import Settings

    settings = Settings.from_mapping(
        {"OPENAI_BASE_URL": aoai.openai_base_url, "OPENAI_MODEL": "llava", "OPENAI_API_KEY": aoai.api_key}
    )
    completion = await complete(settings, request_for(prepared))
    assert completion.text
    assert aoai.requests[0].body["model"] == "llava"


async def test_entra_id_when_no_key(make_settings, aoai, prepared):
    """Without a key the client awaits an async azure-identity credential for a bearer token (faked: no network)."""
    credential = FakeAsyncCredential()
    settings = make_settings(AZURE_OPENAI_API_KEY="")
    with pytest.raises(ConfigError, match="AZURE_OPENAI_API_KEY"):  # keyless needs the credential handed in
        build_provider(settings)
    provider = build_provider(settings, credential=lambda: credential)
    assert provider.describe()["auth"] == "entra_id"
    try:
        await provider.complete(request_for(prepared))
    finally:
        await provider.aclose()
    assert credential.calls == [("https://cognitiveservices.azure.com/.default",)]
    assert aoai.requests[0].headers["authorization"] == "Bearer entra-token-1"
    assert "api-key" not in aoai.requests[0].headers


@pytest.mark.parametrize(
    ("replies", "error", "retries"),
    [
        ([Reply.server_error(503)] * 3, ModelUnavailable, 2),
        ([Reply.malformed()], ModelBadResponse, 0),
        ([Reply.malformed_schema()], ModelBadResponse, 0),
        ([Reply.content_filter_prompt()], ContentFiltered, 0),
        ([Reply.content_filter_completion()], ContentFiltered, 0),
    ],
)
async def test_errors_are_translated(make_settings, aoai, prepared, replies, error, retries):
    for reply in replies:
        aoai.enqueue(reply)
    with pytest.raises(error) as caught:
        await complete(make_settings(VISION_MODEL_MAX_RETRIES=str(retries)), request_for(prepared))
    if error in (ModelThrottled, ModelUnavailable):
        assert caught.value.__cause__ is not None  # translated at the edge with raise ... from
    assert len(aoai.requests) == retries + 1


async def test_throttling_is_waited_out_and_the_answer_says_what_it_took(make_settings, aoai, prepared):
    """One retry layer: 429s pause the deployment and the call goes through, however many, within the deadline."""
    aoai.enqueue_many(Reply.throttled(retry_after_ms=10), times=4)
    completion = await complete(make_settings(VISION_MODEL_MAX_RETRIES="0"), request_for(prepared))
    assert completion.text
    assert [r.status for r in aoai.requests] == [429, 429, 429, 429, 200]
    assert completion.call["attempts"] == 5 and completion.call["throttled"] == 4
    assert completion.call["charge_estimate"] > 85 + request_for(prepared).max_tokens
    assert aoai.requests[0].headers["x-stainless-retry-count"] == "0"
    assert all(r.headers["x-stainless-retry-count"] == "0" for r in aoai.requests)  # no SDK retries stacked


async def test_throttling_past_the_deadline_is_throttled_with_retry_after(make_settings, aoai, prepared):
    aoai.enqueue(Reply.throttled(retry_after_ms=5000))
    with pytest.raises(ModelThrottled) as caught:
        await complete(make_settings(VISION_HTTP_DEADLINE_SECONDS="1"), request_for(prepared))
    assert caught.value.retry_after == pytest.approx(5.0, abs=0.5)
    assert len(aoai.requests) == 1  # it did not call again inside the pause


async def test_wrong_key_names_the_setting(make_settings, aoai, prepared):
    with pytest.raises(ModelError) as caught:
        await complete(make_settings(AZURE_OPENAI_API_KEY="wrong"), request_for(prepared))
    assert "AZURE_OPENAI_API_KEY" in caught.value.detail
    assert "wrong" not in caught.value.detail


async def test_connection_refused_is_unavailable(make_settings, aoai, prepared):
    from tests.azurite import free_port

    settings = make_settings(AZURE_OPENAI_ENDPOINT=f"http://127.0.0.1:{free_port()}", VISION_MODEL_MAX_RETRIES="0")
    with pytest.raises(ModelUnavailable):
        await complete(settings, request_for(prepared))


async def test_unconfigured_names_the_settings(prepared):
    with pytest.raises(ModelNotConfigured) as caught:
        await UnconfiguredProvider().complete(request_for(prepared))
    assert "AZURE_OPENAI_ENDPOINT" in caught.value.detail


def test_prepared_image_is_a_valid_jpeg(prepared):
    image = Image.open(io.BytesIO(prepared.data))
    assert image.format == "JPEG" and image.size == (512, 384)
