"""Fault injection through the real openai SDK and our provider against the double.

Each test scripts what the double answers (429s with and without retry headers, 5xx, stalls past the
read timeout, a connection dropped mid-response, bodies that are not a chat completion) and checks what
the one retry layer (:mod:`shared.quota.retry`) and the limiter (:mod:`shared.quota.limiter`) make of
it: how many requests the service saw, when, and what the caller got. Pauses and timeouts are short
(tenths of a second; the whole-second ``retry-after`` and the default pause are one second), so every
test takes a few seconds at most; assertions are about behaviour (order, counts, errors), not speed.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import replace

import httpx
import openai
import pytest
from PIL import Image

from shared.errors import ModelBadResponse, ModelThrottled, ModelUnavailable
from shared.imaging import prepare_image
from shared.providers.base import VisionRequest
from shared.providers.factory import build_provider
from shared.providers.openai_chat import AzureOpenAIProvider
from shared.quota.deadline import deadline_in
from shared.quota.limiter import DeploymentLimiter
from tests.aoai_double import Reply
from tests.conftest import encode
from tests.quota_double import AzureQuota


@pytest.fixture(scope="module")
def prepared():
    return prepare_image(encode(Image.new("RGB", (64, 48), "teal"), "PNG"), "low")


def request_for(image, max_tokens: int = 30) -> VisionRequest:
    return VisionRequest(prompt="What colour?", images=(image,), max_tokens=max_tokens)


class Script:
    """A responder replaying ``replies`` in order (then successes), noting when each request arrived."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), reply kind)
        self._lock = threading.Lock()

    def __call__(self, request) -> Reply:
        with self._lock:
            reply = self.replies.pop(0) if self.replies else Reply.ok()
            self.arrivals.append((time.monotonic(), reply.kind))
            return reply

    def times(self, kind: str) -> list[float]:
        return [at for at, seen in self.arrivals if seen == kind]


async def complete(provider, request: VisionRequest, *, deadline: float | None = None):
    with deadline_in(deadline):
        return await provider.complete(request)


async def complete_all(provider, requests: list[VisionRequest], *, deadline: float | None = None) -> list:
    """Run the requests concurrently through ``provider``, then close it; each result or the error it raised."""
    try:
        return await asyncio.gather(*(complete(provider, r, deadline=deadline) for r in requests),
                                    return_exceptions=True)
    finally:
        await provider.aclose()


def only_ms(reply: Reply) -> Reply:
    return replace(reply, headers={k: v for k, v in reply.headers.items() if k != "retry-after"})


def only_seconds(reply: Reply) -> Reply:
    return replace(reply, headers={k: v for k, v in reply.headers.items() if k != "retry-after-ms"})


def no_retry_header(reply: Reply) -> Reply:
    return replace(reply, headers={k: v for k, v in reply.headers.items() if not k.startswith("retry-after")})


# --- throttling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "pause"),
    [(only_ms, 0.3), (only_seconds, 1.0), (no_retry_header, 1.0)],  # no header: the limiter's 1 s default
    ids=["retry-after-ms", "retry-after", "no-retry-header"],
)
async def test_a_burst_of_429s_pauses_every_caller_once_and_all_resume(make_settings, aoai, prepared, shape, pause):
    """Six callers at once all get a 429: each waits out the one pause, retries once, and succeeds in time."""
    callers = 6
    script = Script(*[shape(Reply.throttled(retry_after_ms=300))] * callers)
    aoai.set_responder(script)
    results = await complete_all(build_provider(make_settings(VISION_MODEL_MAX_RETRIES="0")),
                                 [request_for(prepared)] * callers, deadline=5)
    assert [type(r).__name__ for r in results] == ["Completion"] * callers
    assert all((r.call["attempts"], r.call["throttled"]) == (2, 1) for r in results)
    # No stampede: one refused try and one retry per caller, and no retry inside the pause.
    refused, retried = script.times("throttled"), script.times("ok")
    assert (len(refused), len(retried)) == (callers, callers)
    assert min(retried) >= max(refused)
    assert min(retried) >= min(refused) + pause - 0.01
    assert all(r.headers["x-stainless-retry-count"] == "0" for r in aoai.requests)  # the SDK's retries are off


async def test_throttled_past_the_deadline_is_model_throttled_with_the_services_retry_after(
        make_settings, aoai, prepared):
    aoai.set_responder(script := Script(Reply.throttled(retry_after_ms=5_000)))
    [result] = await complete_all(build_provider(make_settings()), [request_for(prepared)], deadline=0.5)
    assert isinstance(result, ModelThrottled)
    assert result.retry_after == pytest.approx(5.0, abs=0.5)
    assert len(script.arrivals) == 1  # it did not call again inside the pause


async def test_a_queue_longer_than_the_deadline_is_model_throttled_before_any_request(make_settings, aoai, prepared):
    """The limiter's own refusal: the quota's window is full for longer than the deadline, so the caller hears
    at once, with when to come back, and the service never sees the call."""
    aoai.set_responder(script := Script())
    provider = build_provider(make_settings(VISION_TPM_LIMIT="6000"))  # 1,000 tokens in any 10 s
    try:
        first = await provider.complete(request_for(prepared, max_tokens=800))
        with deadline_in(0.5), pytest.raises(ModelThrottled) as refused:
            await provider.complete(request_for(prepared, max_tokens=800))
    finally:
        await provider.aclose()
    assert first.text
    assert refused.value.retry_after > 5  # the first call leaves the window about 10 s after it was sent
    assert len(script.arrivals) == 1


# --- server errors, timeouts, resets ---------------------------------------------------------------


async def test_server_errors_then_success_back_off_a_bounded_number_of_times(make_settings, aoai, prepared):
    script = Script(Reply.server_error(500, retry_after_ms=200), Reply.server_error(503, retry_after_ms=200))
    aoai.set_responder(script)
    [result] = await complete_all(build_provider(make_settings(VISION_MODEL_MAX_RETRIES="2")), [request_for(prepared)])
    assert result.text and result.call["attempts"] == 3
    arrivals = [at for at, _ in script.arrivals]
    assert [kind for _, kind in script.arrivals] == ["server_error", "server_error", "ok"]
    # Each retry waits at least the service's retry-after-ms (the backoff's jitter may add to it).
    assert all(later - earlier >= 0.2 - 0.01 for earlier, later in itertools.pairwise(arrivals))


async def test_server_errors_beyond_the_retries_are_model_unavailable(make_settings, aoai, prepared):
    script = Script(Reply.server_error(500), Reply.server_error(503), Reply.server_error(500))
    aoai.set_responder(script)
    [result] = await complete_all(build_provider(make_settings(VISION_MODEL_MAX_RETRIES="1")), [request_for(prepared)])
    assert isinstance(result, ModelUnavailable)
    assert isinstance(result.__cause__, openai.InternalServerError)
    assert len(script.arrivals) == 2  # the first try and one retry, never the third


def provider_with_read_timeout(aoai, seconds: float, *, max_retries: int) -> AzureOpenAIProvider:
    """Our provider as the factory builds it (SDK retries off), with a read timeout shorter than settings allow."""
    client = openai.AsyncAzureOpenAI(azure_endpoint=aoai.endpoint, api_key=aoai.api_key, api_version="2024-10-21",
                                     timeout=httpx.Timeout(seconds, connect=1.0), max_retries=0)
    return AzureOpenAIProvider(client, deployment="gpt-4o", auth="key", limiter=DeploymentLimiter("gpt-4o"),
                               max_retries=max_retries)


async def test_a_read_timeout_is_retried_then_succeeds(aoai, prepared):
    script = Script(Reply.timeout(1.0))  # stalls past the client's 0.3 s read timeout
    aoai.set_responder(script)
    [result] = await complete_all(provider_with_read_timeout(aoai, 0.3, max_retries=1), [request_for(prepared)])
    assert result.text and result.call["attempts"] == 2
    assert [kind for _, kind in script.arrivals] == ["timeout", "ok"]


async def test_read_timeouts_beyond_the_retries_are_model_unavailable(aoai, prepared):
    script = Script(Reply.timeout(1.0), Reply.timeout(1.0), Reply.timeout(1.0))
    aoai.set_responder(script)
    [result] = await complete_all(provider_with_read_timeout(aoai, 0.3, max_retries=1), [request_for(prepared)])
    assert isinstance(result, ModelUnavailable)
    assert isinstance(result.__cause__, openai.APITimeoutError)
    assert len(script.arrivals) == 2


async def test_a_connection_dropped_mid_response_is_retried(make_settings, aoai, prepared):
    script = Script(Reply.connection_reset())
    aoai.set_responder(script)
    [result] = await complete_all(build_provider(make_settings(VISION_MODEL_MAX_RETRIES="2")), [request_for(prepared)])
    assert result.text and result.call["attempts"] == 2
    assert [kind for _, kind in script.arrivals] == ["connection_reset", "ok"]


async def test_connections_dropped_beyond_the_retries_are_model_unavailable(make_settings, aoai, prepared):
    script = Script(*[Reply.connection_reset()] * 3)
    aoai.set_responder(script)
    [result] = await complete_all(build_provider(make_settings(VISION_MODEL_MAX_RETRIES="1")), [request_for(prepared)])
    assert isinstance(result, ModelUnavailable)
    assert isinstance(result.__cause__, openai.APIConnectionError)
    assert type(result.__cause__.__cause__).__name__ == "RemoteProtocolError"  # the body was cut short
    assert len(script.arrivals) == 2


# --- answers that are not a chat completion ------------------------------------------------------


@pytest.mark.parametrize("reply", [Reply.malformed(), Reply.malformed_schema()], ids=["not-json", "not-a-completion"])
async def test_a_malformed_body_is_final_and_never_retried(make_settings, aoai, prepared, reply):
    script = Script(reply)
    aoai.set_responder(script)
    [result] = await complete_all(build_provider(make_settings(VISION_MODEL_MAX_RETRIES="3")), [request_for(prepared)])
    assert isinstance(result, ModelBadResponse)
    assert len(script.arrivals) == 1


# --- one budget per deployment ---------------------------------------------------------------------


async def test_concurrent_tasks_through_two_providers_draw_on_one_budget(make_settings, aoai, prepared):
    """Twenty tasks through two providers for the same deployment: together they never ask for more than the
    quota's window holds, so the service refuses none; those that do not fit hear so before their deadline."""
    quota = AzureQuota(aoai, tpm=60_000)  # 10K tokens in any 10 s, as Azure counts them
    aoai.set_responder(quota)
    settings = make_settings(VISION_TPM_LIMIT="60000")
    providers = [build_provider(settings), build_provider(settings)]
    request = request_for(prepared, max_tokens=800)
    try:
        outcomes = await asyncio.gather(*(complete(providers[i % 2], request, deadline=1.0) for i in range(20)),
                                        return_exceptions=True)
    finally:
        for provider in providers:
            await provider.aclose()
    answered = [r for r in outcomes if not isinstance(r, Exception)]
    refused = [r for r in outcomes if isinstance(r, ModelThrottled)]
    assert len(answered) + len(refused) == 20
    assert quota.throttled == 0  # the service never had to say no
    # As many as one window of the quota holds at our charge estimate, no more: one budget, not one each.
    assert len(quota.admitted) == len(answered) == quota.window_tokens // answered[0].call["charge_estimate"]
    assert sum(charge for _, charge in quota.admitted) <= quota.window_tokens  # one window's worth, not two
    assert all(r.retry_after >= 1 for r in refused)


async def test_a_refused_connection_gives_its_quota_back(make_settings, prepared):
    """A connection refused never reached the service: its reservation is not left counting against the quota."""
    from tests.azurite import free_port

    settings = make_settings(AZURE_OPENAI_ENDPOINT=f"http://127.0.0.1:{free_port()}", VISION_MODEL_MAX_RETRIES="1",
                             VISION_TPM_LIMIT="60000")
    provider = build_provider(settings)
    try:
        with pytest.raises(ModelUnavailable) as caught:
            await provider.complete(VisionRequest(prompt="x", images=(prepared,), max_tokens=10))
    finally:
        await provider.aclose()
    assert caught.value.sent is False
    window = provider.primary.limiter.tokens
    assert window is not None and window.used(time.monotonic()) == 0
