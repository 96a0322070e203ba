"""One limiter per process, pacing every model call to each deployment's TPM and RPM quota.

Every edge (HTTP routes, the blob trigger, ``watch``, ``process``, ``batch``, extraction,
compare, sequence and the re-ask) reaches the model through a provider, and the provider asks the
:class:`Limiter` for admission before each call, so they all share one budget per deployment.

- Waiters are served first come, first served, one at a time, so a queue drains at the quota's
  pace instead of bursting.
- A call is counted from when it is sent, as the service counts it from its arrival, not from its
  answer (:mod:`shared.quota.bucket`).
- A 429 pauses the deployment for the service's ``retry-after-ms`` / ``retry-after``: everyone
  waiting resumes after the pause, in order, instead of each retrying on its own timer. The refused
  call's reservation is given back (:meth:`DeploymentLimiter.refund`): the service did not charge it.
- ``x-ratelimit-remaining-tokens`` / ``-requests`` on every response pull our count down to the
  service's (other clients and other instances spend the same quota), and, when no limit is
  configured, teach us the limit: the largest ``remaining + this request`` seen. Until the first
  answer teaches it, calls are admitted at once but still counted, so the limit learnt applies to
  the calls already in flight too (the service charged them on arrival, known limit or not).
- A caller waits only up to its deadline; if admission is further away, it gets
  :class:`~shared.errors.ModelThrottled` at once, with the wait as ``retry_after``.

Several Function instances share one deployment: each gets ``limit / instances`` (README "Scale").
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from shared.errors import ModelThrottled
from shared.quota.bucket import QuotaWindow

#: Azure assigns requests per minute at 6 per 1,000 tokens per minute.
RPM_PER_1000_TPM = 6


def default_rpm(tpm: float) -> float:
    return max(1.0, tpm * RPM_PER_1000_TPM / 1000)


@dataclass(frozen=True)
class Admission:
    """What admission cost a call: how long it waited, and the charge reserved.

    ``entries`` are the reservations (window, entry), for :meth:`DeploymentLimiter.refund`; ``at`` (when
    the call was sent) and ``marks`` (each window's :meth:`QuotaWindow.mark` then) place the service's
    ``x-ratelimit-remaining-*`` on its answer in time (see :meth:`QuotaWindow.observe_remaining`).
    """

    waited_seconds: float
    charge: int
    entries: tuple[tuple[QuotaWindow, list[float]], ...] = ()
    at: float | None = None
    marks: tuple[float | None, float | None] = (None, None)


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


class DeploymentLimiter:
    """The TPM and RPM windows of one deployment (in this process)."""

    def __init__(self, name: str, *, tpm: float | None = None, rpm: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.name = name
        rpm = rpm or (default_rpm(tpm) if tpm else None)
        #: Limits not configured are learnt from the service's headers (None until the first answer).
        self.learning = tpm is None
        self._learning_requests = rpm is None
        self.tokens = QuotaWindow(tpm or None)
        self.requests = QuotaWindow(rpm or None)
        self._clock = clock
        self._sleep = sleep
        self._paused_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._queued_tokens = 0
        self.throttle_pauses = 0

    def _turnstile(self) -> asyncio.Lock:
        """The FIFO lock of the running loop (tests run several loops in one process)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def wait_time(self, charge: int, now: float) -> float:
        """Seconds until a call of ``charge`` tokens may start (0: now)."""
        waits = (self._paused_until - now, self.tokens.wait_time(charge, now), self.requests.wait_time(1, now))
        return max(0.0, *waits)

    def _queue_estimate(self, charge: int, now: float) -> float:
        """How long a newcomer would wait behind everyone queued: the Retry-After we give back."""
        wait = max(0.0, self._paused_until - now)
        if self.tokens.per_minute is not None:
            backlog = self._queued_tokens + charge + self.tokens.used(now) - self.tokens.capacity
            wait = max(wait, backlog / (self.tokens.per_minute / 60.0))
        return max(1.0, wait)

    async def acquire(self, charge: int, *, deadline: float | None = None) -> Admission:
        """Wait for ``charge`` tokens and one request, in arrival order, until ``deadline`` (a clock reading)."""
        start = self._clock()
        self._queued_tokens += charge
        try:
            lock = self._turnstile()
            try:
                if deadline is None:
                    await lock.acquire()
                else:
                    async with asyncio.timeout(max(0.0, deadline - start)):
                        await lock.acquire()
            except TimeoutError:
                now = self._clock()
                raise ModelThrottled(f"deployment {self.name!r} is at its quota; the queue is longer than "
                                     "this request's deadline", retry_after=self._queue_estimate(0, now)) from None
            try:
                while (wait := self.wait_time(charge, now := self._clock())) > 0:
                    if deadline is not None and now + wait > deadline:
                        raise ModelThrottled(f"deployment {self.name!r} is at its quota for longer than this "
                                             "request's deadline", retry_after=max(1.0, wait))
                    await self._sleep(wait)
                # Counted from now, when the call is sent, even while the limit is unknown: the service
                # charges the call when it arrives, known limit or not.
                entries = ((self.tokens, self.tokens.take(charge, now)), (self.requests, self.requests.take(1, now)))
                return Admission(waited_seconds=now - start, charge=charge, entries=entries, at=now,
                                 marks=(self.tokens.mark(now), self.requests.mark(now)))
            finally:
                lock.release()
        finally:
            self._queued_tokens -= charge

    def refund(self, admission: Admission) -> None:
        """The service refused the call without charging it (a 429 is not counted against the quota):
        stop counting its reservation, so our count stays the service's."""
        for window, entry in admission.entries:
            window.discard(entry)

    def observe(self, headers: Mapping[str, str], charge: int, admission: Admission | None = None) -> None:
        """Adapt to the service's own count, from a response's ``x-ratelimit-remaining-*`` headers.

        With the call's ``admission``, the service's figures are compared with everything we counted
        since the call was sent (see :meth:`QuotaWindow.observe_remaining`); without it, with our count now.
        """
        now = self._clock()
        at = admission.at if admission is not None else None
        tokens_then, requests_then = admission.marks if admission is not None else (None, None)
        remaining_tokens = _header_number(headers, "x-ratelimit-remaining-tokens")
        remaining_requests = _header_number(headers, "x-ratelimit-remaining-requests")
        if remaining_tokens is not None:
            if self.learning:
                self.tokens.learn(max(remaining_tokens + charge, 1.0))
            self.tokens.observe_remaining(remaining_tokens, now, at=at, mark=tokens_then)
        if remaining_requests is not None:
            if self._learning_requests:
                self.requests.learn(max(remaining_requests + 1, 1.0))
            self.requests.observe_remaining(remaining_requests, now, at=at, mark=requests_then)

    def pause(self, seconds: float) -> None:
        """The service said 429: nobody calls this deployment for ``seconds``, then the queue resumes in order."""
        now = self._clock()
        self.throttle_pauses += 1
        self._paused_until = max(self._paused_until, now + max(0.0, seconds))


class Limiter:
    """The process's limiters, one per deployment, each with this instance's share of the quota."""

    def __init__(self, *, tpm: float | None = None, rpm: float | None = None, instances: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if instances < 1:
            raise ValueError("instances must be at least 1")
        self.tpm = tpm / instances if tpm else None
        self.rpm = rpm / instances if rpm else None
        self._clock = clock
        self._sleep = sleep
        self._deployments: dict[str, DeploymentLimiter] = {}

    def deployment(self, name: str) -> DeploymentLimiter:
        if name not in self._deployments:
            self._deployments[name] = DeploymentLimiter(name, tpm=self.tpm, rpm=self.rpm,
                                                        clock=self._clock, sleep=self._sleep)
        return self._deployments[name]


_PROCESS_LIMITERS: dict[tuple[float | None, float | None, int], Limiter] = {}


def process_limiter(*, tpm: float | None, rpm: float | None, instances: int) -> Limiter:
    """The process's one :class:`Limiter` for these limits: every provider built in this process
    (HTTP app, blob trigger, CLI commands, each analyzer) draws on the same buckets."""
    key = (tpm, rpm, instances)
    if key not in _PROCESS_LIMITERS:
        _PROCESS_LIMITERS[key] = Limiter(tpm=tpm, rpm=rpm, instances=instances)
    return _PROCESS_LIMITERS[key]


def forget_process_limiters() -> None:
    """Drop every process limiter (and what they learnt). For tests, which each start a fresh world."""
    _PROCESS_LIMITERS.clear()
