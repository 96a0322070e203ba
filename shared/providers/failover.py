"""Several deployments behind one provider: the primary first, then the fallbacks, each behind a breaker.

``VISION_FALLBACK_DEPLOYMENTS`` lists deployments (another region, a cheaper model) tried in order
when the one before could not answer:

- its circuit breaker is open (:mod:`shared.quota.breaker`): it failed repeatedly and is skipped
  for a cool-down, without spending the caller's time on it;
- it is unavailable after its retries (5xx, timeouts, connection failures): a failure its breaker counts;
- it is throttled for longer than the caller's deadline (its limiter queue or the service's 429s):
  not its fault, so the breaker does not count it, but another deployment may have quota to spare.

Everything else (a bad request, a content filter, credentials) is the answer: another deployment
would say the same, so it is raised at once. The completion names the deployment that answered and
the model it is priced as, and ``call["skipped"]`` lists the deployments passed over and why; the
analyzer keys the cache by the deployment that answered (:class:`shared.analysis.AnswerKey`).

With no fallbacks configured this is still the primary's breaker: after repeated failures callers
get ``ModelUnavailable`` at once, with ``retry_after`` at the next probe, instead of each waiting
out its own retries against a service that is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from shared.errors import ModelError, ModelThrottled, ModelUnavailable
from shared.providers.base import Completion, Provider, VisionRequest
from shared.providers.openai_chat import OpenAIChatProvider
from shared.quota.breaker import CircuitBreaker


class FailoverProvider(Provider):
    """The primary deployment and its fallbacks, each with its breaker; declares the primary's capabilities."""

    def __init__(self, deployments: list[tuple[OpenAIChatProvider, CircuitBreaker]]) -> None:
        if not deployments:
            raise ValueError("at least the primary deployment is needed")
        self._deployments = deployments
        self.declare_capabilities_of(deployments[0][0])

    @property
    def primary(self) -> OpenAIChatProvider:
        return self._deployments[0][0]

    @property
    def model(self) -> str:
        """The primary's: cache keys are made for the primary (a fallback's answer is re-keyed)."""
        return self.primary.model

    async def complete(self, request: VisionRequest) -> Completion:
        skipped: list[dict[str, Any]] = []
        last_error: ModelUnavailable | ModelThrottled | None = None
        for provider, breaker in self._deployments:
            if not breaker.try_acquire():
                skipped.append({"deployment": provider.deployment, "reason": "breaker_open"})
                continue
            try:
                completion = await provider.complete(request)
            except ModelUnavailable as exc:
                breaker.failed()
                skipped.append({"deployment": provider.deployment, "reason": "unavailable"})
                last_error = exc
                continue
            except ModelThrottled as exc:
                breaker.abandoned()
                skipped.append({"deployment": provider.deployment, "reason": "throttled"})
                last_error = exc
                continue
            except ModelError:
                breaker.succeeded()  # it answered: a refusal of this request is an answer, and final
                raise
            except (asyncio.CancelledError, Exception):
                breaker.abandoned()  # the caller left, or a bug of ours: no verdict on the deployment
                raise
            breaker.succeeded()
            if skipped:
                completion = replace(completion, call={**completion.call, "skipped": skipped})
            return completion
        if last_error is not None:
            raise last_error
        probe_in = min(breaker.retry_after() for _, breaker in self._deployments)
        names = ", ".join(provider.deployment for provider, _ in self._deployments)
        raise ModelUnavailable(f"every deployment ({names}) failed repeatedly and is resting; the next probe is "
                               f"in {probe_in:.0f} s", retry_after=max(1.0, probe_in))

    async def aclose(self) -> None:
        for provider, _ in self._deployments:
            await provider.aclose()

    def describe(self) -> dict[str, Any]:
        described = {**self.primary.describe(), "breaker": self._deployments[0][1].describe()}
        if len(self._deployments) > 1:
            described["fallbacks"] = [{"deployment": provider.deployment, "model": provider.pricing_model,
                                       "breaker": breaker.describe()}
                                      for provider, breaker in self._deployments[1:]]
        return described
