"""The Azure OpenAI test double, exercised with the real openai SDK (3.57, on httpx2)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time

import httpx2
import openai
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI

from tests.aoai_double import AzureOpenAIDouble, Reply, schema_errors

API_VERSION = "2024-10-21"
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
PROMPT = "Describe the image for an accessibility caption, please."


# This module makes invalid requests on purpose, so its ``aoai`` (on the session's double from conftest)
# does not assert ``validation_errors == []`` on teardown the way the shared one does.
@pytest.fixture
def aoai(aoai_double_server):
    aoai_double_server.reset()
    yield aoai_double_server


def vision_messages(*urls: str, detail: str = "high", prompt: str = PROMPT) -> list[dict]:
    parts = [{"type": "text", "text": prompt}]
    parts += [{"type": "image_url", "image_url": {"url": url, "detail": detail}} for url in urls]
    return [{"role": "system", "content": "You describe images."}, {"role": "user", "content": parts}]


def azure_client(double: AzureOpenAIDouble, **kwargs) -> AsyncAzureOpenAI:
    kwargs.setdefault("api_key", double.api_key)
    kwargs.setdefault("max_retries", 0)
    return AsyncAzureOpenAI(azure_endpoint=double.endpoint, api_version=API_VERSION, **kwargs)


CHAT_PATH = "/openai/deployments/gpt-4o/chat/completions"


def post_raw(double: AzureOpenAIDouble, body: object, *, path: str = CHAT_PATH, params: dict | None = None,
             headers: dict | None = None, timeout: float = 10) -> httpx2.Response:
    """POST with raw httpx2 (no SDK), by default a well-formed Azure call with the right key."""
    params = {"api-version": API_VERSION} if params is None else params
    headers = {"api-key": double.api_key} if headers is None else headers
    return httpx2.post(double.endpoint + path, params=params, headers=headers, json=body, timeout=timeout)


# ---------------------------------------------------------------- happy paths


async def test_valid_vision_request_with_async_azure_client(aoai):
    async with azure_client(aoai) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o", messages=vision_messages(PNG_URL), max_tokens=300)

    assert aoai.validation_errors == []
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == f"Test double analysis of 1 image(s) at detail=high: {PROMPT[:40]}"
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.object == "chat.completion"
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > 765  # a high-detail image costs tokens
    prompt_filter = completion.model_extra["prompt_filter_results"][0]["content_filter_results"]
    assert prompt_filter["hate"] == {"filtered": False, "severity": "safe"}
    assert choice.model_extra["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}

    (request,) = aoai.requests
    assert request.path == "/openai/deployments/gpt-4o/chat/completions"
    assert request.deployment == "gpt-4o" and request.mode == "azure" and request.status == 200
    assert request.api_version == API_VERSION
    assert request.auth == "api-key" and request.headers["api-key"] == "test-key"
    assert "authorization" not in request.headers
    assert request.body["max_tokens"] == 300 and request.body["model"] == "gpt-4o"
    assert request.text == PROMPT
    assert [(image.url, image.detail) for image in request.images] == [(PNG_URL, "high")]
    assert request.images[0].data == PNG_1X1
    # What openai 3.57 sends on the wire.
    assert request.headers["user-agent"] == f"AsyncAzureOpenAI/Python {openai.__version__}"
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.headers["content-type"] == "application/json"


def test_sync_azure_client_and_response_headers(aoai):
    aoai.enqueue(Reply.ok("A red bicycle.", prompt_tokens=900, completion_tokens=4))
    with AzureOpenAI(azure_endpoint=aoai.endpoint, api_version=API_VERSION, api_key=aoai.api_key) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="vision", messages=vision_messages(PNG_URL, detail="low"), max_tokens=50)
    completion = raw.parse()
    assert completion.choices[0].message.content == "A red bicycle."
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (900, 4)
    assert int(raw.headers["x-ratelimit-remaining-requests"]) < aoai.ratelimit_requests
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == aoai.ratelimit_tokens - 904
    assert raw.headers["apim-request-id"]
    assert aoai.last_request.deployment == "vision"
    assert aoai.validation_errors == []


@pytest.mark.parametrize(
    "reply", [Reply.ok(), Reply.truncated("partial"), Reply.content_filter_completion(), Reply.ok("x")],
    ids=["default", "truncated", "filtered", "scripted"])
def test_completions_validate_against_the_spec(aoai, reply):
    aoai.enqueue(reply)
    response = post_raw(aoai, {"messages": vision_messages(PNG_URL), "n": 2})
    assert response.status_code == 200
    body = response.json()
    assert schema_errors("createChatCompletionResponse", body) == []
    assert len(body["choices"]) == 2


def test_schema_errors_reports_problems():
    assert schema_errors("createChatCompletionResponse", {"object": "chat.completion"})
    errors = schema_errors("createChatCompletionRequest", {"messages": [{"role": "user", "content": 7}]})
    assert errors == ["messages[0].content: 7 is not of type 'string'"]


async def test_openai_compatible_v1_route_with_model_name(aoai):
    async with AsyncOpenAI(base_url=aoai.openai_base_url, api_key=aoai.api_key, max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=vision_messages(PNG_URL))
    assert completion.choices[0].message.content.startswith("Test double analysis of 1 image(s)")
    request = aoai.last_request
    assert (request.path, request.mode) == ("/v1/chat/completions", "openai")
    assert request.deployment == "gpt-4o-mini"
    assert request.headers["authorization"] == "Bearer test-key"
    assert aoai.validation_errors == []


async def test_openai_compatible_route_checks_key_and_body(aoai):
    async with AsyncOpenAI(base_url=aoai.openai_base_url, api_key="wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert aoai.validation_errors == []
    response = httpx2.post(aoai.openai_base_url + "/chat/completions", json={"messages": vision_messages()},
                           headers={"Authorization": f"Bearer {aoai.api_key}"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"
    assert len(aoai.validation_errors) == 1


async def test_bearer_token_from_azure_ad_token_provider(aoai):
    calls = []

    async def token_provider() -> str:
        calls.append(1)
        return "entra-token-123"

    async with azure_client(aoai, api_key=None, azure_ad_token_provider=token_provider) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert completion.choices[0].finish_reason == "stop"
    assert calls == [1]
    request = aoai.last_request
    assert request.auth == "bearer" and request.headers["authorization"] == "Bearer entra-token-123"
    assert "api-key" not in request.headers
    assert aoai.validation_errors == []

    aoai.bearer_token = "another-token"  # the double can be told which token to expect
    try:
        async with azure_client(aoai, api_key=None, azure_ad_token="entra-token-123") as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    finally:
        aoai.bearer_token = None


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"max_tokens": 10}, "body: 'messages' is a required property"),
        ({"messages": vision_messages(PNG_URL, detail="ultra")},
         "messages[1].content[1].image_url.detail: 'ultra' is not one of ['auto', 'low', 'high']"),
        ({"messages": [{"role": "robot", "content": "hi"}]},
         "messages[0].role: 'robot' is not one of ['system', 'user', 'assistant', 'tool', 'function']"),
        ({"messages": []}, "messages: [] should be non-empty"),
        ({"messages": vision_messages(), "temperature": 3},
         "temperature: 3 is greater than the maximum of 2"),
        ({"messages": vision_messages(), "max_tokens": None, "presence_penalty": None, "stop": None}, None),
    ],
    ids=["no-messages", "detail-ultra", "role-robot", "empty-messages", "temperature", "nullable-ok"],
)
def test_request_body_is_validated_against_the_spec(aoai, body, expected):
    response = post_raw(aoai, body)
    if expected is None:
        assert response.status_code == 200
        assert aoai.validation_errors == []
        return
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest" and expected in error["message"]
    assert schema_errors("errorResponse", response.json()) == []
    (problem,) = aoai.validation_errors
    assert expected in problem and problem.startswith("POST /openai/deployments/gpt-4o/chat/completions: ")
    assert aoai.last_request.status == 400 and aoai.last_request.errors


async def test_explicit_none_is_sent_as_null_and_accepted(aoai):
    """The SDK sends ``max_tokens=None`` as ``null``; the spec's allOf would reject it without the fix."""
    async with azure_client(aoai) as client:
        await client.chat.completions.create(
            model="gpt-4o", messages=vision_messages(PNG_URL), max_tokens=None, presence_penalty=None)
    assert aoai.last_request.body["max_tokens"] is None
    assert aoai.validation_errors == []


async def test_sdk_does_not_validate_client_side_the_double_does(aoai):
    async with azure_client(aoai) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="gpt-4o", messages=vision_messages(PNG_URL, detail="ultra"))
    assert caught.value.code == "BadRequest"
    assert caught.value.param == "messages[1].content[1].image_url.detail"
    assert len(aoai.validation_errors) == 1


async def test_wrong_api_key_is_401_in_azure_shape(aoai):
    async with azure_client(aoai, api_key="not-the-key") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert caught.value.status_code == 401 and caught.value.code == "401"
    assert "Access denied" in caught.value.body["message"]
    assert aoai.validation_errors == []  # a wrong key is a scenario, not a malformed request
    assert aoai.last_request.status == 401


def test_missing_credentials_are_401_and_recorded(aoai):
    response = post_raw(aoai, {"messages": vision_messages()}, headers={})
    assert response.status_code == 401
    assert any("no credentials" in error for error in aoai.validation_errors)


def test_missing_api_version_is_rejected_and_recorded(aoai):
    response = post_raw(aoai, {"messages": vision_messages()}, params={})
    assert response.status_code == 400
    assert "api-version" in response.json()["error"]["message"]
    assert any("api-version" in error for error in aoai.validation_errors)


def test_unknown_api_version_and_unknown_path(aoai):
    body = {"messages": vision_messages()}
    assert post_raw(aoai, body, params={"api-version": "2099-01-01"}).status_code == 400
    response = post_raw(aoai, body, path="/openai/deployments/gpt-4o/embeddingz")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}
    assert len(aoai.validation_errors) == 2


def test_streaming_is_not_supported(aoai):
    response = post_raw(aoai, {"messages": vision_messages(), "stream": True})
    assert response.status_code == 400 and "stream" in aoai.validation_errors[0]


def test_unknown_deployment_when_deployments_are_configured(aoai_double_server):
    double = aoai_double_server
    double.reset()
    double.deployments = {"gpt-4o"}
    try:
        body = {"messages": vision_messages()}
        response = post_raw(double, body, path="/openai/deployments/nope/chat/completions")
        assert response.status_code == 404 and response.json()["error"]["code"] == "DeploymentNotFound"
        assert post_raw(double, {"messages": vision_messages()}).status_code == 200
    finally:
        double.deployments = None


async def test_more_than_ten_images_are_rejected(aoai):
    async with azure_client(aoai) as client:
        ok = await client.chat.completions.create(model="gpt-4o", messages=vision_messages(*[PNG_URL] * 10))
        assert ok.choices[0].message.content.startswith("Test double analysis of 10 image(s)")
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(*[PNG_URL] * 11))
    assert "Too many images in request: 11. Max is 10." in caught.value.message
    (problem,) = aoai.validation_errors
    assert "Too many images" in problem


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("data:image/png;base64,not base64!!", "not valid base64"),
        ("data:text/plain;base64," + base64.b64encode(b"hello").decode(), "unsupported image MIME type"),
        ("data:image/png;base64," + base64.b64encode(b"not an image").decode(), "not a PNG, JPEG, GIF"),
        ("ftp://example.com/cat.png", "invalid image URL"),
    ],
    ids=["bad-base64", "text-mime", "not-image-bytes", "ftp"],
)
def test_bad_image_data_urls_are_rejected(aoai, url, expected):
    response = post_raw(aoai, {"messages": vision_messages(url)})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].content[1].image_url.url"
    (problem,) = aoai.validation_errors
    assert expected in problem


def test_https_image_urls_are_accepted(aoai):
    assert post_raw(aoai, {"messages": vision_messages("https://example.com/cat.jpg")}).status_code == 200
    assert aoai.validation_errors == []


def test_image_size_limit_is_20_mb_decoded(aoai):
    limit = 20 * 1024 * 1024
    png = b"\x89PNG\r\n\x1a\n"
    at_limit = "data:image/png;base64," + base64.b64encode(png + bytes(limit - len(png))).decode()
    over = "data:image/png;base64," + base64.b64encode(png + bytes(limit + 1 - len(png))).decode()
    assert post_raw(aoai, {"messages": vision_messages(at_limit)}).status_code == 200
    assert aoai.validation_errors == []
    response = post_raw(aoai, {"messages": vision_messages(over)})
    assert response.status_code == 400
    assert f"image is {limit + 1} bytes" in aoai.validation_errors[0]


# ---------------------------------------------------------------- scripted misbehaviour


async def test_sdk_retry_honours_retry_after_ms(aoai, caplog):
    aoai.enqueue_many(Reply.throttled(retry_after_ms=10), times=2)
    caplog.set_level(logging.INFO, logger="openai._base_client")
    async with azure_client(aoai, max_retries=2) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert completion.choices[0].finish_reason == "stop"
    assert [r.status for r in aoai.requests] == [429, 429, 200]
    assert [r.headers["x-stainless-retry-count"] for r in aoai.requests] == ["0", "1", "2"]
    # The waits the SDK chose (it logs each): retry-after says 1 s and backoff would be jittered, so
    # exactly 10 ms twice means it read retry-after-ms.
    waits = [r.args[0] for r in caplog.records if r.getMessage().startswith("Retrying request in")]
    assert waits == [0.01, 0.01]
    assert aoai.validation_errors == []


async def test_server_errors_carry_a_short_retry_after_ms_so_tests_never_sit_through_backoff(aoai, caplog):
    aoai.enqueue(Reply.server_error(503))
    caplog.set_level(logging.INFO, logger="openai._base_client")
    async with azure_client(aoai, max_retries=1) as client:
        await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert aoai.requests[0].status == 503
    waits = [r.args[0] for r in caplog.records if r.getMessage().startswith("Retrying request in")]
    assert waits == [int(Reply.server_error().headers["retry-after-ms"]) / 1000]


async def test_throttling_beyond_max_retries_raises_rate_limit_error(aoai):
    aoai.enqueue_many(Reply.throttled(retry_after_ms=10), times=3)
    async with azure_client(aoai, max_retries=1) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert caught.value.code == "429"
    assert caught.value.response.headers["retry-after-ms"] == "10"
    assert caught.value.response.headers["retry-after"] == "1"
    assert len(aoai.requests) == 2 and aoai.pending_replies == 1


async def test_server_error_then_success(aoai):
    aoai.enqueue(Reply.server_error(500))
    async with azure_client(aoai, max_retries=1) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert completion.choices[0].finish_reason == "stop"
    assert [r.status for r in aoai.requests] == [500, 200]


async def test_server_error_without_retries(aoai):
    aoai.enqueue(Reply.server_error(503))
    async with azure_client(aoai) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert caught.value.status_code == 503 and caught.value.code == "ServiceUnavailable"


async def test_timeout_raises_api_timeout_error(aoai):
    aoai.enqueue(Reply.timeout(seconds=600))  # far past the test's own timeout: only the client's can end it
    async with azure_client(aoai, timeout=0.2) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
        # The double keeps serving while the stalled handler sleeps.
        completion = await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert completion.choices[0].finish_reason == "stop"
    assert len(aoai.requests) == 2


async def test_malformed_json_escapes_the_sdk_as_json_decode_error(aoai):
    """openai 3.57 does not wrap it: a 200 with broken JSON raises ``json.JSONDecodeError`` (a ValueError),
    not an ``openai.APIError`` — callers that only catch ``openai.APIError`` let it through."""
    aoai.enqueue(Reply.malformed())
    async with azure_client(aoai) as client:
        with pytest.raises(json.JSONDecodeError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert not isinstance(caught.value, openai.APIError)
    assert len(aoai.requests) == 1  # not retried


async def test_malformed_schema_gives_a_completion_without_choices(aoai):
    """Without ``_strict_response_validation`` the SDK returns a ChatCompletion with ``choices=None``;
    with it, the SDK raises ``openai.APIResponseValidationError``."""
    aoai.enqueue(Reply.malformed_schema())
    async with azure_client(aoai) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    assert completion.choices is None and completion.usage is None
    with pytest.raises(TypeError):
        completion.choices[0]

    aoai.enqueue(Reply.malformed_schema())
    async with azure_client(aoai, _strict_response_validation=True) as client:
        with pytest.raises(openai.APIResponseValidationError):
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))


async def test_prompt_content_filter_is_a_bad_request_in_the_live_shape(aoai):
    aoai.enqueue(Reply.content_filter_prompt(category="violence"))
    async with azure_client(aoai, max_retries=2) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    error = caught.value
    assert error.code == "content_filter" and error.param == "prompt"
    assert error.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    filter_result = error.body["innererror"]["content_filter_result"]
    assert filter_result["violence"] == {"filtered": True, "severity": "high"}
    assert len(aoai.requests) == 1  # 400 is never retried
    assert aoai.validation_errors == []


async def test_completion_content_filter(aoai):
    aoai.enqueue(Reply.content_filter_completion(category="sexual"))
    async with azure_client(aoai) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None
    assert choice.model_extra["content_filter_results"]["sexual"] == {"filtered": True, "severity": "high"}


async def test_truncated_completion(aoai):
    aoai.enqueue(Reply.truncated("partial"))
    async with azure_client(aoai) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o", messages=vision_messages(PNG_URL), max_tokens=16)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "partial"
    assert completion.usage.completion_tokens == 16


async def test_queue_then_responder_then_default_reply(aoai):
    aoai.enqueue(Reply.ok("queued"))
    aoai.set_responder(lambda request: Reply.ok(f"echo: {request.text}") if "echo" in request.text else None)
    aoai.default_reply = Reply.ok("default")
    async with azure_client(aoai) as client:

        async def ask(prompt: str) -> str:
            completion = await client.chat.completions.create(
                model="m", messages=vision_messages(prompt=prompt))
            return completion.choices[0].message.content

        assert [await ask("echo me"), await ask("echo me"), await ask("plain")] == [
            "queued", "echo: echo me", "default"]
    aoai.reset()
    assert (aoai.requests, aoai.validation_errors) == ([], [])
    assert (aoai.pending_replies, aoai.default_reply) == (0, None)


async def test_responder_exceptions_become_500_and_are_recorded(aoai):
    aoai.set_responder(lambda request: 1 / 0)
    async with azure_client(aoai) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o", messages=vision_messages())
    assert "ZeroDivisionError" in aoai.validation_errors[0]


def test_rejected_requests_do_not_consume_scripted_replies(aoai):
    aoai.enqueue(Reply.ok("kept"))
    assert post_raw(aoai, {"messages": []}).status_code == 400
    assert aoai.pending_replies == 1
    response = post_raw(aoai, {"messages": vision_messages()})
    assert response.json()["choices"][0]["message"]["content"] == "kept"


async def test_concurrent_requests_each_get_one_scripted_reply(aoai):
    expected = sorted(f"reply {i}" for i in range(20))
    aoai.enqueue(*[Reply.ok(text) for text in expected])
    async with azure_client(aoai) as client:
        completions = await asyncio.gather(*[
            client.chat.completions.create(model="gpt-4o", messages=vision_messages(PNG_URL))
            for _ in range(20)])
    assert sorted(c.choices[0].message.content for c in completions) == expected
    assert len(aoai.requests) == 20 and aoai.validation_errors == []


# ---------------------------------------------------------------- lifecycle


def test_start_stop_leaks_no_threads():
    before = set(threading.enumerate())
    double = AzureOpenAIDouble(api_key="k").start()
    # A stalled handler must not hold up stop(): it stalls past the test's own timeout, so stop()
    # returning at all shows the stall was cut short.
    double.enqueue(Reply.timeout(600))
    with pytest.raises(httpx2.TimeoutException):
        post_raw(double, {"messages": vision_messages()}, headers={"api-key": "k"}, timeout=0.2)
    double.stop()
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(httpx2.ConnectError):
        post_raw(double, {"messages": vision_messages()})
    double.stop()  # idempotent


def test_stalled_request_is_cut_short_by_stop():
    double = AzureOpenAIDouble().start()
    double.enqueue(Reply.timeout(600))  # past the test's own timeout: only stop() can end it in time
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(post_raw(double, {"messages": vision_messages()}).status_code))
    worker.start()
    while not double.requests:
        time.sleep(0.01)
    double.stop()
    worker.join()
    assert result == [200]


def test_context_manager_and_urls():
    with AzureOpenAIDouble() as double:
        assert double.endpoint == double.base_url == f"http://127.0.0.1:{double.port}"
        assert double.openai_base_url == f"http://127.0.0.1:{double.port}/v1"
        assert post_raw(double, {"messages": vision_messages()}).status_code == 200
