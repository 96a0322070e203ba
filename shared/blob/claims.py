"""Result documents written with conditional requests: how deliveries of one blob agree who works on it.

Event Grid delivers at least once and multi-block uploads fire several events, so several deliveries
of one blob may run at once, in one process or in several. Before any model call a delivery *claims*
the blob by creating its result document with ``If-None-Match: *`` (or replacing a stale one with
``If-Match``); the losing delivery sees the claim and skips. A final result for the same source ETag
means the work is done. Conditional writes, not locks, so a crashed worker's claim simply expires
after ``VISION_CLAIM_SECONDS``. Every write of a result, the final one included, is conditional on
the ETag of the claim it follows: a delivery whose claim was taken over cannot overwrite the winner.

Synchronous storage calls: :mod:`shared.blob.pipeline` runs them in a worker thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContentSettings

RESULT_VERSION = 1
TERMINAL = ("succeeded", "failed")


def now_iso() -> str:
    """UTC now as results record it, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def quoted_etag(etag: str) -> str:
    """An ETag as response headers give it: a listing gives it bare, and results must compare equal."""
    return etag if etag.startswith(('"', 'W/"')) else f'"{etag}"'


@dataclass(frozen=True)
class Claim:
    """A delivery's hold on a result document: the ETag to write over, and the attempt it is."""

    etag: str
    attempts: int
    created_at: str


class ResultClaims:
    """Claims on result documents, and the conditional writes that follow them (see module doc)."""

    def __init__(self, claim_seconds: float, *, clock: Callable[[], float] = time.time) -> None:
        self.claim_seconds = claim_seconds
        self._clock = clock
        # Claims this process holds (result name -> claim ETag): a retry in this process
        # resumes its own claim instead of waiting for it to expire.
        self._owned: dict[str, str] = {}

    def claim(self, target: BlobClient, source: dict[str, Any], force: bool, *,
              result_absent: bool = False) -> Claim | str:
        """Create or take over the result document; a string says why this delivery skips.

        With ``result_absent`` the first try creates the document without reading it first.
        """
        for attempt in range(3):  # a lost race re-reads once or twice, then decides
            if result_absent and attempt == 0:
                existing, etag = None, None
            else:
                existing, etag = read_result_document(target)
            same_source = bool(existing) and (existing.get("source") or {}).get("etag") == source["etag"]
            if existing:
                status = existing.get("status")
                if same_source and status in TERMINAL and not force:
                    return f"already {status} for this version of the blob"
                ours = self._owned.get(target.blob_name) == etag
                if same_source and status == "processing" and self._is_fresh(existing) and not ours:
                    return "another delivery is processing it"
            previous = existing if same_source else {}
            document = {
                "status": "processing", "blob": source["name"], "source": source,
                "attempts": previous.get("attempts", 0) + 1, "claimed_at": self._clock(),
                "created_at": previous.get("created_at") or now_iso(),
                "result_version": RESULT_VERSION,
            }
            try:
                written = write_result(target, document, etag=etag)
            except (ResourceExistsError, ResourceModifiedError):
                continue
            self._owned[target.blob_name] = written
            return Claim(written, document["attempts"], document["created_at"])
        return "another delivery claimed it first"

    def write(self, target: BlobClient, claim: Claim, document: dict[str, Any]) -> None:
        """Replace the claimed document (raises ``ResourceModifiedError`` when the claim was taken over).

        The claim is let go once written or lost; a write that failed otherwise (storage unreachable)
        keeps it, so this process's retry resumes its own claim instead of waiting for it to expire.
        """
        try:
            write_result(target, document, etag=claim.etag)
        except ResourceModifiedError:
            self._owned.pop(target.blob_name, None)
            raise
        self._owned.pop(target.blob_name, None)

    def _is_fresh(self, document: dict[str, Any]) -> bool:
        claimed_at = document.get("claimed_at")
        return isinstance(claimed_at, int | float) and self._clock() - claimed_at < self.claim_seconds


def read_result_document(target: BlobClient) -> tuple[dict[str, Any] | None, str | None]:
    """The result document and its ETag; (None, None) when there is none, ({}, etag) when unreadable."""
    try:
        current = target.download_blob()
        return json.loads(current.readall()), current.properties.etag
    except ResourceNotFoundError:
        return None, None
    except (ValueError, UnicodeDecodeError):
        return {}, target.get_blob_properties().etag  # unreadable: taken over


def write_result(target: BlobClient, document: dict[str, Any], *, etag: str | None) -> str:
    """Write a result document: create-only without ``etag``, replace-if-unchanged with it; its new ETag.

    The metadata (status, source ETag, attempts) lets a listing of the results container tell what is
    done without reading any document (:mod:`shared.blob.watch`).
    """
    body = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
    metadata = {"status": document["status"], "source_etag": str(document["source"]["etag"]).strip('"'),
                "attempts": str(document.get("attempts", 0))}
    condition: dict[str, Any]
    if etag is None:
        condition = {"overwrite": False}
    else:
        condition = {"overwrite": True, "etag": etag, "match_condition": MatchConditions.IfNotModified}
    response = target.upload_blob(
        body, metadata=metadata, content_settings=ContentSettings(content_type="application/json"), **condition
    )
    return response["etag"]
