"""Analyse one image: the service function every edge calls (HTTP, CLI, blob trigger).

Order matters for cost: the cache key is computed from the raw bytes before any
decoding, so a cache hit costs one hash and one table read, no decode and no
model call. Only on a miss is the image sniffed, prepared and sent.

Concurrent identical requests in one process share one model call
(single-flight), so a burst of duplicates does not pay N times while the first
answer is still on its way to the cache.

The :class:`Analyzer` is handed its provider and cache (:func:`shared.services.build_analyzer`
wires them from settings), so this layer never decides which model or storage it talks to.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from shared.analysis_options import AnalysisOptions, validate_options
from shared.cache import AnswerCache, cache_key, cache_key_hasher
from shared.config import Settings
from shared.document_analysis import analyze_pages, check_pages_parameter, read_document
from shared.documents.reader import sniff_document
from shared.errors import (
    ModelError,
    ModelNotConfigured,
    ModelThrottled,
    ModelUnavailable,
    NotSupported,
    PayloadTooLarge,
    UnsupportedImage,
)
from shared.imaging import PreparedImage, image_size, prepare_image, select_detail_level
from shared.providers.base import Completion, Provider, Usage, VisionRequest
from shared.tasks import TEXT_TASKS
from shared.telemetry import answer_served
from shared.tokens import estimate_cost, get_model_spec, load_model_overrides

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class AnswerKey:
    """The cache key of one request, and how to key the same request answered by another deployment."""

    value: str
    deployment: str
    #: (deployment, engine) -> key; engine is what answers there (the deployment, or the model's name).
    _make: Callable[[str, str], str]

    def answered_by(self, deployment: str | None) -> str:
        """The key an answer from ``deployment`` is stored under: this one for the primary, its own otherwise."""
        if not deployment or deployment == self.deployment:
            return self.value
        return self._make(deployment, deployment)


@dataclass
class StreamedKey:
    """The primary deployment's cache key of an analysis, hashed while its upload streams in.

    Made by :meth:`Analyzer.start_analysis_key` from options known before the body (a raw upload's
    query string); the reader calls :meth:`update` per chunk, and :meth:`Analyzer.analyze` then takes
    the key from it instead of hashing up to 20 MiB again. ``received`` guards against a reader that
    fed other bytes than it returned.
    """

    options: AnalysisOptions
    hasher: Any
    received: int = 0

    def update(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.received += len(chunk)


class Analyzer:
    """Holds the long-lived parts (settings, provider, cache) and analyses images with them.

    The steps are public so other services (extraction, multi-image) reuse them
    instead of copying them: :meth:`check_upload`, :meth:`key_for`, :meth:`cached`
    (cache read, single-flight, cache write) and :meth:`prepare`.
    """

    def __init__(self, settings: Settings, provider: Provider, cache: AnswerCache | None,
                 fallback: Provider | None = None) -> None:
        self.settings = settings
        self.provider = provider
        self.cache = cache
        #: Answers (marked ``degraded``) when the model service is unreachable after its retries.
        self.fallback = fallback
        self.model_overrides = load_model_overrides(settings.model_table_json) if settings.model_table_json else None
        #: One task per cache key being computed; owned here, not by any caller (see :meth:`cached`).
        self._in_flight: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def analyze(self, data: bytes, options: AnalysisOptions, *, allow_fallback: bool | None = None,
                      streamed: StreamedKey | None = None) -> dict[str, Any]:
        """The analysis result dict (see README, "POST /api/analyze"); raises :mod:`shared.errors`.

        ``allow_fallback`` (default: ``VISION_LOCAL_FALLBACK=all``) lets the local engine answer,
        marked ``degraded`` and never cached, when the model service is down after its retries.
        ``streamed``: the key already hashed from ``data`` as it arrived (:meth:`start_analysis_key`).
        """
        started = time.perf_counter()
        options = validate_options(options, self.settings)
        self.check_upload(data)
        key = await self.make_key(data, options, streamed=streamed, **_analysis_extra(options))
        if allow_fallback is None:
            allow_fallback = self.settings.local_fallback == "all"

        async def compute() -> dict[str, Any]:
            assert options.max_tokens is not None
            kind = await asyncio.to_thread(sniff_document, data)
            pages = check_pages_parameter(options.pages, kind)
            if kind is not None:
                return await self._analyze_document(data, kind, options, pages, allow_fallback=allow_fallback)
            prepared = await self.prepare(data, options.detail, options.task)
            request = VisionRequest(prompt=options.prompt, images=(prepared,), max_tokens=options.max_tokens,
                                    task=options.task)
            try:
                completion = await self.provider.complete(request)
            except (ModelUnavailable, ModelThrottled) as exc:
                if not (allow_fallback and self.fallback is not None):
                    raise
                return await self._degraded(data, options, request, exc)
            return self.build_result(completion, prepared, data, task=options.task)

        result = await self.cached(key, compute)
        return {**result, "latency_ms": _elapsed_ms(started)}

    async def _analyze_document(self, data: bytes, kind: str, options: AnalysisOptions, pages: str | None, *,
                                allow_fallback: bool) -> dict[str, Any]:
        """A PDF or multi-page TIFF: its pages in as few requests as the limits allow (shared.document_analysis).

        When the model is unreachable and a stand-in is allowed, the local engine reads the document
        instead (its own detail and quality, so the pages are prepared again), marked ``degraded``.
        """
        assert options.max_tokens is not None
        document = await read_document(self, data, kind, detail=options.detail, pages=pages)
        try:
            answer = await analyze_pages(self, document, prompt=options.prompt, max_tokens=options.max_tokens,
                                         task=options.task)
        except (ModelUnavailable, ModelThrottled) as exc:
            if not (allow_fallback and self.fallback is not None):
                raise
            stand_in = _StandIn(self.settings, self.fallback, self.model_overrides, self.estimate_cost)
            document = await read_document(stand_in, data, kind, detail=options.detail, pages=pages)
            try:
                answer = await analyze_pages(stand_in, document, prompt=options.prompt,
                                             max_tokens=options.max_tokens, task=options.task)
            except (NotSupported, ModelNotConfigured):
                raise exc from None
            log.warning("model service unavailable (%s): the local engine read the document, marked degraded",
                        exc.detail)
            answer = {**answer, "degraded": True, "degraded_reason": exc.detail}
        first = document.pages[0].image
        return {**answer, "detail": first.detail, "task": options.task, "cached": False,
                "image": image_info(first, data)}

    async def _degraded(self, data: bytes, options: AnalysisOptions, request: VisionRequest,
                        cause: ModelError) -> dict[str, Any]:
        """The local engine's answer in place of the unreachable model, or the original error."""
        assert self.fallback is not None
        prepared = await self.prepare(data, options.detail, options.task, provider=self.fallback)
        try:
            completion = await self.fallback.complete(replace(request, images=(prepared,)))
        except (NotSupported, ModelNotConfigured):
            raise cause from None  # the engine cannot stand in for this request: the outage is the answer
        log.warning("model service unavailable (%s): answered by the local engine, marked degraded", cause.detail)
        result = self.build_result(completion, prepared, data, task=options.task)
        return {**result, "provider": self.fallback.name, "degraded": True, "degraded_reason": cause.detail}

    def check_upload(self, data: bytes) -> None:
        """Refuse empty and over-limit uploads before any work."""
        if len(data) > self.settings.max_image_bytes:
            raise PayloadTooLarge(self.settings.max_image_bytes, len(data))
        if not data:
            raise UnsupportedImage("the request holds no image bytes")

    def key_for(self, data: bytes, options: AnalysisOptions, *, streamed: StreamedKey | None = None,
                **extra: str) -> AnswerKey:
        """The cache key: raw bytes plus everything that changes the answer (no decoding).

        Keyed under the primary deployment; an answer a fallback deployment gave is stored under that
        deployment's key instead (:meth:`AnswerKey.answered_by`), so it is never served as the primary's.
        With ``streamed`` (fed ``data`` as it arrived, for these very options) the primary's key is its digest.
        """
        def key(deployment: str, engine: str) -> str:
            return cache_key(data, **self._key_fields(options, deployment, engine, extra))

        primary, engine = self._primary
        if streamed is None:
            return AnswerKey(key(primary, engine), primary, key)
        if streamed.options != options or streamed.received != len(data):
            raise ValueError("the streamed key was hashed for other options or other bytes")
        return AnswerKey(str(streamed.hasher.hexdigest()), primary, key)

    @property
    def _primary(self) -> tuple[str, str]:
        """The deployment and engine answers are keyed under first: one place for whole and streamed keys."""
        return self.settings.deployment_name or "", self.provider.model

    def _key_fields(self, options: AnalysisOptions, deployment: str, engine: str, extra: dict[str, str]
                    ) -> dict[str, Any]:
        """What :func:`~shared.cache.cache_key` hashes besides the bytes: one place, so streamed keys match."""
        return {"deployment": deployment, "prompt": options.prompt, "detail": options.detail or "",
                "max_tokens": options.max_tokens,
                "extra": {"task": options.task or "", "provider": self.provider.name, "engine": engine, **extra}}

    def start_analysis_key(self, options: AnalysisOptions) -> StreamedKey:
        """The key :meth:`analyze` would make for ``options``, ready to be fed the upload as it streams in.

        Raises :class:`InvalidParameter` as :meth:`analyze` would (the options are validated here).
        """
        options = validate_options(options, self.settings)
        fields = self._key_fields(options, *self._primary, _analysis_extra(options))
        return StreamedKey(options, cache_key_hasher(**fields))

    async def make_key(self, data: bytes, options: AnalysisOptions, *, streamed: StreamedKey | None = None,
                       **extra: str) -> AnswerKey:
        """:meth:`key_for` in a worker thread: hashing a 20 MiB upload takes tens of milliseconds, which the
        event loop (shared by every request and the blob trigger) must not spend. A streamed key is done."""
        if streamed is not None:
            return self.key_for(data, options, streamed=streamed, **extra)
        return await asyncio.to_thread(self.key_for, data, options, **extra)

    async def cached(self, key: AnswerKey, compute: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """``compute()`` at most once per key: served from the cache, or shared with a call in flight.

        Only successes are stored: an exception from ``compute`` propagates and nothing is cached.
        The returned dict has ``cached`` set; ``latency_ms`` is the caller's to add.

        The work runs as a task the analyzer owns and every caller awaits it through
        :func:`asyncio.shield`: a caller that goes away (client disconnected, timeout) is cancelled
        alone, while the others sharing the key still get the answer, and it is cached even if every
        caller left, so their retry costs nothing. :meth:`aclose` cancels what is still running.

        Every answer served here is logged once (:func:`shared.telemetry.answer_served`), hits included.
        """
        started = time.perf_counter()
        stored = await self._cache_get(key.value)
        if stored is not None:
            answer_served(stored, cache_hit=True, latency_ms=_elapsed_ms(started), provider=self.provider.name)
            return {**stored, "cached": True}
        task = self._in_flight.get(key.value)
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            task = None  # left by an event loop that has ended (a test client's or a portal's): not joinable
        joined = task is not None
        if task is None:
            task = asyncio.create_task(self._compute_and_store(key, compute), name=f"analysis {key.value[:16]}")
            self._in_flight[key.value] = task
            task.add_done_callback(functools.partial(self._forget, key.value))
        result = dict(await asyncio.shield(task))
        answer_served(result, cache_hit=False, joined=joined, latency_ms=_elapsed_ms(started),
                      provider=self.provider.name)
        return result

    async def _compute_and_store(self, key: AnswerKey, compute: Callable[[], Awaitable[dict[str, Any]]]
                                 ) -> dict[str, Any]:
        result = {**(await compute()), "cached": False}
        if not result.get("degraded"):  # a stand-in answer must not stick once the model is back
            # A fallback deployment's key hashes the bytes again: off the event loop, like every key.
            stored_under = await asyncio.to_thread(key.answered_by, result.get("deployment"))
            await self._cache_put(stored_under, result)
        return result

    @property
    def in_flight(self) -> int:
        """Distinct analyses running now, each shared by all its callers, including any whose callers all left."""
        return len(self._in_flight)

    def _forget(self, key: str, task: asyncio.Task[dict[str, Any]]) -> None:
        """Drop a finished task; only after its cache write, so a newcomer finds one or the other."""
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # retrieved: callers re-raise it; with no caller left, asyncio must not log it

    async def prepare(self, data: bytes, detail: str | None, task: str | None, *,
                      provider: Provider | None = None, model: str | None = None,
                      reads_text: bool | None = None) -> PreparedImage:
        """Sniff, check and prepare one image off the event loop; detail chosen from task and size if None.

        A provider that bills nothing (the local engine) may ask for its own detail and JPEG quality.
        ``model`` changes only the token estimate (default: the model the settings name). ``reads_text``
        (default: whether ``task`` reads text) keeps glyph edges sharp at some CPU cost (prepare_image).
        """
        reads_text = task in TEXT_TASKS if reads_text is None else reads_text
        provider = provider or self.provider
        detail = provider.preferred_detail or detail
        quality = provider.preferred_jpeg_quality or self.settings.jpeg_quality

        def work() -> PreparedImage:  # in a worker thread: header parsing included, Pillow never runs on the loop
            chosen = detail
            if chosen is None:
                width, height, _ = image_size(data)
                chosen = select_detail_level(task, width, height)
            return prepare_image(data, chosen, model=model or self.settings.estimation_model,
                                 max_pixels=self.settings.max_image_pixels, jpeg_quality=quality,
                                 model_overrides=self.model_overrides,
                                 to_service_view=provider.shrinks_to_service_view, reads_text=reads_text)

        return await asyncio.to_thread(work)

    def estimate_cost(self, usage: Usage, model: str | None = None) -> float:
        """USD for ``usage`` at ``model``'s prices (default: the model the settings name)."""
        spec = get_model_spec(model or self.settings.estimation_model, self.model_overrides)
        cost = estimate_cost(usage.prompt_tokens, usage.completion_tokens, spec.name, self.model_overrides)
        return round(cost, 6)

    def build_result(
        self, completion: Completion, prepared: PreparedImage, data: bytes, *, task: str | None
    ) -> dict[str, Any]:
        """The fields every single-image answer shares (HTTP response, blob result, batch line)."""
        return {
            "analysis": completion.text,
            "model": completion.model,
            "deployment": completion.deployment or self.settings.deployment_name,
            "provider": self.provider.name,
            "detail": prepared.detail,
            "task": task,
            "cached": False,
            "finish_reason": completion.finish_reason,
            "usage": completion.usage.as_dict(),
            "estimated_cost_usd": self.estimate_cost(completion.usage, completion.pricing_model),
            "image": image_info(prepared, data),
            **({"call": completion.call} if completion.call else {}),
        }

    async def _cache_get(self, key: str) -> dict[str, Any] | None:
        if self.cache is None:
            return None
        return await self.cache.aget(key)

    async def _cache_put(self, key: str, result: dict[str, Any]) -> None:
        if self.cache is None:
            return
        # What one call took (latency, quota waits) describes that call, not the answer a later hit serves.
        stored = {k: v for k, v in result.items() if k not in {"cached", "latency_ms", "call"}}
        await self.cache.aput(key, stored)

    async def aclose(self) -> None:
        """Cancel and await the work still in flight (its callers see the cancellation), then close."""
        outstanding = list(self._in_flight.values())
        for task in outstanding:
            task.cancel()
        await asyncio.gather(*outstanding, return_exceptions=True)
        await self.provider.aclose()
        if self.cache is not None:
            await asyncio.to_thread(self.cache.close)


@dataclass(frozen=True)
class _StandIn:
    """The analyzer's settings with the local engine as the provider: a document read when the model is down."""

    settings: Settings
    provider: Provider
    model_overrides: Any
    estimate_cost: Callable[..., float]


def _analysis_extra(options: AnalysisOptions) -> dict[str, str]:
    """What an analysis adds to its key beyond the options every call keys on: the pages asked for."""
    return {"pages": options.pages} if options.pages else {}


def image_info(prepared: PreparedImage, data: bytes) -> dict[str, Any]:
    """What the caller is told about an image: what was sent, what the service will see, what came in."""
    service = prepared.service_size
    return {
        "width": prepared.width,
        "height": prepared.height,
        "bytes": len(prepared.data),
        "format": prepared.format,
        "original_width": prepared.original_width,
        "original_height": prepared.original_height,
        "original_bytes": len(data),
        "estimated_tokens": prepared.estimated_tokens,
        # What the service will look at (it shrinks what it is sent; we send no more than that view),
        # and the upload bytes the model call does not carry.
        "service_width": service.width, "service_height": service.height,
        "saved_bytes": max(0, len(data) - len(prepared.data)),
    }


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
