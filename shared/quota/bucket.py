"""A quota window that counts the way Azure OpenAI does, as pure arithmetic over a clock reading.

Azure charges a request against the deployment's tokens-per-minute (TPM) when it arrives, and
enforces the quota over short windows (1 s or 10 s), not over a whole minute: a deployment of 60K
TPM admits about 10K tokens in any 10 s, not 60K in the first second. So this is a sliding window
log, not a token bucket: it remembers what was admitted in the last ``window_seconds`` and admits a
charge only if the window's total stays within ``per_minute * window / 60``. (A token bucket of the
same size would admit up to twice that in one window, a full bucket plus its refill, and earn 429s.)
A charge bigger than a whole window is admitted into an empty window: delayed, never refused forever.

The limit may be unknown (``per_minute=None``: no ``VISION_TPM_LIMIT``, nothing learnt from the
service yet). The window still counts what it admits, so the limit learnt later applies to the calls
already sent: a call is charged by the service whether or not we knew its quota when we sent it.

A charge counts from when the call is sent (:meth:`QuotaWindow.take`), the moment the service charges
it give or take the network's delay, not from when its answer comes back: counting from the answer
would hold every charge for the model's latency on top of the window (a 2 s answer makes each 10 s
of quota last 12 s, a sixth of it unused; a 5 s answer, a third). A call that reaches the service a
few milliseconds later than an earlier one may find the service's window not yet clear and get a
429; its ``retry-after-ms`` is those milliseconds, and a refused call is not charged
(:meth:`QuotaWindow.discard`), so that costs a pause of milliseconds, not quota.

No I/O and no sleeping here: :mod:`shared.quota.limiter` decides when to wait, from
:meth:`QuotaWindow.wait_time`. Every method takes ``now`` (a monotonic reading in seconds), which
keeps the arithmetic testable without a clock.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from dataclasses import dataclass, field

#: Azure evaluates TPM over windows of 1 s or 10 s; pacing over 10 s keeps any 10 s within the quota.
WINDOW_SECONDS = 10.0


@dataclass
class QuotaWindow:
    """What was admitted in the last ``window_seconds``, against ``per_minute`` scaled to the window.

    ``per_minute=None``: the limit is not known yet; everything is admitted at once, and counted.
    """

    per_minute: float | None
    window_seconds: float = WINDOW_SECONDS
    _entries: deque[list[float]] = field(default_factory=deque)  # [admitted at, amount], oldest first
    _expired: float = 0.0  # the total of every entry that has left the window so far

    def __post_init__(self) -> None:
        if self.per_minute is not None and self.per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {self.per_minute}")

    @property
    def capacity(self) -> float:
        """What one window admits: the most the service takes in a burst (unbounded while unknown)."""
        if self.per_minute is None:
            return math.inf
        return self.per_minute * self.window_seconds / 60.0

    def _expire(self, now: float) -> None:
        while self._entries and self._entries[0][0] <= now - self.window_seconds:
            self._expired += self._entries.popleft()[1]

    def mark(self, now: float) -> float:
        """A bookmark for :meth:`observe_remaining`: how much has left the window by ``now``."""
        self._expire(now)
        return self._expired

    def used(self, now: float) -> float:
        self._expire(now)
        return sum(amount for _, amount in self._entries)

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits in the window (0 when it fits now, or while the limit is unknown)."""
        if self.per_minute is None:
            return 0.0
        used = self.used(now)
        allowed = self.capacity - min(amount, self.capacity)
        if used <= allowed:
            return 0.0
        for at, spent in self._entries:
            used -= spent
            if used <= allowed:
                return at + self.window_seconds - now
        return 0.0  # pragma: no cover - the loop empties the window at the latest

    def take(self, amount: float, now: float) -> list[float]:
        """Count ``amount`` from ``now``, when the call is sent; the entry, for :meth:`discard`."""
        self._expire(now)
        entry = [now, amount]
        self._entries.append(entry)
        return entry

    def discard(self, entry: list[float]) -> None:
        """Stop counting an admitted charge the service did not count: it refused the call (a 429)."""
        with contextlib.suppress(ValueError):  # already expired
            self._entries.remove(entry)

    def observe_remaining(self, remaining_per_minute: float, now: float, *, at: float | None = None,
                          mark: float | None = None) -> None:
        """Trust the service when it says less was left than we counted (its count includes other callers).

        ``x-ratelimit-remaining-tokens`` / ``-requests`` are per-minute figures; scaled to our window.
        The figure describes the moment the call arrived, some time between ``at`` (when it was sent;
        ``mark`` is :meth:`mark` then) and now. Our own share of it is at most everything we counted at
        any moment since ``at``: what we count now plus what has left the window since. Only what the
        service counted beyond that is someone else's, and it is counted from ``at``, as the service
        counts its own entries from their arrival. Without ``at``: compared with our count now.
        Nothing to compare with while our own limit is unknown.
        """
        if self.per_minute is None:
            return
        ours = self.used(now)
        if at is None or mark is None:
            at, mark = now, self._expired
        ours += self._expired - mark
        service_room = remaining_per_minute * self.window_seconds / 60.0
        room = self.capacity - ours
        if service_room < room and at > now - self.window_seconds:
            self._insert([at, room - service_room])

    def _insert(self, entry: list[float]) -> None:
        """Add an entry in time order (usually at the end: ``at`` is a recent reading)."""
        index = len(self._entries)
        while index > 0 and self._entries[index - 1][0] > entry[0]:
            index -= 1
        self._entries.insert(index, entry)

    def learn(self, per_minute: float) -> None:
        """The service showed at least ``per_minute`` of quota: raise the limit to it, never lower it.

        What was admitted stays counted, including what was admitted while the limit was unknown.
        """
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        if self.per_minute is None or per_minute > self.per_minute:
            self.per_minute = per_minute
