"""What the blob flow does with a blob past the daily spend budget: it stays pending, for a later delivery.

Why not the transient path (``retrying``, then ``failed`` at ``VISION_MAX_ATTEMPTS``): nothing is
wrong with the blob or the service, and a day's backlog refused until midnight would use up every
blob's attempts and end as failures. Why not ``failed`` and quarantine: the blob is fine. So:

* the result document says ``deferred``, with the reason (the problem document), ``retry_after``
  (seconds, when written) and ``resets_at`` (the UTC midnight when model calls resume);
* the attempt the delivery claimed is given back (``attempts`` as before it), so deferrals never
  count towards ``VISION_MAX_ATTEMPTS``;
* :class:`BlobDeferred` is raised so the Functions host redelivers; ``watch`` and ``process`` treat a
  deferred blob as still to do and stop handing blobs to the pipeline until ``retry_after`` has passed
  (:mod:`shared.blob.watch`), and ``GET /api/results/...`` answers 404 ``result-pending`` with
  ``state: deferred``.

Under the Functions host the redeliveries come at once, so after the host's own retries
(``poisonBlobThreshold``) a deferred blob waits, still ``deferred``, for ``python -m shared process``
(or a re-upload) after the reset.
"""

from __future__ import annotations

from typing import Any

from shared.blob.claims import now_iso
from shared.errors import BudgetExhausted


class BlobDeferred(Exception):
    """Raised so the host redelivers a blob the budget deferred; ``retry_after`` seconds until it can succeed."""

    def __init__(self, name: str, error: BudgetExhausted) -> None:
        super().__init__(f"{name}: deferred until {error.resets_at}: the daily spend budget is used up")
        self.name = name
        self.retry_after = float(error.retry_after or 1.0)
        self.resets_at = error.resets_at


def deferred_document(failure: dict[str, Any], error: BudgetExhausted) -> dict[str, Any]:
    """The ``deferred`` result document made from the pipeline's failure document of this delivery.

    ``failure`` holds the claim's ``attempts`` (this delivery counted); the deferred one does not.
    """
    document = {key: value for key, value in failure.items() if key != "completed_at"}
    document.update(
        status="deferred",
        attempts=max(0, int(failure.get("attempts") or 0) - 1),
        deferred_at=now_iso(),
        reason=error.detail,
        retry_after=max(1, round(float(error.retry_after or 1.0))),
        resets_at=error.resets_at,
    )
    return document
