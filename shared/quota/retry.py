"""The one retry layer of a model call: admission by the limiter, then tenacity for what may pass.

The openai SDK's own retries are turned off (``max_retries=0``) so that two layers never stack.

- Throttling (429) pauses the deployment for the service's ``retry-after`` and retries as soon as
  the limiter admits the call again, for as long as the deadline allows: throttling is the service
  saying "later", not "no". The refused try's reservation is given back (Azure does not charge a
  429 against the quota), so the retry is not counted twice.
- Connection failures keep their reservation: a connection refused never reached the service, but
  a connection dropped mid-answer did, and the SDK raises the same ``APIConnectionError`` for both.
  Only the provider, where SDK errors are translated, can tell them apart (a ``ConnectError`` of the
  SDK's HTTP client underneath); until its error says so, keeping the reservation errs on the safe side.
- Server errors (5xx), timeouts and connection failures are retried with exponential backoff and
  full jitter, at most ``max_retries`` times, within the deadline.
- Everything else (bad requests, content filtering, unusable answers, credentials) is final.

The outcome carries what the call took (attempts, throttled answers, seconds spent waiting for
admission), so results and telemetry can show it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_random_exponential,
)

from shared.errors import ModelThrottled, ModelUnavailable
from shared.quota.limiter import DeploymentLimiter

T = TypeVar("T")

#: Backoff of 5xx and timeouts: full jitter, 0.5 s doubling, at most 20 s between tries.
BACKOFF = wait_random_exponential(multiplier=0.5, max=20)


@dataclass
class CallStats:
    """What one model call took beyond the answer itself."""

    attempts: int = 0
    throttled: int = 0
    admission_wait_seconds: float = 0.0
    charge: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {"attempts": self.attempts, "throttled": self.throttled,
                "admission_wait_seconds": round(self.admission_wait_seconds, 3), "charge_estimate": self.charge}


@dataclass
class Answer(Generic[T]):
    value: T
    headers: Mapping[str, str]


class _Policy:
    """Tenacity's retry, wait and stop decisions for one call."""

    def __init__(self, *, max_retries: int, deadline: float | None, clock: Callable[[], float]) -> None:
        self.max_retries = max_retries
        self.deadline = deadline
        self.clock = clock
        self.failures = 0  # 5xx, timeouts, connection failures so far
        self.service_throttles: set[int] = set()  # 429s from the service (the limiter's own are final)

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, ModelThrottled):
            return id(exc) in self.service_throttles
        if isinstance(exc, ModelUnavailable):
            self.failures += 1
            return self.failures <= self.max_retries
        return False

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ModelThrottled):
            return 0.0  # the limiter holds the call until the pause is over
        delay = BACKOFF(state)
        retry_after = getattr(exc, "retry_after", None)
        return max(delay, retry_after or 0.0)

    def stop(self, state: RetryCallState) -> bool:
        if self.deadline is None:
            return False
        upcoming = state.upcoming_sleep or 0.0
        return self.clock() + upcoming >= self.deadline


async def call_with_retries(
    attempt: Callable[[], Awaitable[Answer[T]]],
    *,
    limiter: DeploymentLimiter,
    charge: int,
    max_retries: int,
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> tuple[T, CallStats]:
    """Run ``attempt`` until it answers, is refused for good, or the deadline passes.

    Each try first takes ``charge`` tokens from the deployment's limiter (waiting at most until
    ``deadline``); a 429 pauses the deployment for everyone. The last error is raised as is.
    """
    stats = CallStats(charge=charge)
    policy = _Policy(max_retries=max_retries, deadline=deadline, clock=clock)
    options = {"sleep": sleep} if sleep is not None else {}
    retrying = AsyncRetrying(retry=retry_if_exception(policy.retryable), wait=policy.wait, stop=policy.stop,
                             reraise=True, **options)
    async for try_ in retrying:
        with try_:
            stats.attempts += 1
            admission = await limiter.acquire(charge, deadline=deadline)  # past the deadline: final
            stats.admission_wait_seconds += admission.waited_seconds
            try:
                answer = await attempt()
            except ModelThrottled as exc:
                stats.throttled += 1
                policy.service_throttles.add(id(exc))
                limiter.refund(admission)  # the service did not count a call it refused
                limiter.pause(exc.retry_after if exc.retry_after is not None else 1.0)
                raise
            except ModelUnavailable as exc:
                if not exc.sent:
                    limiter.refund(admission)  # the connection was refused: the service counted nothing
                raise
            limiter.observe(answer.headers, charge, admission)
            return answer.value, stats
    raise AssertionError("unreachable: tenacity either returns or reraises")  # pragma: no cover
