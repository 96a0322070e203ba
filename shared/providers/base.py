"""What every model provider is: one abstract method and the capabilities it declares.

A provider turns a :class:`VisionRequest` (a prompt and prepared images) into a
:class:`Completion`, or raises a :class:`~shared.errors.ModelError`. The services above
(analysis, extraction, multi-image) only ever see this interface, so a language model
behind the ``openai`` SDK (:mod:`shared.providers.openai_chat`) and the offline engine
(:mod:`shared.providers.local`) are interchangeable; :mod:`shared.providers.factory`
picks one from the settings.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ModelNotConfigured
from shared.imaging import PreparedImage


@dataclass(frozen=True)
class VisionRequest:
    """What we ask of a model: a prompt about one or more prepared images."""

    prompt: str
    images: tuple[PreparedImage, ...]
    max_tokens: int
    system_prompt: str | None = None
    # An OpenAI ``response_format`` (e.g. ``{"type": "json_schema", "json_schema": {...}}``) or None.
    response_format: dict[str, Any] | None = None
    # Messages after the user's (an earlier answer and a correction), for a re-ask.
    follow_up: tuple[dict[str, Any], ...] = ()
    # Text labels placed before each image part, e.g. "[Image 1]" for comparisons.
    image_labels: tuple[str, ...] = ()
    # What the request is for (ocr, describe, invoice...): providers that are not language
    # models (the offline engine) decide from it; language models only see the prompt.
    task: str | None = None
    # The page numbers of the images when they are the pages of one document (PDF, multi-page TIFF),
    # and each page's text layer (``TextBox`` es in the page image's pixels, None for a scanned page).
    pages: tuple[int, ...] = ()
    text_layers: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """A usable answer: text plus what it cost and who produced it."""

    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None
    rate_limit: dict[str, str] = field(default_factory=dict)
    #: Where each extracted value was read, for providers that know (the offline engine):
    #: field path (``total``, ``line_items[0].total``, ``rows[2].Qty``) -> {text, confidence, box}.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: What the call took besides the answer: the quota charge estimated before it, attempts,
    #: throttled answers and seconds waited for admission (:class:`shared.quota.retry.CallStats`).
    call: dict[str, Any] = field(default_factory=dict)
    #: Which deployment answered (a fallback may stand in for the primary); None: the settings' one.
    deployment: str | None = None
    #: The model whose prices and token rules apply to this answer; None: the settings' estimation model.
    pricing_model: str | None = None


#: What a provider declares about itself (the class attributes below); a wrapper copies them all.
CAPABILITIES = ("name", "supports_images", "max_images_per_request", "deterministic", "preferred_detail",
                "preferred_jpeg_quality", "max_pages_per_request", "reads_text_layers", "shrinks_to_service_view")


class Provider(abc.ABC):
    """A model that can look at images. Subclasses implement :meth:`complete` and declare what differs.

    The services read these capabilities directly; each has the default a billed language model wants.
    """

    name: str = "provider"
    supports_images: bool = True
    #: Most images one request may carry (compare sends them all at once).
    max_images_per_request: int = 10
    #: The same request always gets the same answer, so re-asking after a bad reply is pointless.
    deterministic: bool = False
    #: Detail level and JPEG quality this provider wants whatever the caller asked (None: the caller's
    #: choice and ``VISION_JPEG_QUALITY``); a provider that bills nothing may ask for the sharpest image.
    preferred_detail: str | None = None
    preferred_jpeg_quality: int | None = None
    #: The model is a service that shrinks images to its own view (tiles, patches) before looking: sending
    #: more than that view only costs time and bytes. The offline engine reads every pixel it is sent.
    shrinks_to_service_view: bool = True
    #: Most pages of one document in one request (a longer one is asked about in page groups).
    max_pages_per_request: int = 10
    #: Takes a digital PDF's text layer as boxes (``VisionRequest.text_layers``) instead of as prompt text.
    reads_text_layers: bool = False

    def declare_capabilities_of(self, inner: Provider) -> None:
        """Declare ``inner``'s capabilities as this provider's own: for providers that wrap another
        (fallback deployments, the spend budget), so the services see exactly what answers."""
        for capability in CAPABILITIES:
            setattr(self, capability, getattr(inner, capability))

    @property
    def model(self) -> str:
        """What answers: the model or deployment name, or the engine and its version; part of cache keys."""
        return ""

    @abc.abstractmethod
    async def complete(self, request: VisionRequest) -> Completion:
        """Answer the request or raise a :class:`~shared.errors.ModelError`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections; the default holds none."""

    def describe(self) -> dict[str, Any]:
        """What the health endpoint shows about this provider (never secrets)."""
        return {"provider": self.name}


class UnconfiguredProvider(Provider):
    """Stands in when no model service is configured, so the answer names the settings to set."""

    name = "none"

    async def complete(self, request: VisionRequest) -> Completion:
        raise ModelNotConfigured(
            "no model service is configured: set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT "
            "(and AZURE_OPENAI_API_KEY for local work), or OPENAI_BASE_URL and OPENAI_MODEL",
            retry_after=None,
        )
