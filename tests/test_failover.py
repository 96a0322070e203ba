"""Fallback deployments and circuit breakers: the breaker as arithmetic, then failover over the real SDK."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials import AccessToken
from PIL import Image

from shared.analysis_options import AnalysisOptions
from shared.errors import ConfigError, ModelBadResponse, ModelUnavailable
from shared.imaging import prepare_image
from shared.providers.base import VisionRequest
from shared.providers.factory import build_provider
from shared.quota.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from shared.services import build_analyzer
from tests.aoai_double import AzureOpenAIDouble, Reply
from tests.conftest import encode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the breaker, as a state machine over a clock ------------------------------------------------


def test_breaker_opens_after_consecutive_failures_only():
    clock = Clock()
    breaker = CircuitBreaker("d", failures=3, cooldown_seconds=10, clock=clock)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()  # a success in between resets the count
    breaker.failed()
    breaker.failed()
    assert breaker.state == CLOSED and breaker.try_acquire()
    breaker.failed()
    assert breaker.state == OPEN and not breaker.try_acquire()
    assert breaker.retry_after() == pytest.approx(10)
    assert breaker.times_opened == 1


def test_after_the_cooldown_exactly_one_probe_goes_through():
    clock = Clock()
    breaker = CircuitBreaker("d", failures=1, cooldown_seconds=10, clock=clock)
    breaker.failed()
    clock.now += 9.9
    assert not breaker.try_acquire()
    clock.now += 0.2
    assert breaker.state == HALF_OPEN
    assert breaker.try_acquire()  # the probe
    assert not breaker.try_acquire()  # everyone else waits for its verdict
    breaker.succeeded()
    assert breaker.state == CLOSED and breaker.try_acquire()


def test_a_failed_probe_rests_the_deployment_for_another_cooldown():
    clock = Clock()
    breaker = CircuitBreaker("d", failures=2, cooldown_seconds=10, clock=clock)
    breaker.failed()
    breaker.failed()
    clock.now += 10
    assert breaker.try_acquire()
    breaker.failed()  # one failure of the probe is enough
    assert breaker.state == OPEN and breaker.retry_after() == pytest.approx(10)
    assert breaker.times_opened == 2


def test_an_abandoned_probe_lets_the_next_caller_probe():
    clock = Clock()
    breaker = CircuitBreaker("d", failures=1, cooldown_seconds=5, clock=clock)
    breaker.failed()
    clock.now += 5
    assert breaker.try_acquire()
    breaker.abandoned()  # the caller was cancelled: no verdict
    assert breaker.try_acquire()


def test_breaker_needs_sane_numbers():
    with pytest.raises(ValueError):
        CircuitBreaker("d", failures=0)


def test_fallback_setting_is_parsed_and_checked(make_settings):
    settings = make_settings(VISION_FALLBACK_DEPLOYMENTS=" gpt-4o-mini , gpt-4o@https://west.openai.azure.com/ ")
    assert settings.fallback_deployments == (("gpt-4o-mini", None), ("gpt-4o", "https://west.openai.azure.com"))
    for bad in ("bad name", "gpt-4o@ftp://x", "a,a"):
        with pytest.raises(ConfigError, match="VISION_FALLBACK_DEPLOYMENTS"):
            make_settings(VISION_FALLBACK_DEPLOYMENTS=bad)


# --- failover over the real openai SDK, against the double -----------------------------------------


@pytest.fixture(scope="module")
def prepared():
    return prepare_image(encode(Image.new("RGB", (320, 240), "navy"), "PNG"), "low")


def request_for(image):
    return VisionRequest(prompt="What colour?", images=(image,), max_tokens=20)


def by_deployment(**replies: Reply):
    """A responder answering each deployment with its own reply, every time."""
    return lambda request: replies[request.deployment]


@pytest.fixture
def settings_with_fallback(make_settings):
    def make(**values: str):
        return make_settings(VISION_FALLBACK_DEPLOYMENTS="gpt-4o-mini", VISION_MODEL_MAX_RETRIES="0", **values)
    return make


async def test_an_unavailable_primary_falls_over_and_the_answer_says_who_answered(settings_with_fallback, aoai,
                                                                                   prepared):
    aoai.set_responder(by_deployment(**{"gpt-4o": Reply.server_error(503), "gpt-4o-mini": Reply.ok("Navy.")}))
    provider = build_provider(settings_with_fallback())
    try:
        completion = await provider.complete(request_for(prepared))
    finally:
        await provider.aclose()
    assert completion.text == "Navy."
    assert completion.deployment == "gpt-4o-mini"
    assert completion.pricing_model == "gpt-4o-mini"  # a deployment named after a model is priced as it
    assert completion.call["skipped"] == [{"deployment": "gpt-4o", "reason": "unavailable"}]
    assert [r.deployment for r in aoai.requests] == ["gpt-4o", "gpt-4o-mini"]


async def test_the_breaker_skips_a_failing_primary_then_probes_it_back(settings_with_fallback, aoai, prepared):
    primary = {"reply": Reply.server_error(500)}
    aoai.set_responder(lambda r: primary["reply"] if r.deployment == "gpt-4o" else Reply.ok("From mini."))
    provider = build_provider(settings_with_fallback(VISION_BREAKER_FAILURES="2",
                                                     VISION_BREAKER_COOLDOWN_SECONDS="1"))
    try:
        for _ in range(4):
            assert (await provider.complete(request_for(prepared))).deployment == "gpt-4o-mini"
        seen = [r.deployment for r in aoai.requests]
        assert seen.count("gpt-4o") == 2  # two failures opened the breaker: calls 3 and 4 skipped it
        assert provider.describe()["breaker"]["state"] == OPEN
        third = await provider.complete(request_for(prepared))
        assert third.call["skipped"] == [{"deployment": "gpt-4o", "reason": "breaker_open"}]

        primary["reply"] = Reply.ok("Primary is back.")
        time.sleep(1.05)  # the cool-down (the breaker reads the monotonic clock)
        probe = await provider.complete(request_for(prepared))
        assert probe.deployment == "gpt-4o" and probe.text == "Primary is back."
        assert provider.describe()["breaker"]["state"] == CLOSED
    finally:
        await provider.aclose()


async def test_with_no_fallback_an_open_breaker_answers_at_once(make_settings, aoai, prepared):
    aoai.set_responder(lambda r: Reply.server_error(503))
    provider = build_provider(make_settings(VISION_MODEL_MAX_RETRIES="0", VISION_BREAKER_FAILURES="2"))
    try:
        for _ in range(2):
            with pytest.raises(ModelUnavailable):
                await provider.complete(request_for(prepared))
        with pytest.raises(ModelUnavailable, match="resting") as caught:
            await provider.complete(request_for(prepared))
    finally:
        await provider.aclose()
    assert len(aoai.requests) == 2  # the third call never reached the service
    assert 1 <= caught.value.retry_after <= 30


async def test_a_refused_request_is_the_answer_and_never_tried_elsewhere(settings_with_fallback, aoai, prepared):
    aoai.set_responder(by_deployment(**{"gpt-4o": Reply.malformed(), "gpt-4o-mini": Reply.ok()}))
    provider = build_provider(settings_with_fallback())
    try:
        with pytest.raises(ModelBadResponse):
            await provider.complete(request_for(prepared))
    finally:
        await provider.aclose()
    assert [r.deployment for r in aoai.requests] == ["gpt-4o"]
    assert provider.describe()["breaker"]["consecutive_failures"] == 0


async def test_throttling_past_the_deadline_spills_over_without_blaming_the_primary(settings_with_fallback, aoai,
                                                                                     prepared):
    aoai.set_responder(by_deployment(**{"gpt-4o": Reply.throttled(retry_after_ms=60_000),
                                        "gpt-4o-mini": Reply.ok("Spilled over.")}))
    provider = build_provider(settings_with_fallback(VISION_HTTP_DEADLINE_SECONDS="5"))
    try:
        first = await provider.complete(request_for(prepared))
        second = await provider.complete(request_for(prepared))  # the primary is paused: not even tried
    finally:
        await provider.aclose()
    assert first.text == second.text == "Spilled over."
    assert first.call["skipped"] == [{"deployment": "gpt-4o", "reason": "throttled"}]
    assert [r.deployment for r in aoai.requests] == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    assert provider.describe()["breaker"]["state"] == CLOSED


async def test_a_fallback_in_another_region_is_called_keyless(make_settings, aoai, prepared):
    tokens = []

    class FakeCredential:
        def get_token(self, *scopes, **kwargs):
            tokens.append(scopes)
            return AccessToken("entra-token", int(time.time()) + 3600)

    with AzureOpenAIDouble() as west:
        west.enqueue(Reply.ok("From the west."))
        aoai.enqueue(Reply.server_error(503))
        settings = make_settings(VISION_FALLBACK_DEPLOYMENTS=f"gpt-4o@{west.endpoint}", VISION_MODEL_MAX_RETRIES="0")
        provider = build_provider(settings, credential=FakeCredential)
        try:
            completion = await provider.complete(request_for(prepared))
        finally:
            await provider.aclose()
        assert completion.text == "From the west."
        assert west.requests[0].headers["authorization"] == "Bearer entra-token"
        assert aoai.requests[0].headers["api-key"] == aoai.api_key  # the primary keeps its local key
        assert west.validation_errors == []
    assert provider.describe()["fallbacks"][0]["deployment"] == "gpt-4o"


async def test_a_fallback_answer_is_cached_as_the_fallback_model(make_settings, cache_settings, aoai, corpus):
    """Served as gpt-4o-mini's answer, it never comes back as gpt-4o's: the primary is asked once it is up."""
    state = {"primary": Reply.server_error(503)}
    aoai.set_responder(lambda r: state["primary"] if r.deployment == "gpt-4o" else Reply.ok("Mini says."))
    settings = make_settings(VISION_FALLBACK_DEPLOYMENTS="gpt-4o-mini", VISION_MODEL_MAX_RETRIES="0",
                             VISION_LOCAL_FALLBACK="off", **cache_settings)
    data = (corpus / "coffee.png").read_bytes()
    options = AnalysisOptions(prompt="What is this?", detail="low")
    analyzer = build_analyzer(settings)
    try:
        degraded = await analyzer.analyze(data, options)
        state["primary"] = Reply.ok("Primary says.")
        fresh = await analyzer.analyze(data, options)
        again = await analyzer.analyze(data, options)
    finally:
        await analyzer.aclose()
    assert (degraded["deployment"], degraded["analysis"], degraded["cached"]) == ("gpt-4o-mini", "Mini says.", False)
    assert degraded["estimated_cost_usd"] < fresh["estimated_cost_usd"]  # priced as the cheaper model
    assert (fresh["deployment"], fresh["analysis"], fresh["cached"]) == ("gpt-4o", "Primary says.", False)
    assert (again["deployment"], again["cached"]) == ("gpt-4o", True)
