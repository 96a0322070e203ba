"""The ``local`` provider: the offline engine behind the same interface as Azure OpenAI.

Why: a fresh clone (no cloud account, no network) still analyses images: OCR, image facts, invoices,
tables and simple schemas, all from :mod:`shared.offline.engine` (OCR, image facts) and
:mod:`shared.offline.documents` (invoices, tables, schemas). It is not a language model and never
pretends to be one: replies say what was found and how (``provider: "local"``, model
``rapidocr-onnxruntime-<version>``, zero tokens), and anything that needs a model - a free-form
question, comparing images, extraction without a recognised task - raises
:class:`~shared.errors.NotSupported` (501) naming the settings that enable a real model.

What it answers, decided by ``request.task`` (the prompt is not read, only recognised):

* ``ocr``: the recognised text in reading order, line by line.
* ``table_extraction``: the table rebuilt from the boxes' geometry, as a Markdown table.
* ``describe``, ``classification``, ``quick_summary``, ``detailed_analysis``, ``object_detection`` or
  none: a plain-text report (size, orientation, dominant colours, EXIF, text found).
  These three groups only with the default prompt or one of the task prompts
  (:data:`shared.tasks.KNOWN_PROMPTS`): any other prompt is a question the engine cannot answer.
* with a ``response_format`` (structured extraction): ``invoice``, ``table`` or ``schema`` return the
  JSON text of :func:`~shared.offline.documents.invoice_from_boxes`, ``table_from_boxes`` (as
  ``{"columns", "rows": [[cell, ...]]}``, the grid a model is asked for) or
  :func:`~shared.offline.forms.fill_schema_from_boxes`
  for the extraction layer to validate like any model reply; the boxes each value came from are on
  the returned :class:`~shared.providers.base.Completion` as ``provenance`` (paths as in the final data: ``total``,
  ``line_items[0].total``, ``rows[2].Qty``).

A ``follow_up`` (a re-ask after a failed validation) is ignored: the engine is deterministic, the same
image gives the same answer. The OCR runs in a worker thread (CPU-bound, ~0.5-2 s a page).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any, TypeVar

from shared.documents.prepare import page_of, stack_pages
from shared.errors import ModelError, NotSupported, VisionError
from shared.offline import documents, engine, forms
from shared.offline.report import markdown_table, report
from shared.providers.base import Completion, Provider, Usage, VisionRequest
from shared.tasks import EXTRACTION_KINDS, KNOWN_PROMPTS, TASKS

ENABLE_A_MODEL = (
    "set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT (Azure OpenAI), "
    "or OPENAI_BASE_URL and OPENAI_MODEL (an OpenAI-compatible server such as Ollama)"
)
#: Every analysis task: ``ocr`` and ``table_extraction`` as text, the others as the report.
TEXT_TASKS = frozenset(TASKS)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


class LocalProvider(Provider):
    """OCR and image facts on this machine; see the module docstring for what it answers."""

    name = "local"
    max_images_per_request = 1
    #: The same image gives the same answer: re-asking is pointless (see shared.extraction).
    deterministic = True
    #: Nothing is billed, so it gets the sharpest image the detail levels allow.
    preferred_detail = "high"
    preferred_jpeg_quality = 95
    #: A document's pages are read together (one tall sheet, see shared.documents.prepare.stack_pages), so
    #: line items continue over page breaks; the text layer replaces OCR on every page that has one.
    max_pages_per_request = 1000
    reads_text_layers = True
    shrinks_to_service_view = False

    @property
    def model(self) -> str:
        return f"{engine.ENGINE_PACKAGE}-{engine.engine_version()}"

    async def complete(self, request: VisionRequest) -> Completion:
        if len(request.images) > 1 and not request.pages:
            raise NotSupported(f"comparing images needs a language model; {ENABLE_A_MODEL}")
        if not request.images:
            raise NotSupported(f"a request without an image needs a language model; {ENABLE_A_MODEL}")
        task = (request.task or "describe").strip().lower()
        if request.response_format is not None:
            if task not in EXTRACTION_KINDS:
                raise NotSupported(
                    f"the local engine extracts only invoices, tables and simple schemas (got task {task!r}); "
                    f"{ENABLE_A_MODEL}"
                )
            text, provenance = await _in_ocr_thread(self._extract, request, task)
            return self._completion(text, provenance)
        if task not in TEXT_TASKS:
            raise NotSupported(f"the local engine has no {task!r} task; {ENABLE_A_MODEL}")
        if request.prompt.strip() not in KNOWN_PROMPTS:
            raise NotSupported(
                "the local engine (OCR and image facts, no language model) cannot answer a free-form prompt; "
                f"use the default prompt or a task, or {ENABLE_A_MODEL}"
            )
        text = await _in_ocr_thread(self._answer, request.images[0].data, request, task)
        return self._completion(text, {})

    def _completion(self, text: str, provenance: dict[str, Any]) -> Completion:
        return Completion(text=text, model=self.model, usage=Usage(0, 0), finish_reason="stop", provenance=provenance)

    def _extract(self, request: VisionRequest, task: str) -> tuple[str, dict[str, Any]]:
        """JSON text for the extraction layer to validate, and the provenance of each value."""
        boxes, spans = _read(request)
        if task == "invoice":
            data, provenance = documents.invoice_from_boxes(boxes)
        elif task == "table":  # as a model writes it (shared.extraction.TableGrid): rows are lists of cells
            table = documents.table_from_boxes(boxes)
            data = {"columns": table["columns"], "rows": [[row[c] for c in table["columns"]] for row in table["rows"]]}
            provenance = documents.table_provenance(boxes)
        else:
            schema = ((request.response_format or {}).get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise NotSupported(f"task 'schema' needs response_format.json_schema.schema; {ENABLE_A_MODEL}")
            data, provenance = forms.fill_schema_from_boxes(schema, boxes)
        if spans:  # a document: each value's box back on its own page
            provenance = {path: page_of(entry, spans) for path, entry in provenance.items()}
        return json.dumps(data, ensure_ascii=False), provenance

    def _answer(self, data: bytes, request: VisionRequest, task: str) -> str:
        if request.pages and task == "ocr":  # per page, in sections
            return "\n\n".join(f"--- Page {number} ---\n" + ("\n".join(engine.reading_order(boxes)) or "(no text)")
                               for number, boxes in zip(request.pages, _page_boxes(request), strict=True))
        boxes, _ = _read(request)
        if task == "ocr":
            return "\n".join(engine.reading_order(boxes)) or "No text was found."
        if task == "table_extraction":
            return markdown_table(documents.table_from_boxes(boxes)) or "No table was found."
        image = request.images[0]
        facts = engine.image_facts(data)
        return report(facts, engine.reading_order(boxes), size=(image.original_width, image.original_height),
                      source_format=image.format, exif_removed=True)

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "engine": f"rapidocr-onnxruntime {engine.engine_version()} "
                      f"(onnxruntime {_version('onnxruntime')}), Pillow {_version('pillow')}",
            "model": self.model,
            "offline": True,
        }


def _page_boxes(request: VisionRequest) -> list[list[engine.TextBox]]:
    """Each page's text: its text layer where it has one (exact), OCR where it is a scan."""
    layers = request.text_layers or (None,) * len(request.images)
    return [list(layer) if layer is not None else _ocr(image.data)
            for image, layer in zip(request.images, layers, strict=True)]


def _read(request: VisionRequest) -> tuple[list[engine.TextBox], list[tuple[int, float, float, float]]]:
    """The request's text boxes: one image's OCR, or a document's pages stacked into one sheet (and their spans)."""
    if not request.pages:
        return _ocr(request.images[0].data), []
    return stack_pages(list(zip(request.pages, _page_boxes(request), strict=True)))


#: The offline engine's own thread: OCR takes seconds of CPU per page and the engine runs one page at a
#: time anyway (ONNX Runtime spreads each over every core), so concurrent OCR requests queue here instead
#: of each holding a thread of the default pool that storage calls and image preparation need.
OCR_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocr")
T = TypeVar("T")


async def _in_ocr_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(OCR_EXECUTOR, functools.partial(function, *args))


#: Pages read recently, by the SHA-256 of the image: a document asked again with another page range or
#: task (OCR, then the invoice) does not OCR the same page twice. Boxes are small; 256 pages is a few MiB.
_RECENT_PAGES: OrderedDict[bytes, list[engine.TextBox]] = OrderedDict()
_RECENT_LIMIT = 256
_recent_lock = threading.Lock()


def forget_recent_pages() -> None:
    """Drop the remembered pages (tests start each from a fresh engine)."""
    with _recent_lock:
        _RECENT_PAGES.clear()


def _ocr(data: bytes) -> list[engine.TextBox]:
    """OCR (or a recent page's boxes), with engine failures (not input errors) reported as a model error."""
    digest = hashlib.sha256(data).digest()
    with _recent_lock:
        if digest in _RECENT_PAGES:
            _RECENT_PAGES.move_to_end(digest)
            return list(_RECENT_PAGES[digest])
    try:
        boxes = engine.ocr(data)
    except VisionError:
        raise
    except Exception as exc:
        raise ModelError(f"the local OCR engine failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
    with _recent_lock:
        _RECENT_PAGES[digest] = list(boxes)
        while len(_RECENT_PAGES) > _RECENT_LIMIT:
            _RECENT_PAGES.popitem(last=False)
    return boxes
