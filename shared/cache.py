"""The answer cache in Azure Table Storage, so nobody pays twice for the same question.

Keys come from the raw uploaded bytes before any decoding (:func:`cache_key`), so a hit
costs one hash and one point read. Values are analysis result dicts, stored as JSON.

Storage is an optimisation, never a dependency: every call has short timeouts and one
retry, and any storage problem becomes a miss (``get``) or a no-op (``put``) with one
WARNING and :attr:`AnswerCache.last_error` set, so a dead or slow account degrades the
service to "uncached" instead of failing or hanging requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlparse

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContentSettings, LinearRetry

from shared.cache_entity import BlobSpill, CorruptEntry, decode_payload, encode_payload, plan_entity, table_payload
from shared.errors import ConfigError, describe
from shared.storage import environment_options, normalise_connection_string

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.config import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Hashed into every key: bump it when the meaning of a cached answer changes (prompt
#: templates, result shape...) and old entries simply stop matching, then expire.
CACHE_VERSION = "1"
DEFAULT_TABLE = "visioncache"
DEFAULT_CONTAINER = "vision-cache"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
#: Results never stored: served from the cache, a failure would stick for a week.
REFUSED_STATUSES = frozenset({"failed", "content_filtered"})


def cache_key_hasher(
    *, deployment: str, prompt: str, detail: str, max_tokens: int | None, extra: Mapping[str, str] | None = None,
) -> Any:
    """A SHA-256 fed with everything of :func:`cache_key` but the image bytes: ``update`` it with them
    (at once, or chunk by chunk as an upload streams in) and its ``hexdigest()`` is the key.

    The fields come first in the hash, so a caller that knows them before the body arrives (a raw
    upload, whose parameters are all in the query string) hashes the bytes as they arrive instead
    of in a second pass over up to 20 MiB.
    """
    fields = {"version": CACHE_VERSION, "deployment": deployment, "prompt": prompt, "detail": detail,
              "max_tokens": max_tokens, "extra": dict(extra or {})}
    header = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    digest = hashlib.sha256(len(header).to_bytes(8, "big"))
    digest.update(header)
    return digest


def cache_key(
    image_bytes: bytes | bytearray | memoryview, *, deployment: str, prompt: str, detail: str,
    max_tokens: int | None, extra: Mapping[str, str] | None = None,
) -> str:
    """Hex SHA-256 of the raw image bytes and everything else that changes the answer.

    The fields are JSON-encoded (so ``("ab", "c")`` and ``("a", "bc")`` differ) and length-prefixed
    ahead of the image bytes, fed uncopied (a streaming caller feeds them piecewise to
    :func:`cache_key_hasher`). ``extra`` (schema hash, task...) is order-independent, and None
    equals ``{}`` so adding it later keeps existing keys.
    """
    digest = cache_key_hasher(deployment=deployment, prompt=prompt, detail=detail, max_tokens=max_tokens, extra=extra)
    digest.update(image_bytes)
    return str(digest.hexdigest())


def _describe(exc: BaseException) -> str:
    """One line about a failure for logs and health checks, anything key-like redacted (one redaction for all)."""
    return describe(exc)


def _sdk_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pop the timeout options; the table and blob client keywords (short timeouts, 1 retry, the
    environment read once: :func:`shared.storage.environment_options`)."""
    timeouts = {"connection_timeout": options.pop("connection_timeout", 2.0),
                "read_timeout": options.pop("read_timeout", 5.0), **environment_options()}
    retries = options.pop("retry_total", 1)
    # The blob SDK's default retry waits 15 s before retrying: far too long for a request.
    retry = LinearRetry(backoff=0.5, retry_total=retries, random_jitter_range=0)
    return {**timeouts, "retry_total": retries}, {**timeouts, "retry_policy": retry}


class AnswerCache:
    """Analysis results in a table, oversized ones spilled to a blob container.

    Build it with :meth:`from_connection_string`, :meth:`from_endpoint` (keyless) or
    :meth:`from_settings`. The SDK is synchronous: async callers use :meth:`aget`,
    :meth:`aput` and :meth:`aping`, which run it in a worker thread. After a storage
    failure the cache makes no calls for ``cooldown_seconds``, so a slow account costs one
    timeout rather than one per request; :meth:`ping` ignores the cooldown. ``clock``
    (epoch seconds) decides expiry, so tests need not sleep.
    """

    def __init__(
        self, table_service: TableServiceClient, blob_service: BlobServiceClient | None = None, *,
        table_name: str = DEFAULT_TABLE, container_name: str = DEFAULT_CONTAINER,
        ttl_seconds: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.time,
        cooldown_seconds: float = 15.0,
    ) -> None:
        self.table_name, self.container_name = table_name, container_name
        self.ttl_seconds, self.cooldown_seconds = ttl_seconds, cooldown_seconds
        self._clock = clock
        self._services = (table_service, blob_service)
        self._table = table_service.get_table_client(table_name)
        self._container = blob_service.get_container_client(container_name) if blob_service else None
        self._table_ready = self._container_ready = False
        self._quiet_until = 0.0
        #: Storage failures since start, and the last one (None again once storage answers).
        self.errors = 0
        self.last_error: str | None = None

    @classmethod
    def from_connection_string(cls, connection_string: str, **options: Any) -> AnswerCache:
        """From a storage connection string; ``UseDevelopmentStorage=true`` is local Azurite.

        ``options``: ``connection_timeout`` (2 s), ``read_timeout`` (5 s), ``retry_total``
        (1), and the constructor's keywords.
        """
        table_options, blob_options = _sdk_options(options)
        conn = normalise_connection_string(connection_string)
        tables = TableServiceClient.from_connection_string(conn, **table_options)
        return cls(tables, BlobServiceClient.from_connection_string(conn, **blob_options), **options)

    @classmethod
    def from_endpoint(
        cls, table_endpoint: str, credential: TokenCredential, *, blob_endpoint: str | None = None,
        **opts: Any,
    ) -> AnswerCache:
        """Keyless: an account endpoint and an ``azure.identity`` credential (options as above).

        Without ``blob_endpoint`` it is derived from a standard ``<account>.table.<suffix>``
        host; if it cannot be, oversized answers are simply not cached.
        """
        table_options, blob_options = _sdk_options(opts)
        host = urlparse(table_endpoint).netloc
        if blob_endpoint is None and ".table." in host:
            blob_endpoint = table_endpoint.replace(host, host.replace(".table.", ".blob.", 1), 1)
        tables = TableServiceClient(endpoint=table_endpoint, credential=credential, **table_options)
        blobs = None
        if blob_endpoint:
            blobs = BlobServiceClient(blob_endpoint, credential=credential, **blob_options)
        return cls(tables, blobs, **opts)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, credential: Callable[[], TokenCredential] | None = None
    ) -> AnswerCache | None:
        """From ``AzureWebJobsStorage`` or, keyless, ``AzureWebJobsStorage__tableServiceUri``.

        Keyless access uses the credential ``credential()`` makes (see
        :func:`shared.services.default_credential`). None (logged) when neither setting is
        there, so the CLI works without storage.
        """
        options = {"table_name": settings.cache_table, "container_name": settings.cache_container,
                   "ttl_seconds": settings.cache_ttl_seconds}
        if settings.storage_connection_string:
            try:
                return cls.from_connection_string(settings.storage_connection_string, **options)
            except ValueError:
                raise ConfigError("AzureWebJobsStorage", "is not a valid storage connection string") from None
        if settings.table_service_uri:
            if credential is None:
                raise ConfigError("AzureWebJobsStorage__tableServiceUri", "keyless access needs an Entra ID credential")
            return cls.from_endpoint(settings.table_service_uri, credential(), **options)
        logger.info("answer cache off: neither AzureWebJobsStorage nor its __tableServiceUri is set")
        return None

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached result, or None on a miss, expiry, corruption or storage trouble."""
        return self._guarded("get", lambda: self._get(key), None)

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` for ``ttl_seconds``; never raises.

        The caller decides what to cache, but as a guard a value whose ``status`` is in
        :data:`REFUSED_STATUSES` (or a non-dict) is refused: logged and not stored.
        """
        if not isinstance(value, dict) or value.get("status") in REFUSED_STATUSES:
            logger.info("answer cache: refusing to store a failed or non-dict result")
            return
        try:
            payload = encode_payload(value)
        except (TypeError, ValueError) as exc:
            logger.warning("answer cache: result is not JSON-serialisable, not cached: %s", _describe(exc))
            return
        now = self._clock()
        meta = {"created_at": datetime.fromtimestamp(now, UTC),
                "expires_at": datetime.fromtimestamp(now + self.ttl_seconds, UTC)}
        plan = plan_entity(key, payload, meta=meta)
        self._guarded("put", lambda: self._put(plan), None)

    def ensure_table(self) -> bool:
        """Create the table if needed: once, and again on a later call if storage was down."""
        return self._guarded("ensure_table", self._ensure_table, False)

    def ping(self) -> Literal[True] | str:
        """True when table storage answers, else a short reason without secrets (for /health)."""
        try:
            self._ensure_table()
            self._table.get_entity(partition_key="ping", row_key="ping")
        except ResourceNotFoundError:
            pass
        except Exception as exc:
            self._failed("ping", exc)
            return self.last_error or "unreachable"
        self._recovered()
        return True

    async def aget(self, key: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.get, key)

    async def aput(self, key: str, value: dict[str, Any]) -> None:
        await asyncio.to_thread(self.put, key, value)

    async def aping(self) -> Literal[True] | str:
        return await asyncio.to_thread(self.ping)

    def close(self) -> None:
        for service in self._services:
            if service is not None:
                service.close()

    def _guarded(self, operation: str, call: Callable[[], T], default: T) -> T:
        """Run a storage operation; a failure is logged once, recorded, and becomes ``default``."""
        if time.monotonic() < self._quiet_until:
            logger.debug("answer cache %s skipped: storage failed recently", operation)
            return default
        try:
            result = call()
        except Exception as exc:  # a cache must never fail the request it serves
            self._failed(operation, exc)
            return default
        self._recovered()
        return result

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = _describe(exc)
        self._quiet_until = time.monotonic() + self.cooldown_seconds
        logger.warning("answer cache %s failed, continuing uncached: %s", operation, self.last_error)

    def _recovered(self) -> None:
        self.last_error, self._quiet_until = None, 0.0

    def _ensure_table(self) -> bool:
        if not self._table_ready:
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._table_ready = True
        return True

    def _get(self, key: str) -> dict[str, Any] | None:
        self._ensure_table()
        try:
            entity = self._table.get_entity(partition_key=key[:2], row_key=key)
        except ResourceNotFoundError as exc:
            self._table_ready = exc.error_code != "TableNotFound"  # deleted behind our back
            return None
        try:
            expires_at = entity.get("expires_at")
            if not isinstance(expires_at, datetime):
                raise CorruptEntry("no expires_at")
            if self._clock() >= expires_at.timestamp():
                self._forget(entity)
                return None
            if entity.get("storage") == "blob":
                return decode_payload(self._read_blob(entity), entity.get("sha256"))
            return decode_payload(table_payload(entity), entity.get("sha256"))
        except CorruptEntry as exc:
            logger.warning("answer cache entry %s... is corrupt (%s): treated as a miss", key[:12], exc)
            return None

    def _read_blob(self, entity: Mapping[str, Any]) -> bytes:
        if self._container is None:
            raise CorruptEntry("entry is in a blob but no blob storage is configured")
        try:
            return self._container.download_blob(str(entity.get("blob"))).readall()
        except ResourceNotFoundError:
            raise CorruptEntry("its blob is missing") from None

    def _put(self, plan: dict[str, Any] | BlobSpill) -> None:
        self._ensure_table()
        entity = plan
        if isinstance(plan, BlobSpill):
            if self._container is None:
                logger.warning("answer cache: result too big for an entity and no blob storage; not cached")
                return
            if not self._container_ready:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._container_ready = True
            self._container.upload_blob(plan.blob_name, plan.payload.encode("utf-8"), overwrite=True,
                                        content_settings=ContentSettings(content_type="application/json"))
            entity = plan.entity
        # REPLACE, not MERGE: chunks of an older, longer value must not linger.
        self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def _forget(self, entity: Any) -> None:
        """Best-effort delete of an expired entry, only if nobody rewrote it since we read it."""
        try:
            self._table.delete_entity(entity["PartitionKey"], entity["RowKey"], etag=entity.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
            if entity.get("storage") == "blob" and self._container is not None:
                self._container.delete_blob(str(entity.get("blob")))
        except Exception as exc:
            logger.debug("answer cache: could not delete an expired entry: %s", _describe(exc))
