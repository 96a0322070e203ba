"""Structured extraction from one image: an invoice, a table, or any JSON Schema; validated, never invented.

One code path: the request carries ``response_format`` (``json_schema``, ``strict: true``) and the
provider calls ``chat.completions.create`` and returns the text, as for every other request. We do
not use the SDK's ``parse()``: we validate ourselves (pydantic for our models, the caller's ORIGINAL
JSON Schema for theirs, :mod:`shared.schemas`), because strict mode cannot express everything a
caller's schema says (patterns, ranges), and OpenAI-compatible servers may ignore ``response_format``.

What the model says is checked, not trusted:

* **One re-ask, then an honest failure.** Unusable output (not JSON, wrong types, missing fields,
  a constraint broken, or cut off at ``max_tokens``) is answered once, as Instructor does: the bad
  reply goes back as the assistant's message, followed by the validation errors and a request for
  corrected JSON only. Still unusable -> :class:`ExtractionFailed` (502) with the raw reply, the
  errors, the attempts and the tokens spent. Never a made-up object. Every request thus costs at
  most two model calls; usage is summed over both and ``attempts`` says how many there were.
* **Truncation** (``finish_reason == "length"``): the JSON is incomplete whatever it looks like, so
  it counts as invalid, and the re-ask gets ``min(2 * max_tokens, VISION_MAX_OUTPUT_TOKENS)``.
  ``max_tokens`` is only a ceiling (billing is per token produced), so the extraction default is
  ``max(VISION_DEFAULT_MAX_TOKENS, 2000)`` (within the ceiling), to make that re-ask rare.
* **Markdown fences** around otherwise valid JSON (compatible servers without strict mode do this)
  are stripped without a re-ask: nothing is guessed, and a second call would cost money for nothing.
* **Invoice checks become ``warnings``**, never silent fixes (amounts, dates, currency:
  :mod:`shared.extraction.targets`).
* **Tables** come back from the model as ``columns`` plus rows of cells (strict mode cannot express
  objects with free-form keys); we key each row by column. Short rows are padded with null, extra
  cells are dropped *and reported* in a warning, blank or repeated column names are made unique
  (warned too), and empty cells become null.

Documents default to ``detail=high``: text is what the high-resolution tiles are for.
Results are cached like analyses; the key includes the schema hash, so another schema is another answer.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from openai.lib import type_to_response_format_param
from pydantic import BaseModel, ValidationError

from shared.analysis import Analyzer
from shared.analysis_options import AnalysisOptions, validate_options
from shared.document_analysis import check_pages_parameter, document_request, read_document, single_request_pages
from shared.documents.reader import sniff_document
from shared.errors import InvalidParameter, ModelBadResponse
from shared.extraction.targets import Invoice, TableGrid, invoice_warnings, table_from_grid
from shared.providers.base import Completion, Usage, VisionRequest
from shared.schemas import compile_schema
from shared.tasks import EXTRACTION_KINDS

EXTRACTION_MAX_TOKENS = 2000
MAX_RAW_REPLY_CHARS = 8000
_RESULT_FIELDS = ("model", "deployment", "provider", "detail", "usage", "estimated_cost_usd", "image", "cached")
_FENCED = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?```\s*\Z", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SYSTEM_PROMPT = (
    "You read documents in images and answer with JSON matching the given schema, nothing else. "
    "Copy values as printed. Use null for anything missing, unreadable or not applicable: never guess, "
    "and never calculate a value that is not printed."
)
PROMPTS = {
    "invoice": (
        "Extract this invoice. Dates as ISO 8601 (YYYY-MM-DD). Amounts as plain numbers with a decimal point, "
        "without currency symbols or thousands separators. currency: the ISO 4217 code printed, or the one a "
        "printed symbol unambiguously stands for (€ is EUR), else null. One line_items entry per printed line, "
        "in order."
    ),
    "table": (
        "Transcribe the table in this image. columns: the header cells, left to right (Column 1, Column 2... if "
        "there is no header). rows: one array per row, top to bottom, one cell per column in column order, text "
        "exactly as printed; null for empty cells and for the cells a merged cell spans beyond its first."
    ),
    "schema": "Extract the information the JSON schema describes from this image.",
}


class ExtractionFailed(ModelBadResponse):
    """The model's JSON was still unusable after the one re-ask (502): no data rather than made-up data."""

    slug = "extraction-failed"
    title = "The model did not produce valid structured data"

    def __init__(self, *, raw_reply: str, errors: list[str], attempts: int, usage: Usage) -> None:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"the model's reply was still invalid after {attempts} attempts: {errors[0]}{more}",
            raw_reply=raw_reply[:MAX_RAW_REPLY_CHARS], raw_reply_truncated=len(raw_reply) > MAX_RAW_REPLY_CHARS,
            errors=errors, attempts=attempts, usage=usage.as_dict(),
        )
        self.raw_reply, self.errors, self.attempts, self.usage = raw_reply, errors, attempts, usage


Check = Callable[[Any], tuple[Any, list[str]]]


@dataclass(frozen=True)
class StructuredReply:
    value: Any  # what the check returned
    completion: Completion  # the last reply, with usage summed over the attempts
    attempts: int


def strip_fences(text: str) -> str:
    match = _FENCED.match(text)
    return match.group(1) if match else text


def parse_reply(completion: Completion, max_tokens: int, check: Check) -> tuple[Any, list[str]]:
    """(value, []) or (None, errors): truncation, JSON syntax, then the schema check."""
    if completion.finish_reason == "length":
        return None, [f"the reply was cut off at max_tokens={max_tokens} (finish_reason 'length'): incomplete JSON"]
    try:
        document = json.loads(strip_fences(completion.text))
    except json.JSONDecodeError as exc:
        return None, [f"the reply is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
    except RecursionError:
        return None, ["the reply is JSON nested too deeply to read"]
    return check(document)


def pydantic_check(model: type[BaseModel]) -> Check:
    """Strict validation (no "12" -> 12 coercion): a wrong type is the model's error to correct."""

    def check(document: Any) -> tuple[Any, list[str]]:
        try:
            return model.model_validate(document, strict=True), []
        except ValidationError as exc:
            errors = []
            for error in exc.errors(include_url=False)[:20]:
                where = ".".join(str(part) for part in error["loc"]) or "(root)"
                errors.append(f"{where}: {error['msg']} (got {json.dumps(error.get('input'), default=str)[:80]})")
            return None, errors

    return check


def _correction(errors: list[str]) -> str:
    listed = "\n".join(f"- {error}" for error in errors)
    return (f"Your reply cannot be used:\n{listed}\nAnswer again with only the corrected JSON that matches the "
            "schema: no prose, no markdown fences. Use null for what is not in the image; do not guess.")


async def ask_structured(analyzer: Analyzer, request: VisionRequest, check: Check) -> StructuredReply:
    """The request's validated answer in at most two calls; raises :class:`ExtractionFailed`."""
    current, spent = request, Usage()
    for attempt in (1, 2):
        completion = await analyzer.provider.complete(current)
        spent = Usage(spent.prompt_tokens + completion.usage.prompt_tokens,
                      spent.completion_tokens + completion.usage.completion_tokens)
        # Validation is CPU work (a caller's schema can be large): never on the event loop.
        value, errors = await asyncio.to_thread(parse_reply, completion, current.max_tokens, check)
        if not errors:
            return StructuredReply(value, replace(completion, usage=spent), attempt)
        if attempt == 2 or analyzer.provider.deterministic:
            # A deterministic provider (the local engine) would only repeat itself: no re-ask.
            raise ExtractionFailed(raw_reply=completion.text, errors=errors, attempts=attempt, usage=spent)
        max_tokens = request.max_tokens
        if completion.finish_reason == "length":
            max_tokens = min(2 * request.max_tokens, analyzer.settings.max_output_tokens)
        follow_up = (*request.follow_up, {"role": "assistant", "content": completion.text},
                     {"role": "user", "content": _correction(errors)})
        current = replace(request, max_tokens=max_tokens, follow_up=follow_up)
    raise AssertionError("unreachable")


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@functools.cache
def model_format(model: type[BaseModel], name: str) -> tuple[dict[str, Any], str]:
    """Our model's response_format (the SDK's strict conversion, as ``parse()`` uses) and its schema hash."""
    schema = type_to_response_format_param(model)["json_schema"]["schema"]  # type: ignore[index]
    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
    return response_format(name, schema), digest


@dataclass(frozen=True)
class _Target:
    response_format: dict[str, Any]
    schema_hash: str
    check: Check
    finish: Callable[[Any], tuple[Any, list[dict[str, Any]]]]


def _target(kind: str, schema: dict[str, Any] | None) -> _Target:
    if kind not in EXTRACTION_KINDS:
        raise InvalidParameter("kind", f"must be one of {', '.join(EXTRACTION_KINDS)}; got {kind!r}")
    if kind != "schema":
        if schema is not None:
            raise InvalidParameter("schema", f"is only for kind 'schema', not {kind!r}")
        if kind == "invoice":
            fmt, digest = model_format(Invoice, "invoice")
            return _Target(fmt, digest, pydantic_check(Invoice), lambda v: (v.model_dump(), invoice_warnings(v)))
        fmt, digest = model_format(TableGrid, "table")
        return _Target(fmt, digest, pydantic_check(TableGrid), table_from_grid)
    if schema is None:
        raise InvalidParameter("schema", "is required: give the JSON Schema of the data to extract")
    compiled = compile_schema(schema)
    title = str(compiled.original.get("title") or "").strip().replace(" ", "_")
    name = title if _NAME.match(title) else "extraction"
    return _Target(response_format(name, compiled.strict), compiled.hash, compiled.check, lambda v: (v, []))


def default_max_tokens(analyzer: Analyzer) -> int:
    settings = analyzer.settings
    return min(max(settings.default_max_tokens, EXTRACTION_MAX_TOKENS), settings.max_output_tokens)


async def extract(
    analyzer: Analyzer, data: bytes, kind: Literal["invoice", "table", "schema"] | str, *,
    schema: dict[str, Any] | None = None, prompt: str | None = None, detail: str | None = None,
    max_tokens: int | None = None, pages: str | None = None,
) -> dict[str, Any]:
    """The extraction result (see the module docstring); raises :mod:`shared.errors` and :class:`ExtractionFailed`.

    A PDF or multi-page TIFF is read in one request (``pages`` selects; :mod:`shared.document_analysis`).
    """
    started = time.perf_counter()
    target = await asyncio.to_thread(_target, kind, schema)  # compiling a caller's schema: off the event loop
    options = validate_options(AnalysisOptions(
        prompt=(prompt or "").strip() or PROMPTS[kind], detail=detail or "high",
        max_tokens=max_tokens if max_tokens is not None else default_max_tokens(analyzer), pages=pages,
    ), analyzer.settings)
    analyzer.check_upload(data)
    key = await analyzer.make_key(data, options, kind=kind, schema=target.schema_hash,
                                  **({"pages": options.pages} if options.pages else {}))

    async def compute() -> dict[str, Any]:
        assert options.max_tokens is not None
        document_kind = await asyncio.to_thread(sniff_document, data)
        selection = check_pages_parameter(options.pages, document_kind)
        document = None
        if document_kind is None:
            prepared = await analyzer.prepare(data, options.detail, None, reads_text=True)
            request = VisionRequest(prompt=options.prompt, images=(prepared,), max_tokens=options.max_tokens,
                                    system_prompt=SYSTEM_PROMPT, response_format=target.response_format, task=kind)
        else:
            document = await read_document(analyzer, data, document_kind, detail=options.detail, pages=selection)
            pages_sent = single_request_pages(analyzer, document)
            prepared = pages_sent[0].image
            request = document_request(analyzer, pages_sent, prompt=options.prompt, max_tokens=options.max_tokens,
                                       task=kind, system_prompt=SYSTEM_PROMPT, response_format=target.response_format)
        reply = await ask_structured(analyzer, request, target.check)
        value, warnings = target.finish(reply.value)
        base = analyzer.build_result(reply.completion, prepared, data, task=None)
        result = {"kind": kind, "data": value, "warnings": warnings, "attempts": reply.attempts,
                  **{name: base[name] for name in _RESULT_FIELDS}, "schema_hash": target.schema_hash,
                  **({"document": document.summary(1)} if document else {})}
        provenance = reply.completion.provenance  # the local engine says where it read each value
        return {**result, "provenance": provenance} if provenance else result

    result = await analyzer.cached(key, compute)
    return {**result, "latency_ms": round((time.perf_counter() - started) * 1000)}
