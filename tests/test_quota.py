"""The quota limiter's arithmetic and queueing, on a simulated clock (no real time passes)."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import ModelThrottled
from shared.quota.bucket import QuotaWindow
from shared.quota.charge import estimate_charge
from shared.quota.limiter import DeploymentLimiter, Limiter, default_rpm


class SimulatedClock:
    """A monotonic clock that moves only when a waiter sleeps: sleeping N seconds jumps to the earliest wake-up."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def test_window_admits_one_windows_worth_in_any_ten_seconds():
    window = QuotaWindow(60_000)
    assert window.capacity == 10_000
    assert window.wait_time(10_000, now=0) == 0
    window.take(6_000, now=0)
    window.take(4_000, now=4)
    assert window.wait_time(2_000, now=5) == pytest.approx(5.0)  # the 6K of t=0 leaves at t=10
    assert window.wait_time(5_000, now=5) == pytest.approx(5.0)
    assert window.wait_time(7_000, now=5) == pytest.approx(9.0)  # both must leave
    # A charge bigger than a window waits for an empty window, then goes: delayed, never refused forever.
    assert window.wait_time(25_000, now=5) == pytest.approx(9.0)
    assert window.wait_time(25_000, now=14) == 0


def test_window_trusts_the_service_when_it_reports_less_left():
    window = QuotaWindow(60_000)
    window.observe_remaining(12_000, now=0)  # 12K per minute left = 2K in our 10 s window
    assert window.used(0) == pytest.approx(8_000)
    window.observe_remaining(600_000, now=0)  # never raises our count
    assert window.used(0) == pytest.approx(8_000)
    assert window.wait_time(3_000, now=1) == pytest.approx(9.0)


def test_the_service_reading_is_placed_at_the_call_it_came_with():
    """The service's x-ratelimit-remaining-* describe the moment the call arrived, between its sending and
    its answer: compared with all we counted since the call was sent, and any surplus counted from then."""
    window = QuotaWindow(60_000)  # 10K in any 10 s
    window.take(4_000, now=0)  # leaves our window at t=10
    at, mark = 9.9, window.mark(9.9)
    window.take(2_000, now=at)  # the call; the service counts it at ~9.95, next to the 4K of t=0
    # Answered at 10.2: the 4K has left our window, but the service counted it (60K - 6 x 6K = 24K).
    window.observe_remaining(24_000, now=10.2, at=at, mark=mark)
    assert window.used(10.2) == 2_000  # all of it was ours: nothing added
    # Someone else spent 2K more of the same quota: that surplus counts from the call's sending.
    window.observe_remaining(12_000, now=10.2, at=at, mark=mark)
    assert window.used(10.2) == 4_000
    assert window.used(19.95) == 0  # gone with the call, as the service's own count of it


def test_rpm_follows_tpm_at_six_per_thousand():
    assert default_rpm(300_000) == 1_800
    limiter = DeploymentLimiter("gpt-4o", tpm=1_000)
    assert limiter.requests.per_minute == 6


def test_charge_is_prompt_text_images_and_max_tokens():
    charge = estimate_charge(["Describe this image"], [765], 1_000)
    assert charge > 765 + 1_000
    assert charge - 765 - 1_000 < 40
    assert estimate_charge(["x" * 4_000], [], 0) >= 1_000


async def test_concurrent_callers_are_paced_to_the_quota_in_arrival_order():
    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=60_000, rpm=10_000, clock=clock, sleep=clock.sleep)
    admitted: list[tuple[int, float]] = []

    async def call(index: int) -> None:
        await limiter.acquire(2_000)
        admitted.append((index, clock.now))

    await asyncio.gather(*(call(i) for i in range(20)))
    assert [i for i, _ in admitted] == list(range(20))
    # 10K tokens (five calls) in any 10 s: 40K tokens take three more windows.
    assert admitted[-1][1] == pytest.approx(30.0)
    for _, at in admitted:
        spent_in_window = 2_000 * sum(1 for _, other in admitted if at - 10 < other <= at)
        assert spent_in_window <= 10_000


async def test_a_429_pauses_everyone_and_they_resume_in_order():
    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=600_000, clock=clock, sleep=clock.sleep)
    limiter.pause(7.5)
    admitted: list[tuple[int, float]] = []

    async def call(index: int) -> None:
        await limiter.acquire(100)
        admitted.append((index, clock.now))

    await asyncio.gather(*(call(i) for i in range(5)))
    assert [i for i, _ in admitted] == [0, 1, 2, 3, 4]
    assert all(at >= 7.5 for _, at in admitted)
    assert limiter.throttle_pauses == 1


async def test_a_deadline_shorter_than_the_wait_answers_at_once_with_retry_after():
    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=60_000, clock=clock, sleep=clock.sleep)
    await limiter.acquire(10_000)
    with pytest.raises(ModelThrottled) as raised:
        await limiter.acquire(5_000, deadline=clock.now + 2)
    assert raised.value.retry_after == pytest.approx(10.0)  # when the first 10K leaves the window
    assert clock.now == 0  # it did not wait in vain
    admission = await limiter.acquire(5_000, deadline=clock.now + 10)
    assert admission.waited_seconds == pytest.approx(10.0)


async def test_without_a_configured_limit_it_learns_from_the_service_headers():
    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", clock=clock, sleep=clock.sleep)
    assert (await limiter.acquire(50_000)).waited_seconds == 0  # nothing known yet: no pacing
    limiter.observe({"x-ratelimit-remaining-tokens": "28000", "x-ratelimit-remaining-requests": "179"}, 2_000)
    assert limiter.tokens.per_minute == 30_000
    assert limiter.requests.per_minute == 180
    assert limiter.tokens.capacity - limiter.tokens.used(clock.now) <= 28_000 / 6
    limiter.observe({"x-ratelimit-remaining-tokens": "not a number"}, 2_000)  # ignored, not a crash
    assert limiter.tokens.per_minute == 30_000


async def test_a_call_the_service_refused_is_given_back():
    """A 429 is not charged against the quota: its reservation stops counting, so our count stays the service's."""
    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=60_000, clock=clock, sleep=clock.sleep)
    refused = await limiter.acquire(6_000)
    kept = await limiter.acquire(4_000)
    limiter.refund(refused)
    assert limiter.tokens.used(clock.now) == 4_000 and limiter.requests.used(clock.now) == 1
    limiter.refund(kept)
    limiter.refund(kept)  # twice is once
    assert (await limiter.acquire(10_000)).waited_seconds == 0


async def test_calls_sent_before_the_limit_was_learnt_count_against_it():
    """Nothing known yet, calls go at once; the service charged each on arrival, so the limit learnt
    from the first answer applies to every call already in flight, not to the answering one alone."""
    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", clock=clock, sleep=clock.sleep)
    admissions = [await limiter.acquire(2_000) for _ in range(4)]
    assert [a.waited_seconds for a in admissions] == [0, 0, 0, 0]
    # The first answer: 30K TPM (5K in any 10 s). The other three are still in flight.
    limiter.observe({"x-ratelimit-remaining-tokens": "28000", "x-ratelimit-remaining-requests": "179"},
                    2_000, admissions[0])
    assert limiter.tokens.per_minute == 30_000
    assert limiter.tokens.used(clock.now) == 8_000
    assert (await limiter.acquire(2_000)).waited_seconds == pytest.approx(10.0)  # when the first four leave


def test_a_window_with_no_known_limit_counts_without_making_anyone_wait():
    window = QuotaWindow(None)
    window.take(1_000_000, now=0)
    assert window.wait_time(1_000_000, now=0) == 0
    window.observe_remaining(0, now=0)  # nothing to compare with yet
    assert window.used(0) == 1_000_000
    window.learn(60_000)
    assert window.wait_time(1, now=5) == pytest.approx(5.0)
    window.learn(30_000)  # the largest limit the service showed stands
    assert window.per_minute == 60_000


def test_each_instance_gets_its_share_and_each_deployment_its_own_buckets():
    limiter = Limiter(tpm=300_000, instances=3)
    primary, secondary = limiter.deployment("gpt-4o"), limiter.deployment("gpt-4o-mini")
    assert primary is limiter.deployment("gpt-4o")
    assert primary is not secondary
    assert primary.tokens.per_minute == 100_000
    assert primary.requests.per_minute == 600
    with pytest.raises(ValueError):
        Limiter(tpm=1_000, instances=0)


def test_the_double_enforces_a_quota_the_way_azure_counts_it(aoai):
    """Charge on arrival (prompt + max_tokens) over a 10 s window; a 429 is not charged."""
    from tests.aoai_double import RecordedRequest
    from tests.quota_double import AzureQuota

    clock = SimulatedClock()
    quota = AzureQuota(aoai, tpm=60_000, clock=clock)  # 10K tokens in any 10 s, 60 RPM

    def request(max_tokens: int) -> RecordedRequest:
        body = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": max_tokens}
        return RecordedRequest("POST", "/openai/deployments/d/chat/completions", "azure", "d", {}, {}, body)

    assert quota.charge(request(4_000)) == aoai.prompt_tokens_base + 100 + 4_000
    first = quota(request(4_000))
    assert first.status == 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 60_000 - 6 * quota.charge(request(4_000))
    assert quota(request(4_000)).status == 200
    refused = quota(request(4_000))
    assert refused.status == 429
    assert refused.headers["retry-after-ms"] == "10000"
    assert (len(quota.admitted), quota.throttled) == (2, 1)
    clock.now = 10.0  # the first two charges leave the window
    assert quota(request(4_000)).status == 200


def answers(*outcomes):
    """An attempt function replaying ``outcomes``: exceptions are raised, anything else answered."""
    from shared.quota.retry import Answer

    pending = list(outcomes)
    calls = []

    async def attempt():
        calls.append(1)
        outcome = pending.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return Answer(outcome, {"x-ratelimit-remaining-tokens": "50000"})

    return attempt, calls


async def test_a_429_pauses_the_deployment_then_the_call_goes_through():
    from shared.errors import ModelThrottled as Throttled
    from shared.quota.retry import call_with_retries

    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=600_000, clock=clock, sleep=clock.sleep)
    attempt, calls = answers(Throttled("slow down", retry_after=3.0), "the answer")
    value, stats = await call_with_retries(attempt, limiter=limiter, charge=1_000, max_retries=2, deadline=None,
                                           clock=clock, sleep=clock.sleep)
    assert value == "the answer"
    assert (stats.attempts, stats.throttled, len(calls)) == (2, 1, 2)
    assert stats.admission_wait_seconds == pytest.approx(3.0)
    assert limiter.throttle_pauses == 1
    assert limiter.requests.used(clock.now) == 1  # the refused try is not counted, the answered one is


async def test_server_errors_back_off_a_bounded_number_of_times():
    from shared.errors import ModelUnavailable
    from shared.quota.retry import call_with_retries

    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=600_000, clock=clock, sleep=clock.sleep)
    attempt, _ = answers(ModelUnavailable("500"), ModelUnavailable("503"), "ok")
    value, stats = await call_with_retries(attempt, limiter=limiter, charge=100, max_retries=2, deadline=None,
                                           clock=clock, sleep=clock.sleep)
    assert (value, stats.attempts) == ("ok", 3)
    assert clock.now > 0  # it backed off between tries

    attempt, calls = answers(ModelUnavailable("500"), ModelUnavailable("500"), "never reached")
    with pytest.raises(ModelUnavailable):
        await call_with_retries(attempt, limiter=limiter, charge=100, max_retries=1, deadline=None,
                                clock=clock, sleep=clock.sleep)
    assert len(calls) == 2


@pytest.mark.parametrize("final", ["content", "bad"])
async def test_requests_the_service_refused_are_never_retried(final):
    from shared.errors import ContentFiltered, ModelBadResponse
    from shared.quota.retry import call_with_retries

    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=600_000, clock=clock, sleep=clock.sleep)
    error = ContentFiltered("filtered", where="prompt") if final == "content" else ModelBadResponse("400")
    attempt, calls = answers(error, "never reached")
    with pytest.raises(type(error)):
        await call_with_retries(attempt, limiter=limiter, charge=100, max_retries=5, deadline=None,
                                clock=clock, sleep=clock.sleep)
    assert len(calls) == 1


async def test_throttling_is_waited_out_only_until_the_deadline():
    from shared.errors import ModelThrottled as Throttled
    from shared.quota.retry import call_with_retries

    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", tpm=600_000, clock=clock, sleep=clock.sleep)
    attempt, calls = answers(*(Throttled("429", retry_after=5.0) for _ in range(10)))
    with pytest.raises(Throttled) as raised:
        await call_with_retries(attempt, limiter=limiter, charge=100, max_retries=2, deadline=12.0,
                                clock=clock, sleep=clock.sleep)
    assert len(calls) == 3  # at 0, 5 and 10 s; the pause to 15 s is past the deadline
    assert clock.now <= 12.0
    assert raised.value.retry_after >= 1


async def test_a_successful_call_teaches_the_limiter_the_service_count():
    from shared.quota.retry import call_with_retries

    clock = SimulatedClock()
    limiter = DeploymentLimiter("gpt-4o", clock=clock, sleep=clock.sleep)
    attempt, _ = answers("ok")
    await call_with_retries(attempt, limiter=limiter, charge=10_000, max_retries=0, deadline=None,
                            clock=clock, sleep=clock.sleep)
    assert limiter.tokens.per_minute == 60_000


async def test_a_deadline_scope_only_ever_shortens():
    from shared.quota.deadline import current_deadline, deadline_in

    assert current_deadline() is None
    with deadline_in(30) as outer:
        with deadline_in(600) as inner:
            assert inner == outer == current_deadline()
        with deadline_in(5) as shorter:
            assert shorter < outer
        with deadline_in(None) as unbounded:
            assert unbounded == outer
    assert current_deadline() is None
