"""A circuit breaker per deployment: stop calling a deployment that keeps failing, then probe it.

A deployment that answers every call with a 5xx or a timeout costs each caller its full retry
budget (several seconds of backoff) before the error, and adds load to a service that is already
struggling. After ``failures`` consecutive failed calls (each already retried by
:mod:`shared.quota.retry`) the breaker *opens*: the deployment is skipped (the next fallback
deployment answers, or the caller gets ``ModelUnavailable`` at once) for ``cooldown_seconds``.
Then it is *half open*: exactly one call may probe it; success closes the breaker, failure opens it
for another cool-down.

This is a small state machine over a clock reading, not a wrapper around calls, because the caller
(:mod:`shared.providers.failover`) decides per error whether it was the deployment's fault (a 5xx
is, a 400 or a content filter is not); breaker libraries (pybreaker, aiobreaker) wrap the call and
count every exception, and are synchronous or Tornado-based.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half open after the cool-down -> one probe."""

    def __init__(self, name: str, *, failures: int = 5, cooldown_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or cooldown_seconds <= 0:
            raise ValueError("a breaker needs at least one failure and a positive cool-down")
        self.name = name
        self.failures = failures
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        #: How often the breaker opened, for the health route and the tests.
        self.times_opened = 0

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at >= self.cooldown_seconds:
            return HALF_OPEN
        return OPEN

    def retry_after(self) -> float:
        """Seconds until the deployment may be probed (0 when it may be called now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_seconds - self._clock())

    def try_acquire(self) -> bool:
        """May a call go to this deployment now? In half-open state only the first caller (the probe) may."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def succeeded(self) -> None:
        """The deployment answered (any answer it is responsible for, even a refusal of a bad request)."""
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        """The deployment failed a call after its retries (5xx, timeout, connection)."""
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            if self._opened_at is None or self._probing:
                self.times_opened += 1
            self._opened_at = self._clock()
        self._probing = False

    def abandoned(self) -> None:
        """A call ended without a verdict on the deployment (cancelled, or throttled at our own limiter)."""
        self._probing = False

    def describe(self) -> dict[str, object]:
        return {"state": self.state, "consecutive_failures": self._consecutive, "times_opened": self.times_opened,
                "retry_after_seconds": round(self.retry_after(), 1)}


_PROCESS_BREAKERS: dict[str, CircuitBreaker] = {}


def process_breaker(name: str, *, failures: int, cooldown_seconds: float) -> CircuitBreaker:
    """The process's one breaker for a deployment: every provider for it shares what it learnt."""
    breaker = _PROCESS_BREAKERS.get(name)
    if breaker is None or (breaker.failures, breaker.cooldown_seconds) != (failures, cooldown_seconds):
        breaker = _PROCESS_BREAKERS[name] = CircuitBreaker(name, failures=failures, cooldown_seconds=cooldown_seconds)
    return breaker


def forget_process_breakers() -> None:
    """Drop every breaker. For tests, which each start a fresh world."""
    _PROCESS_BREAKERS.clear()
