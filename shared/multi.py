"""Several images, one answer: compare them in one request, or analyse a sequence and synthesise.

``compare`` sends 2..N images in one chat request, each preceded by a text label ``[Image k]`` in
upload order (``VisionRequest.image_labels``), so the answer can say which image it means. Limits,
all checked before any model call and most before any decoding:

* count: 2 to ``VISION_MAX_IMAGES`` (default 10, what Azure documents per request) -> 400;
* bytes: each image under ``VISION_MAX_IMAGE_BYTES``, all together under ``VISION_MAX_TOTAL_BYTES``
  (default 50 MiB) -> 413 (:class:`TotalTooLarge`);
* tokens: the estimated image tokens of all images under ``VISION_MAX_IMAGE_TOKENS`` (default 20,000)
  -> 400. Estimated from the headers (size, detail, the model's tiling), so ten 4K photos at
  ``high`` are refused before they are decoded; the response reports the exact per-image figures.

A refused image is named: the problem document carries ``image`` (1-based). The answer is cached
under a key over every image's SHA-256 in order, the prompt, detail and max_tokens.

``sequence`` analyses each image on its own with :meth:`Analyzer.analyze` (so each is cached and
shared with ``/api/analyze``), at most ``SEQUENCE_CONCURRENCY`` at once, then makes one text-only
call (``images=()``: the message is just the text part) that synthesises the analyses into
``common_themes``, ``changes``, ``key_insights`` and ``recommendations``, with a strict
``json_schema`` and the same validation and single re-ask as extraction. The synthesis is cached on
the analyses' text, so a repeated sequence costs nothing. An image that fails fails the request
(the others still finish and are cached, so a retry pays only for what failed). Usage and cost are
summed over all parts; a cached part reports what it cost when it was made.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field

from shared.analysis import Analyzer, image_info
from shared.analysis_options import AnalysisOptions, validate_options
from shared.errors import InvalidParameter, NotSupported, PayloadTooLarge, VisionError
from shared.extraction import ask_structured, default_max_tokens, model_format, pydantic_check
from shared.imaging import DETAIL_MAX_SIDE, PreparedImage, image_size, select_detail_level, target_size
from shared.providers.base import Usage, VisionRequest
from shared.tasks import DEFAULT_PROMPT
from shared.tokens import estimate_image_tokens

SEQUENCE_CONCURRENCY = 4
#: Images of one comparison decoded at once: each decode holds a full-size bitmap (up to
#: ``VISION_MAX_IMAGE_PIXELS`` x 4 bytes), so ten at once would be ten times that at peak.
COMPARE_DECODE_CONCURRENCY = 2
COMPARE_PROMPT = "Compare these images: what they have in common and how they differ."
SYNTHESIS_SYSTEM = (
    "You are given separate analyses of a sequence of images, labelled [Image 1], [Image 2]... in order. "
    "Synthesise them; use only what the analyses say, and refer to images by their labels."
)


class TotalTooLarge(PayloadTooLarge):
    """All images of one request together are over ``VISION_MAX_TOTAL_BYTES`` (413)."""

    def __init__(self, limit_bytes: int, size_bytes: int | None = None) -> None:
        super().__init__(limit_bytes, size_bytes)
        told = f" ({size_bytes} bytes)" if size_bytes is not None else ""
        self.detail = f"the images together are larger than the limit of {limit_bytes} bytes{told} " \
                      "(VISION_MAX_TOTAL_BYTES)"
        self.args = (self.detail,)


class Synthesis(BaseModel):
    common_themes: list[str] = Field(description="What the images have in common")
    changes: list[str] = Field(description="What changes from one image to the next, naming the images")
    key_insights: list[str]
    recommendations: list[str]


def limits(analyzer: Analyzer) -> tuple[int, int, int]:
    """(most images, most total bytes, most estimated image tokens) of one request."""
    settings = analyzer.settings
    return settings.max_images, settings.max_total_bytes, settings.max_image_tokens


def labels(count: int) -> tuple[str, ...]:
    return tuple(f"[Image {k}]" for k in range(1, count + 1))


@contextmanager
def about_image(index: int) -> Iterator[None]:
    """Name the (1-based) image in any error raised inside, so the caller knows which one to fix."""
    try:
        yield
    except VisionError as exc:
        exc.context.setdefault("image", index)
        raise


def check_images(analyzer: Analyzer, images: list[bytes], *, one_request: bool = False) -> None:
    """Count, per-image and total bytes: cheap refusals before any decoding.

    ``one_request``: all images go to the model together, so the provider's own per-request limit
    (``Provider.max_images_per_request``) caps the count too, rather than a sure 400 from the service.
    """
    most, total_limit, _ = limits(analyzer)
    setting = "VISION_MAX_IMAGES"
    provider_most = analyzer.provider.max_images_per_request
    if one_request and provider_most < 2:
        raise NotSupported(f"comparing images needs a language model; the {analyzer.provider.name} provider "
                           "takes one image at a time: set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT, "
                           "or OPENAI_BASE_URL and OPENAI_MODEL")
    if one_request and provider_most < most:
        most, setting = provider_most, f"the {analyzer.provider.name} provider's limit per request"
    if len(images) < 2:
        raise InvalidParameter("images", f"send at least 2 images; got {len(images)}")
    if len(images) > most:
        raise InvalidParameter("images", f"send at most {most} images ({setting}); got {len(images)}")
    total = sum(len(data) for data in images)
    if total > total_limit:
        raise TotalTooLarge(total_limit, total)
    for index, data in enumerate(images, 1):
        with about_image(index):
            analyzer.check_upload(data)


def estimate_tokens(analyzer: Analyzer, data: bytes, detail: str | None) -> int:
    """Image tokens from the header alone: the size prepare will produce, at the detail it will use."""
    settings = analyzer.settings
    width, height, _ = image_size(data, max_pixels=settings.max_image_pixels)
    chosen = detail or select_detail_level(None, width, height)
    out_w, out_h = target_size(width, height, DETAIL_MAX_SIDE[chosen])
    return estimate_image_tokens(out_w, out_h, chosen, settings.estimation_model, analyzer.model_overrides)


def _images_key(images: list[bytes]) -> bytes:
    """Every image's SHA-256, in order: fixed-size digests, so the concatenation is unambiguous."""
    return b"".join(hashlib.sha256(data).digest() for data in images)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def compare(analyzer: Analyzer, images: list[bytes], prompt: str | None = None, detail: str | None = None,
                  max_tokens: int | None = None) -> dict[str, Any]:
    """One answer about 2..N labelled images (see the module docstring); raises :mod:`shared.errors`."""
    started = time.perf_counter()
    options = validate_options(AnalysisOptions(prompt=(prompt or "").strip() or COMPARE_PROMPT, detail=detail,
                                               max_tokens=max_tokens), analyzer.settings)
    check_images(analyzer, images, one_request=True)
    _, _, token_limit = limits(analyzer)
    estimates = []
    for index, data in enumerate(images, 1):
        with about_image(index):
            estimates.append(estimate_tokens(analyzer, data, options.detail))
    if sum(estimates) > token_limit:
        raise InvalidParameter("images", f"the {len(images)} images need about {sum(estimates)} image tokens "
                               f"({', '.join(map(str, estimates))}), over the limit of {token_limit} "
                               "(VISION_MAX_IMAGE_TOKENS); send fewer images or use detail=low")
    key = await analyzer.make_key(await asyncio.to_thread(_images_key, images), options, kind="compare")

    decoding = asyncio.Semaphore(COMPARE_DECODE_CONCURRENCY)

    async def prepare(index: int, data: bytes) -> PreparedImage:
        async with decoding:
            with about_image(index):
                return await analyzer.prepare(data, options.detail, None)

    async def compute() -> dict[str, Any]:
        prepared = await asyncio.gather(*(prepare(k, data) for k, data in enumerate(images, 1)))
        names = labels(len(images))
        assert options.max_tokens is not None
        completion = await analyzer.provider.complete(VisionRequest(
            prompt=options.prompt, images=tuple(prepared), max_tokens=options.max_tokens, image_labels=names,
            system_prompt=f"The {len(images)} images are each preceded by their label, {names[0]} to {names[-1]}, "
                          "in order. Refer to them by these labels.",
            task="compare",
        ))
        shown = [{"index": k, "label": names[k - 1], "detail": p.detail, **image_info(p, images[k - 1])}
                 for k, p in enumerate(prepared, 1)]
        return {
            "analysis": completion.text, "model": completion.model,
            "deployment": completion.deployment or analyzer.settings.deployment_name,
            "provider": analyzer.provider.name, "finish_reason": completion.finish_reason, "images": shown,
            "totals": {"images": len(images), "bytes": sum(len(d) for d in images),
                       "sent_bytes": sum(len(p.data) for p in prepared),
                       "estimated_image_tokens": sum(p.estimated_tokens for p in prepared)},
            "usage": completion.usage.as_dict(),
            "estimated_cost_usd": analyzer.estimate_cost(completion.usage, completion.pricing_model),
        }

    result = await analyzer.cached(key, compute)
    return {**result, "latency_ms": _elapsed_ms(started)}


async def sequence(analyzer: Analyzer, images: list[bytes], prompt: str | None = None, detail: str | None = None,
                   max_tokens: int | None = None) -> dict[str, Any]:
    """Per-image analyses plus one structured synthesis (see the module docstring)."""
    started = time.perf_counter()
    options = validate_options(AnalysisOptions(prompt=(prompt or "").strip() or DEFAULT_PROMPT, detail=detail,
                                               max_tokens=max_tokens), analyzer.settings)
    check_images(analyzer, images)
    gate = asyncio.Semaphore(SEQUENCE_CONCURRENCY)

    async def analyse(index: int, data: bytes) -> dict[str, Any]:
        async with gate:
            with about_image(index):
                return await analyzer.analyze(data, options)

    outcomes = await asyncio.gather(*(analyse(k, data) for k, data in enumerate(images, 1)), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    names = labels(len(images))
    analyses = [{"index": k, "label": names[k - 1], **result} for k, result in enumerate(outcomes, 1)]
    text = "\n\n".join(f"{item['label']}\n{item['analysis']}" for item in analyses)
    synthesis_prompt = (f"The analyses were asked: {options.prompt}\n\n{text}\n\nGive the common themes, the changes "
                        "across the sequence, the key insights and your recommendations.")
    synthesis_options = AnalysisOptions(prompt=options.prompt, detail="", max_tokens=default_max_tokens(analyzer))
    key = await analyzer.make_key(text.encode("utf-8"), synthesis_options, kind="sequence-synthesis")
    fmt, _ = model_format(Synthesis, "sequence_synthesis")

    async def compute() -> dict[str, Any]:
        assert synthesis_options.max_tokens is not None
        request = VisionRequest(prompt=synthesis_prompt, images=(), max_tokens=synthesis_options.max_tokens,
                                system_prompt=SYNTHESIS_SYSTEM, response_format=fmt, task="sequence")
        reply = await ask_structured(analyzer, request, pydantic_check(Synthesis))
        usage = reply.completion.usage
        return {"synthesis": reply.value.model_dump(), "attempts": reply.attempts, "model": reply.completion.model,
                "deployment": reply.completion.deployment or analyzer.settings.deployment_name,
                "usage": usage.as_dict(),
                "estimated_cost_usd": analyzer.estimate_cost(usage, reply.completion.pricing_model)}

    synthesis = await analyzer.cached(key, compute)
    parts = [*analyses, synthesis]
    usage = Usage(sum(p["usage"]["prompt_tokens"] for p in parts), sum(p["usage"]["completion_tokens"] for p in parts))
    return {
        "images": analyses, "synthesis": synthesis["synthesis"],
        "synthesis_meta": {k: synthesis[k] for k in ("attempts", "model", "usage", "estimated_cost_usd", "cached")},
        "model": synthesis["model"], "deployment": synthesis.get("deployment") or analyzer.settings.deployment_name,
        "provider": analyzer.provider.name, "usage": usage.as_dict(),
        "estimated_cost_usd": round(sum(p["estimated_cost_usd"] for p in parts), 6),
        "cached": all(p["cached"] for p in parts), "latency_ms": _elapsed_ms(started),
    }
