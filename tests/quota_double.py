"""A deployment quota enforced the way Azure OpenAI enforces it, as a responder for the test double.

``double.set_responder(AzureQuota(tpm=300_000))`` makes the double charge each request on arrival
(the estimated prompt, text and images, plus ``max_tokens``) against a tokens-per-minute quota
evaluated over a sliding 10 s window (a 300K TPM deployment admits 50K tokens in any 10 s), and
requests against RPM (6 per 1,000 TPM). Over either, the answer is 429 with ``retry-after-ms`` for
when enough of the window has expired; admitted requests are answered after a fixed ``latency``
with ``x-ratelimit-remaining-tokens`` / ``-requests`` (per-minute figures, as Azure sends them).

A refused request is not charged (Azure does not count a 429 against the quota). It records what
it admitted, so a benchmark can report the tokens per minute actually achieved.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tests.aoai_double import AzureOpenAIDouble, RecordedRequest, Reply

WINDOW_SECONDS = 10.0


@dataclass
class AzureQuota:
    """Callable responder: admit (a success after ``latency``) or throttle (429), Azure-style."""

    double: AzureOpenAIDouble
    tpm: int
    rpm: int | None = None
    latency: float = 0.0
    clock: Callable[[], float] = time.monotonic
    admitted: list[tuple[float, int]] = field(default_factory=list)  # (time, charge)
    throttled: int = 0
    _window: deque[tuple[float, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.rpm is None:
            self.rpm = max(1, self.tpm * 6 // 1000)

    @property
    def window_tokens(self) -> float:
        return self.tpm * WINDOW_SECONDS / 60

    @property
    def window_requests(self) -> float:
        return self.rpm * WINDOW_SECONDS / 60

    def charge(self, request: RecordedRequest) -> int:
        """Azure's pre-charge: the prompt estimate (as the double bills it) plus max_tokens."""
        body = request.body if isinstance(request.body, dict) else {}
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 4096
        prompt = self.double.prompt_tokens_base + len(request.text_of()) // 4 + sum(
            self.double.image_tokens.get(image.detail or "auto", 765) for image in request.images)
        return prompt + int(max_tokens)

    def __call__(self, request: RecordedRequest) -> Reply:
        charge = self.charge(request)
        with self._lock:
            now = self.clock()
            while self._window and self._window[0][0] <= now - WINDOW_SECONDS:
                self._window.popleft()
            used = sum(c for _, c in self._window)
            if used + charge > self.window_tokens or len(self._window) + 1 > self.window_requests:
                self.throttled += 1
                return Reply.throttled(retry_after_ms=self._retry_after_ms(now, charge))
            self._window.append((now, charge))
            self.admitted.append((now, charge))
            used += charge
            per_minute = 60 / WINDOW_SECONDS
            headers = {
                "x-ratelimit-remaining-tokens": str(max(0, math.floor(self.tpm - used * per_minute))),
                "x-ratelimit-remaining-requests": str(max(0, math.floor(self.rpm - len(self._window) * per_minute))),
            }
        return replace(Reply.ok(headers=headers), delay=self.latency)

    def _retry_after_ms(self, now: float, charge: int) -> int:
        """When enough of the window will have expired for this request (at least 1 ms)."""
        used, count = sum(c for _, c in self._window), len(self._window)
        for at, spent in self._window:
            used, count = used - spent, count - 1
            if used + charge <= self.window_tokens and count + 1 <= self.window_requests:
                return max(1, math.ceil((at + WINDOW_SECONDS - now) * 1000))
        return max(1, math.ceil(WINDOW_SECONDS * 1000))

    def tokens_per_minute(self) -> float:
        """Tokens admitted per minute between the first and the last admission."""
        if len(self.admitted) < 2:
            return 0.0
        span = self.admitted[-1][0] - self.admitted[0][0]
        return sum(c for _, c in self.admitted[:-1]) * 60 / span if span > 0 else 0.0
