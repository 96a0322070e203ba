"""A provider behind the daily spend budget: refused once today's spend reaches it, every answer's cost counted.

Wrapping the provider, rather than checking in each service, puts the check in front of every model
call whatever asked for it (analysis, extraction and its re-ask, compare, sequence; HTTP, the blob
flow, ``batch``), and nowhere else: a cache hit never reaches a provider, so it is still served past
the budget. :func:`shared.services.build_analyzer` wraps only when ``VISION_DAILY_BUDGET_USD`` is set
and a billed language model answers; the offline engine costs nothing.

The refusal, :class:`~shared.errors.BudgetExhausted`, is raised before the inner provider is called,
so no fallback deployment, retry or local-engine stand-in ever sees it.
"""

from __future__ import annotations

from typing import Any

from shared.budget import DailyBudget, Pricing
from shared.providers.base import Completion, Provider, VisionRequest


class BudgetedProvider(Provider):
    """``inner`` behind ``budget``; declares exactly ``inner``'s capabilities, so cache keys do not change.

    Attributes the interface does not name (a failover's ``primary``, a test double's counters) are
    read through to ``inner`` as well.
    """

    def __init__(self, inner: Provider, budget: DailyBudget, pricing: Pricing) -> None:
        self.inner = inner
        self.budget = budget
        self.pricing = pricing
        self.declare_capabilities_of(inner)

    @property
    def model(self) -> str:
        return self.inner.model

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "budget", "pricing"):  # not set yet (during __init__): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def complete(self, request: VisionRequest) -> Completion:
        """Refuse past the budget; otherwise answer and add the answer's cost to today's spend."""
        await self.budget.check()
        completion = await self.inner.complete(request)
        await self.budget.record(self.pricing.cost(completion))  # counted even if the caller leaves now
        return completion

    async def aclose(self) -> None:
        """Close the inner provider, then write what is still pending and close the ledger."""
        try:
            await self.inner.aclose()
        finally:
            await self.budget.aclose()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()
