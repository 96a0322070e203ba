"""A token bucket that counts the way Azure OpenAI does, as pure arithmetic over a clock reading.

Azure charges a request against the deployment's tokens-per-minute (TPM) when it arrives, and
enforces the quota over short windows (1 s or 10 s), not over a whole minute: a deployment of
60K TPM admits about 10K tokens in any 10 s, not 60K in the first second. So the bucket holds at
most one window's worth (``per_minute * window / 60``) and refills continuously at
``per_minute / 60`` per second. A request bigger than a whole window is admitted when the bucket is
full and leaves it in debt, so it is delayed, never refused forever.

No I/O and no sleeping here: :mod:`shared.quota.limiter` decides when to wait, from
:meth:`QuotaBucket.wait_time`. Every method takes ``now`` (a monotonic reading in seconds), which
keeps the arithmetic testable without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Azure evaluates TPM over windows of 1 s or 10 s; a bucket of 10 s is the larger, burstier one.
WINDOW_SECONDS = 10.0


@dataclass
class QuotaBucket:
    """Tokens (or requests) available now, refilled at ``per_minute / 60`` per second."""

    per_minute: float
    window_seconds: float = WINDOW_SECONDS
    level: float = field(default=-1.0)
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {self.per_minute}")
        if self.level < 0:
            self.level = self.capacity

    @property
    def capacity(self) -> float:
        """One window's worth: the most the service admits in a burst."""
        return self.per_minute * self.window_seconds / 60.0

    @property
    def rate(self) -> float:
        """Refill per second."""
        return self.per_minute / 60.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_time(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be taken (0 when it can be taken now).

        An amount over the capacity needs a full bucket, not more than it can ever hold.
        """
        self.refill(now)
        needed = min(amount, self.capacity)
        if self.level >= needed:
            return 0.0
        return (needed - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        """Spend ``amount`` (the level may go negative: a debt repaid by the refill)."""
        self.refill(now)
        self.level -= amount

    def give_back(self, amount: float, now: float) -> None:
        """Return an over-estimate (the call was charged less than reserved, or never made)."""
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)

    def observe_remaining(self, remaining_per_minute: float, now: float) -> None:
        """Trust the service when it says less is left than we think (its count includes other callers).

        ``x-ratelimit-remaining-tokens`` / ``-requests`` are per-minute figures; scaled to our window.
        """
        self.refill(now)
        self.level = min(self.level, remaining_per_minute * self.window_seconds / 60.0)

    def resize(self, per_minute: float, now: float) -> None:
        """Change the quota (learnt from the service), keeping the fraction of the window in use."""
        self.refill(now)
        fraction = self.level / self.capacity
        self.per_minute = per_minute
        self.level = fraction * self.capacity
