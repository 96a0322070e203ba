"""The blob pipeline: an image dropped into a container gets its analysis next to it.

One handler, :meth:`BlobPipeline.handle`, serves the Functions blob trigger
(:mod:`shared.blob.trigger`), ``watch`` and ``process`` (:mod:`shared.blob.watch`). It is
built on the same :class:`~shared.analysis.Analyzer` as the HTTP API (same preparation,
model client and cache); what to do with a blob is :mod:`shared.blob.jobs`. It keeps two
promises:

Nothing lost. Every blob ends as a result document: ``succeeded``, or ``failed`` with the
reason. Terminal input problems (not an image, undecodable, over limits, filtered) are
recorded and the original copied to quarantine, without raising, so the host does not
retry them pointlessly. Transient problems (model throttling or outage, storage
hiccups) raise :class:`TransientFailure` so the host redelivers; the result document
counts deliveries and, at ``VISION_MAX_ATTEMPTS``, records the failure instead of raising.
Past the daily spend budget a blob is ``deferred``, neither failed nor counted
(:mod:`shared.blob.deferral`).

Nothing paid twice. Before any model call a delivery *claims* the blob with a conditional
write of its result document, and every later write of it is conditional on that claim
(:mod:`shared.blob.claims`): of several deliveries of one blob, one works and the others skip.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient, ContainerClient

from shared.analysis import Analyzer
from shared.blob.claims import RESULT_VERSION, TERMINAL, Claim, ResultClaims, now_iso, quoted_etag
from shared.blob.deferral import BlobDeferred, deferred_document
from shared.blob.jobs import BlobJob, plan_job, result_name
from shared.config import Settings
from shared.errors import (
    BudgetExhausted,
    ContentFiltered,
    InputError,
    InvalidParameter,
    PayloadTooLarge,
    VisionError,
    redact,
)
from shared.extraction import ExtractionFailed, extract
from shared.quota.deadline import deadline_in
from shared.telemetry import invocation_span

log = logging.getLogger(__name__)


class TransientFailure(Exception):
    """Raised so the host redelivers the blob; ``attempts`` deliveries have failed so far."""

    def __init__(self, name: str, attempts: int, cause: str) -> None:
        cause = redact(cause)  # logged by the host and by watch: SDK text may quote keys
        super().__init__(f"{name}: attempt {attempts} failed transiently: {cause}")
        self.name = name
        self.attempts = attempts
        self.cause = cause


@contextlib.contextmanager
def storage_failures(name: str, attempts: int, what: str = "storage") -> Iterator[None]:
    """Storage errors as a redelivery (:class:`TransientFailure`): the one place the blob flow maps ``AzureError``."""
    try:
        yield
    except AzureError as exc:
        raise TransientFailure(name, attempts, f"{what}: {type(exc).__name__}") from exc


@dataclass
class Outcome:
    """What one delivery did: ``succeeded``, ``failed`` or ``skipped`` (with why)."""

    name: str
    status: str
    reason: str | None = None
    result_name: str | None = None
    document: dict[str, Any] | None = field(default=None, repr=False)


def _md5(properties: Any) -> str | None:
    digest = properties.content_settings.content_md5 if properties.content_settings else None
    return base64.b64encode(bytes(digest)).decode("ascii") if digest else None


class BlobPipeline:
    """Process blobs of the input container into the results container (see module doc)."""

    def __init__(self, analyzer: Analyzer, blob_service: BlobServiceClient, settings: Settings, *,
                 clock=time.time) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.blob_service = blob_service
        self.inputs: ContainerClient = blob_service.get_container_client(settings.input_container)
        self.results: ContainerClient = blob_service.get_container_client(settings.results_container)
        self.quarantine: ContainerClient = blob_service.get_container_client(settings.quarantine_container)
        self.schemas: ContainerClient = blob_service.get_container_client(settings.schemas_container)
        self.claims = ResultClaims(settings.claim_seconds, clock=clock)
        self._containers_ready = False
        # Result names a delivery in this process is working on right now.
        self._active: set[str] = set()

    def ensure_containers(self) -> None:
        """Create the three containers once (idempotent)."""
        if self._containers_ready:
            return
        for container in (self.inputs, self.results, self.quarantine):
            with contextlib.suppress(ResourceExistsError):
                container.create_container()
        self._containers_ready = True

    async def handle(self, blob: BlobClient, *, force: bool = False, listed: BlobProperties | None = None,
                     result_absent: bool = False) -> Outcome:
        """Process one blob; returns what happened, raises :class:`TransientFailure` to be retried.

        A backfill already knows things it would cost a storage call each to learn again: ``listed``
        is the blob's properties from a listing made with ``include=["metadata"]`` (no read of its
        properties), and ``result_absent`` says no result document is expected (the claim creates one
        straight away; if there is one, a redelivery's or an older version's, the creation fails and the
        claim reads it as usual). Both are only shortcuts: the download is conditional on the listed ETag and the
        claim on the result's, so a stale listing costs a skip, never a wrong result.

        Inside one invocation span (:mod:`shared.telemetry`): the model calls the blob makes are its children.
        """
        with invocation_span(f"blob {blob.container_name}", blob_name=blob.blob_name,
                             container=blob.container_name) as invocation:
            try:
                outcome = await self._handle_blob(blob, force=force, listed=listed, result_absent=result_absent)
            except TransientFailure as exc:
                invocation.set(attempt=exc.attempts, outcome="retry")
                raise
            invocation.set(attempt=(outcome.document or {}).get("attempts"), outcome=outcome.status)
            return outcome

    async def _handle_blob(self, blob: BlobClient, *, force: bool, listed: BlobProperties | None,
                           result_absent: bool) -> Outcome:
        name = blob.blob_name
        with storage_failures(name, 0):
            try:
                if not self._containers_ready:
                    await asyncio.to_thread(self.ensure_containers)
                properties = listed if listed is not None else await asyncio.to_thread(blob.get_blob_properties)
            except ResourceNotFoundError:
                return Outcome(name, "skipped", "the blob no longer exists")
        source = {
            "container": blob.container_name,
            "name": name,
            "etag": quoted_etag(properties.etag),
            "size": properties.size,
            "content_md5": _md5(properties),
            "content_type": properties.content_settings.content_type if properties.content_settings else None,
            "last_modified": properties.last_modified.isoformat() if properties.last_modified else None,
        }
        target = self.results.get_blob_client(result_name(name))
        if target.blob_name in self._active:
            return Outcome(name, "skipped", "another delivery is processing it", target.blob_name)
        self._active.add(target.blob_name)
        try:
            # A blob can wait minutes for its turn at the deployment's quota; past that it is redelivered.
            with deadline_in(self.settings.background_deadline_seconds):
                return await self._handle_claimed(blob, target, properties, source, force, result_absent)
        finally:
            self._active.discard(target.blob_name)

    async def _handle_claimed(self, blob: BlobClient, target: BlobClient, properties: Any,
                              source: dict[str, Any], force: bool, result_absent: bool) -> Outcome:
        name = blob.blob_name
        with storage_failures(name, 0):
            claim = await asyncio.to_thread(self.claims.claim, target, source, force, result_absent=result_absent)
        if isinstance(claim, str):
            return Outcome(name, "skipped", claim, target.blob_name)

        job: BlobJob | None = None
        try:
            job = plan_job(name, properties.metadata)
            if properties.size > self.settings.max_image_bytes:
                raise PayloadTooLarge(self.settings.max_image_bytes, properties.size)
            data = await asyncio.to_thread(self._download, blob, source["etag"])
            if data is None:
                return Outcome(name, "skipped", "the blob changed while being processed", target.blob_name)
            result = await self._run(job, data, last_attempt=claim.attempts >= self.settings.max_attempts)
        except BudgetExhausted as exc:
            await self._deferred(target, claim, source, job, exc)
        except (InputError, ContentFiltered, ExtractionFailed) as exc:
            return await self._terminal(blob, target, claim, source, job, exc)
        except (VisionError, AzureError, OSError) as exc:
            return await self._transient(target, claim, source, job, exc)
        document = {
            **{k: v for k, v in result.items() if k != "latency_ms"},
            "status": "succeeded",
            "blob": name,
            "prompt": job.options.prompt,
            "task": job.task,
            "source": source,
            "attempts": claim.attempts,
            "created_at": claim.created_at,
            "completed_at": now_iso(),
            "latency_ms": result.get("latency_ms"),
            "result_version": RESULT_VERSION,
        }
        await self._write_final(target, claim, document)
        return Outcome(name, "succeeded", None, target.blob_name, document)

    async def _run(self, job: BlobJob, data: bytes, *, last_attempt: bool) -> dict[str, Any]:
        """The same service functions the HTTP routes call: analysis, or structured extraction.

        On the last attempt the local engine may stand in for an unreachable model
        (``VISION_LOCAL_FALLBACK`` pipeline or all): OCR text marked ``degraded`` beats nothing.
        """
        if job.extraction is None:
            allow = last_attempt and self.settings.local_fallback != "off"
            return await self.analyzer.analyze(data, job.options, allow_fallback=allow)
        schema = await asyncio.to_thread(self._load_schema, job.schema_blob) if job.schema_blob else None
        return await extract(self.analyzer, data, job.extraction, schema=schema, prompt=job.options.prompt or None,
                             detail=job.options.detail, pages=job.options.pages)

    def _load_schema(self, name: str) -> dict[str, Any]:
        """A JSON Schema kept as a blob of the schemas container; a missing or bad one is the uploader's error."""
        try:
            raw = self.schemas.get_blob_client(name).download_blob().readall()
        except ResourceNotFoundError:
            raise InvalidParameter(
                "schema", f"no schema blob {name!r} in container {self.schemas.container_name!r}"
            ) from None
        try:
            schema = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidParameter("schema", f"schema blob {name!r} is not valid JSON") from None
        if not isinstance(schema, dict):
            raise InvalidParameter("schema", f"schema blob {name!r} must hold a JSON object")
        return schema

    def _download(self, blob: BlobClient, etag: str) -> bytes | None:
        try:
            return blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified).readall()
        except ResourceModifiedError:
            return None

    # -- endings --------------------------------------------------------------------------

    async def _write_final(self, target: BlobClient, claim: Claim, document: dict[str, Any]) -> None:
        with storage_failures(document["blob"], claim.attempts):
            try:
                await asyncio.to_thread(self.claims.write, target, claim, document)
            except ResourceModifiedError:
                # Our claim expired and another delivery took over: its result stands, ours is dropped.
                log.warning("result for %s was taken over by another delivery; keeping theirs", document["blob"])

    async def _terminal(self, blob: BlobClient, target: BlobClient, claim: Claim, source: dict[str, Any],
                        job: BlobJob | None, error: VisionError) -> Outcome:
        """Record a failure that retrying cannot fix, and keep the original in quarantine."""
        quarantined = result_name(source["name"], suffix="")
        with storage_failures(source["name"], claim.attempts, "quarantine"):
            await asyncio.to_thread(self._quarantine, blob, quarantined, error)
        document = self._failure_document(claim, source, job, error.to_problem())
        document["quarantined"] = f"{self.settings.quarantine_container}/{quarantined}"
        await self._write_final(target, claim, document)
        detail = document["error"]["detail"]
        log.info("blob %s failed: %s", source["name"], detail)
        return Outcome(source["name"], "failed", detail, target.blob_name, document)

    async def _transient(self, target: BlobClient, claim: Claim, source: dict[str, Any], job: BlobJob | None,
                         error: Exception) -> Outcome:
        """Raise for a redelivery, or record the failure once ``max_attempts`` deliveries failed."""
        problem = error.to_problem() if isinstance(error, VisionError) else {
            "type": "/problems/storage-error", "title": "Storage error", "status": 503,
            "detail": f"{type(error).__name__} while reading the blob"}
        if claim.attempts >= self.settings.max_attempts:
            document = self._failure_document(claim, source, job, problem)
            document["error"]["detail"] += f" (gave up after {claim.attempts} attempts)"
            await self._write_final(target, claim, document)
            detail = document["error"]["detail"]
            log.warning("blob %s failed: %s", source["name"], detail)
            return Outcome(source["name"], "failed", detail, target.blob_name, document)
        document = {**self._failure_document(claim, source, job, problem), "status": "retrying"}
        try:
            await asyncio.to_thread(self.claims.write, target, claim, document)
        except AzureError:
            log.warning("could not record retry state of %s", source["name"])
        raise TransientFailure(source["name"], claim.attempts, problem["detail"]) from error

    async def _deferred(self, target: BlobClient, claim: Claim, source: dict[str, Any], job: BlobJob | None,
                        error: BudgetExhausted) -> NoReturn:
        """Past the budget: record ``deferred`` (the claimed attempt given back) and raise for a later delivery."""
        document = deferred_document(self._failure_document(claim, source, job, error.to_problem()), error)
        try:
            await asyncio.to_thread(self.claims.write, target, claim, document)
        except AzureError:
            log.warning("could not record the deferral of %s", source["name"])
        log.info("blob %s deferred until %s: daily spend budget used up", source["name"], error.resets_at)
        raise BlobDeferred(source["name"], error) from error

    def _failure_document(self, claim: Claim, source: dict[str, Any], job: BlobJob | None,
                          problem: dict[str, Any]) -> dict[str, Any]:
        """The ``failed`` result; its error detail redacted, since readers of results are not admins."""
        return {
            "status": "failed", "blob": source["name"], "error": {**problem, "detail": redact(problem["detail"])},
            "task": job.task if job else None, "prompt": job.options.prompt if job else None,
            "source": source, "attempts": claim.attempts, "created_at": claim.created_at,
            "completed_at": now_iso(), "result_version": RESULT_VERSION,
        }

    def _quarantine(self, blob: BlobClient, name: str, error: VisionError) -> None:
        """Server-side copy of the original: no download, so over-limit blobs are kept too."""
        copy = self.quarantine.get_blob_client(name)
        copy.start_copy_from_url(blob.url, metadata={"reason": error.slug, "source_container": blob.container_name})

    # -- reading results ------------------------------------------------------------------

    def read_result(self, name: str) -> dict[str, Any] | None:
        """The result document for input blob ``name``, or None when there is none yet."""
        try:
            return json.loads(self.results.get_blob_client(result_name(name)).download_blob().readall())
        except ResourceNotFoundError:
            return None

    def blob_client(self, name: str) -> BlobClient:
        return self.inputs.get_blob_client(name)

    def needs_processing(self, name: str, etag: str, result_metadata: dict[str, str] | None) -> bool:
        """From a listing alone: no result, a result for another version, or one not final."""
        if not result_metadata:
            return True
        if result_metadata.get("source_etag") != str(etag).strip('"'):
            return True
        return result_metadata.get("status") not in TERMINAL
