"""Documents wherever an image goes: read the pages, ask the model about them, answer for the document.

The analyzer (:mod:`shared.analysis`) and extraction (:mod:`shared.extraction`) hand a PDF or a
multi-page TIFF here after its cache key is made from the raw bytes and the page selection, so a
document costs one hash on a hit, like an image.

- **Pages in requests.** Pages go to the model as images labelled ``[Page n]``, in groups of at most
  the provider's ``max_pages_per_request`` and ``VISION_MAX_IMAGE_TOKENS`` image tokens. Analysis of a
  longer document asks once per group and answers in sections (``Pages 1-10``, ``Pages 11-20``);
  extraction needs the whole document in one request (line items run over page breaks, totals sit
  on the last page), so it refuses a document that does not fit one with :class:`TooManyPages`,
  naming ``pages=``, rather than merging guesses.
- **Text layers.** A digital PDF's own text goes along: a language model reads it as text after the
  prompt (for OCR and extraction, where exact characters matter; a description does not need it),
  and a provider that ``reads_text_layers`` (the offline engine) takes the boxes themselves.
- **Cost.** Usage and cost are summed over the requests; ``document`` in the result lists each page
  (size, bytes, tokens, whether it had a text layer) and how many requests it took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.config import Settings
from shared.documents.prepare import DocumentPage, page_groups, prepare_pages, text_layer_prompt
from shared.documents.reader import DocumentInfo, inspect_document
from shared.errors import InvalidParameter, TooManyPages
from shared.providers.base import Completion, Provider, Usage, VisionRequest
from shared.tokens import ModelSpec

#: Tasks whose answer is the document's exact characters: the text layer is sent along to a model.
TEXT_LAYER_TASKS = frozenset({"ocr", "table_extraction", "invoice", "table", "schema"})
DOCUMENT_DETAIL = "high"  # documents are text: the detail that reads small print


class DocumentHost(Protocol):
    """What a document needs of the analyzer (a protocol: this module does not import :mod:`shared.analysis`)."""

    settings: Settings
    provider: Provider
    model_overrides: Mapping[str, ModelSpec] | None

    def estimate_cost(self, usage: Usage, model: str | None = None) -> float: ...


@dataclass(frozen=True)
class ReadDocument:
    info: DocumentInfo
    pages: list[DocumentPage]

    def summary(self, requests: int) -> dict[str, Any]:
        return {"kind": self.info.kind, "page_count": self.info.page_count,
                "pages": [page.info() for page in self.pages], "requests": requests}


def check_pages_parameter(pages: str | None, kind: str | None) -> str | None:
    """``pages`` is for documents; on a single image only the page it is (``1``) makes sense."""
    spec = (pages or "").strip() or None
    if kind is None and spec not in (None, "1"):
        raise InvalidParameter("pages", "applies to PDFs and multi-page TIFFs; this upload is a single image")
    return spec if kind is not None else None


async def read_document(host: DocumentHost, data: bytes, kind: str, *, detail: str | None,
                        pages: str | None) -> ReadDocument:
    """Check the document and prepare its selected pages, in worker threads (PDFium and Pillow are CPU work)."""
    settings = host.settings
    info = await asyncio.to_thread(inspect_document, data, kind, pages=pages, max_pages=settings.max_pages,
                                   max_pixels=settings.max_image_pixels)
    chosen = host.provider.preferred_detail or detail or DOCUMENT_DETAIL
    quality = host.provider.preferred_jpeg_quality or settings.jpeg_quality
    prepared = await asyncio.to_thread(prepare_pages, data, info, chosen, model=settings.estimation_model,
                                       jpeg_quality=quality, model_overrides=host.model_overrides,
                                       to_service_view=host.provider.shrinks_to_service_view)
    return ReadDocument(info, prepared)


def document_request(host: DocumentHost, pages: list[DocumentPage], *, prompt: str, max_tokens: int,
                     task: str | None, **extra: Any) -> VisionRequest:
    """One request about ``pages``: images labelled by page, and their text layers where they help."""
    text = ""
    if task in TEXT_LAYER_TASKS and not host.provider.reads_text_layers:
        text = text_layer_prompt(pages)
    return VisionRequest(prompt=prompt + text, images=tuple(page.image for page in pages), max_tokens=max_tokens,
                         image_labels=tuple(f"[Page {page.number}]" for page in pages), task=task,
                         pages=tuple(page.number for page in pages),
                         text_layers=tuple(page.words for page in pages), **extra)


def single_request_pages(host: DocumentHost, document: ReadDocument) -> list[DocumentPage]:
    """All the pages, if one request can carry them; else :class:`TooManyPages` naming what fits."""
    groups = page_groups(document.pages, max_pages=host.provider.max_pages_per_request,
                         max_tokens=host.settings.max_image_tokens)
    if len(groups) > 1:
        fits = len(groups[0])
        raise TooManyPages(
            f"extraction reads a document in one request, and these {len(document.pages)} pages need "
            f"{len(groups)} (at most {host.provider.max_pages_per_request} pages and "
            f"{host.settings.max_image_tokens} image tokens each, VISION_MAX_IMAGE_TOKENS): choose at most "
            f"{fits} with pages=, or a lower detail", pages=len(document.pages), limit=fits)
    return document.pages


async def analyze_pages(host: DocumentHost, document: ReadDocument, *, prompt: str, max_tokens: int,
                        task: str | None) -> dict[str, Any]:
    """The model's answer about the document: one request per page group, sections when there are several."""
    groups = page_groups(document.pages, max_pages=host.provider.max_pages_per_request,
                         max_tokens=host.settings.max_image_tokens)
    completions: list[Completion] = []
    for group in groups:  # in order, one at a time: the quota paces them anyway, and the sections stay in order
        completions.append(await host.provider.complete(
            document_request(host, group, prompt=prompt, max_tokens=max_tokens, task=task)))
    if len(groups) == 1:
        text = completions[0].text
    else:
        text = "\n\n".join(f"Pages {group[0].number}-{group[-1].number}:\n{completion.text}"
                           for group, completion in zip(groups, completions, strict=True))
    usage = Usage(sum(c.usage.prompt_tokens for c in completions), sum(c.usage.completion_tokens for c in completions))
    last = completions[-1]
    return {
        "analysis": text, "model": last.model, "deployment": last.deployment or host.settings.deployment_name,
        "provider": host.provider.name, "finish_reason": last.finish_reason, "usage": usage.as_dict(),
        "estimated_cost_usd": round(sum(host.estimate_cost(c.usage, c.pricing_model) for c in completions), 6),
        "document": document.summary(len(groups)),
        **({"call": last.call} if last.call else {}),
    }
