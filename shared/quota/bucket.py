"""A quota window that counts the way Azure OpenAI does, as pure arithmetic over a clock reading.

Azure charges a request against the deployment's tokens-per-minute (TPM) when it arrives, and
enforces the quota over short windows (1 s or 10 s), not over a whole minute: a deployment of 60K
TPM admits about 10K tokens in any 10 s, not 60K in the first second. So this is a sliding window
log, not a token bucket: it remembers what was admitted in the last ``window_seconds`` and admits a
charge only if the window's total stays within ``per_minute * window / 60``. (A token bucket of the
same size would admit up to twice that in one window, a full bucket plus its refill, and earn 429s.)
A charge bigger than a whole window is admitted into an empty window: delayed, never refused forever.

No I/O and no sleeping here: :mod:`shared.quota.limiter` decides when to wait, from
:meth:`QuotaWindow.wait_time`. Every method takes ``now`` (a monotonic reading in seconds), which
keeps the arithmetic testable without a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Azure evaluates TPM over windows of 1 s or 10 s; pacing over 10 s keeps any 10 s within the quota.
WINDOW_SECONDS = 10.0


@dataclass
class QuotaWindow:
    """What was admitted in the last ``window_seconds``, against ``per_minute`` scaled to the window."""

    per_minute: float
    window_seconds: float = WINDOW_SECONDS
    _entries: deque[list[float]] = field(default_factory=deque)  # [admitted at, amount], oldest first

    def __post_init__(self) -> None:
        if self.per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {self.per_minute}")

    @property
    def capacity(self) -> float:
        """What one window admits: the most the service takes in a burst."""
        return self.per_minute * self.window_seconds / 60.0

    def _expire(self, now: float) -> None:
        while self._entries and self._entries[0][0] <= now - self.window_seconds:
            self._entries.popleft()

    def used(self, now: float) -> float:
        self._expire(now)
        return sum(amount for _, amount in self._entries)

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits in the window (0 when it fits now)."""
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
        """Count ``amount`` from ``now``; the returned entry is moved later by :meth:`settle`."""
        self._expire(now)
        entry = [now, amount]
        self._entries.append(entry)
        return entry

    def settle(self, entry: list[float], now: float) -> None:
        """Move an admitted charge to ``now``, when its answer came back.

        The service counts a request from when it arrives, some time between our admission and its
        answer; counting it from the answer errs late, never early, so our window never frees room
        before the service's does (which would earn a 429 for the next caller).
        """
        try:
            self._entries.remove(entry)
        except ValueError:
            return  # already expired, or given back
        entry[0] = now
        self._entries.append(entry)

    def give_back(self, amount: float, now: float) -> None:
        """Return a reservation (the call never reached the service), newest entries first."""
        self._expire(now)
        while amount > 0 and self._entries:
            entry = self._entries[-1]
            returned = min(amount, entry[1])
            entry[1] -= returned
            amount -= returned
            if entry[1] <= 0:
                self._entries.pop()

    def observe_remaining(self, remaining_per_minute: float, now: float) -> None:
        """Trust the service when it says less is left than we think (its count includes other callers).

        ``x-ratelimit-remaining-tokens`` / ``-requests`` are per-minute figures; scaled to our window.
        """
        service_room = remaining_per_minute * self.window_seconds / 60.0
        room = self.capacity - self.used(now)
        if service_room < room:
            self._entries.append([now, room - service_room])

    def resize(self, per_minute: float) -> None:
        """Change the quota (learnt from the service); what was admitted stays counted."""
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        self.per_minute = per_minute
