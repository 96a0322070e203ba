"""How well the offline engine reads real invoices and receipts: per-field accuracy against ground truth.

Why: the offline engine is what a new user meets first. Its own samples say little about documents
nobody here wrote; this runs it over the public evaluation set in ``benchmarks/documents/`` (40
invoices and receipts from five public repositories: digital PDFs, image-only PDFs, scans and a photo,
in German, English, French and Dutch; sources, licences and how the truth was derived are in
``benchmarks/documents/README.md``) and scores four fields against ``truth.json``.

Run from the repository root (the full set takes several minutes: OCR is CPU-bound)::

    .venv/bin/python benchmarks/bench_documents.py
    .venv/bin/python benchmarks/bench_documents.py --only softmatic --only Hetzner   # file names containing either
    .venv/bin/python benchmarks/bench_documents.py --json results.json            # also every answer, as JSON
    .venv/bin/python benchmarks/bench_documents.py --no-text-layer                # PDFs OCR'd, text layers ignored

Each document goes through the public service path, as an upload would: :func:`shared.extraction.extract`
(kind ``invoice``) with the analyzer :func:`shared.services.build_analyzer` makes from
``VISION_PROVIDER=local`` and the cache off. A PDF is read by :mod:`shared.documents` (its text layer
replaces OCR where it has one), an image is prepared at ``high`` detail.

Scoring, per field (pure functions below, tested in ``tests/test_bench_documents.py``):

* ``invoice_number``: equal after upper-casing and dropping everything but letters and digits
  (``#BLR_WFLD-2015`` = ``blr wfld 2015``); ``date``: the ISO string, exactly; ``total``: within 0.01;
  ``currency``: the ISO 4217 code, exactly.
* The truth may list several accepted values (a grand total and the amount due after a prepayment, the
  two signs of a credit note); the first is the printed one. A truth of ``null`` means the document has
  no such value: the right answer is ``null``, and any value is wrong. A field named in a document's
  ``unscored`` list (truth not decidable from the print) counts nowhere.
* Outcomes: **correct** (a right value, or a right ``null``); **abstained** (``null`` where the document
  has a value); **wrong** (a value that is not accepted, including any value where the document has
  none). Abstaining is better than wrong: the issue's target is wrong values under 5 % of scored fields.
  Accuracy is correct over scored; "found" counts right values among the documents that print one.
* A request that fails (an exception) counts as four abstentions and is listed.

``--no-text-layer`` renders each PDF (PDFium, 200 dpi, at most 2048 px) and uploads the pages as images instead (a PNG,
or a multi-page TIFF for several pages, which the service reads as a document without text layers), so
every page is OCR'd: what the engine makes of the same pages without a text layer.

Time per page: wall time of each ``extract`` call over the document's page count, after one warm-up
call that loads the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import platform
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ROOT / "benchmarks" / "documents"
TRUTH = DOCUMENTS / "truth.json"
sys.path.insert(0, str(ROOT))

FIELDS = ("invoice_number", "date", "total", "currency")
#: Where each truth field is in the extraction's ``data`` (the :class:`shared.extraction.Invoice` model).
ANSWER_KEYS = {"invoice_number": "invoice_number", "date": "invoice_date", "total": "total", "currency": "currency"}
KINDS = ("digital_pdf", "scanned_pdf", "scan", "photo")
TOTAL_TOLERANCE = 0.01

CORRECT, ABSTAINED, WRONG, UNSCORED = "correct", "abstained", "wrong", "unscored"


# ---- pure scoring ------------------------------------------------------------------------------

def normalise_number(value: object) -> str:
    """An invoice number for comparison: upper case, letters and digits only (spaces, ``#``, ``/``, ``-`` dropped)."""
    return re.sub(r"[\W_]+", "", str(value)).upper()


def accepted_values(truth: object) -> list[Any]:
    """The accepted answers: a list as given, one value as a list of one, ``None`` (none printed) as ``[]``."""
    if truth is None:
        return []
    if isinstance(truth, list):
        return list(truth)
    return [truth]


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def matches(field_name: str, truth: object, answer: object) -> bool:
    """Whether one non-null ``answer`` equals one accepted ``truth`` value under the field's rule."""
    if field_name == "invoice_number":
        return normalise_number(answer) != "" and normalise_number(answer) == normalise_number(truth)
    if field_name == "total":
        number, expected = _as_number(answer), _as_number(truth)
        return number is not None and expected is not None and abs(number - expected) <= TOTAL_TOLERANCE + 1e-9
    if field_name in ("date", "currency"):
        return isinstance(answer, str) and answer == truth
    raise ValueError(f"unknown field {field_name!r}")


def score_field(field_name: str, truth: object, answer: object, *, unscored: bool = False) -> str:
    """``correct``, ``abstained`` (null answer, value printed), ``wrong`` (any other non-null) or ``unscored``."""
    if unscored:
        return UNSCORED
    values = accepted_values(truth)
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return ABSTAINED if values else CORRECT
    if not values:
        return WRONG
    return CORRECT if any(matches(field_name, value, answer) for value in values) else WRONG


def score_document(truth: Mapping[str, Any], answers: Mapping[str, Any] | None) -> dict[str, str]:
    """The four outcomes of one document; ``answers`` ``None`` (the request failed) abstains everywhere."""
    skipped = set(truth.get("unscored", ()))
    return {name: score_field(name, truth.get(name), None if answers is None else answers.get(name),
                              unscored=name in skipped)
            for name in FIELDS}


@dataclass
class FieldSummary:
    scored: int = 0
    truth_null: int = 0  # scored documents where the field is truly absent (the right answer is null)
    correct: int = 0  # right values and right nulls
    found: int = 0  # right values where the document has one (the "found on n of m")
    abstained: int = 0
    wrong: int = 0
    unscored: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


def summarise(truths: Sequence[Mapping[str, Any]], outcomes: Sequence[Mapping[str, str]]) -> dict[str, FieldSummary]:
    """Per-field counts over documents (``truths[i]`` scored as ``outcomes[i]``)."""
    summary = {name: FieldSummary() for name in FIELDS}
    for truth, outcome in zip(truths, outcomes, strict=True):
        for name in FIELDS:
            entry, result = summary[name], outcome[name]
            if result == UNSCORED:
                entry.unscored += 1
                continue
            entry.scored += 1
            entry.truth_null += truth.get(name) is None
            entry.found += result == CORRECT and truth.get(name) is not None
            setattr(entry, result, getattr(entry, result) + 1)
    return summary


def wrong_rate(summary: Mapping[str, FieldSummary]) -> tuple[int, int]:
    """(wrong values, scored fields) over all fields."""
    return sum(s.wrong for s in summary.values()), sum(s.scored for s in summary.values())


def answers_from_data(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The four scored answers out of an extraction's ``data``."""
    if data is None:
        return None
    return {name: data.get(key) for name, key in ANSWER_KEYS.items()}


def validate_truth(documents: Iterable[Mapping[str, Any]], iso_4217: frozenset[str] | None = None) -> list[str]:
    """Problems in ``truth.json`` entries (empty when it is well formed)."""
    problems: list[str] = []
    seen: set[str] = set()
    for doc in documents:
        name = doc.get("file", "?")
        if name in seen:
            problems.append(f"{name}: listed twice")
        seen.add(name)
        for key in ("source", "licence", "language", "kind", "truth_from"):
            if not doc.get(key):
                problems.append(f"{name}: no {key}")
        if doc.get("kind") not in KINDS:
            problems.append(f"{name}: kind {doc.get('kind')!r} not in {KINDS}")
        for key in FIELDS:
            if key not in doc:
                problems.append(f"{name}: no {key} (null if the document has none)")
        for value in accepted_values(doc.get("date")):
            if not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
                problems.append(f"{name}: date {value!r} is not YYYY-MM-DD")
            else:
                try:
                    time.strptime(value, "%Y-%m-%d")
                except ValueError:
                    problems.append(f"{name}: date {value!r} does not exist")
        for value in accepted_values(doc.get("total")):
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{name}: total {value!r} is not a number")
        for value in accepted_values(doc.get("currency")):
            if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value) or (
                    iso_4217 is not None and value not in iso_4217):
                problems.append(f"{name}: currency {value!r} is not an ISO 4217 code")
        for value in accepted_values(doc.get("invoice_number")):
            if not isinstance(value, str) or not normalise_number(value):
                problems.append(f"{name}: invoice_number {value!r} is not a non-empty string")
        for key in doc.get("unscored", ()):
            if key not in FIELDS:
                problems.append(f"{name}: unscored field {key!r} unknown")
    return problems


# ---- reporting ---------------------------------------------------------------------------------

def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def field_table(summary: Mapping[str, FieldSummary]) -> str:
    lines = ["| field | scored | accuracy | found (of printed) | right null (of none printed) | abstained | wrong "
             "| not scored |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        printed = s.scored - s.truth_null
        lines.append(f"| {name} | {s.scored} | **{_pct(s.correct, s.scored)}** | {s.found}/{printed} | "
                     f"{s.correct - s.found}/{s.truth_null} | {s.abstained} | {s.wrong} | {s.unscored} |")
    return "\n".join(lines)


def group_table(label: str, groups: Mapping[str, list[int]], truths: Sequence[Mapping[str, Any]],
                outcomes: Sequence[Mapping[str, str]], seconds_per_page: Sequence[float]) -> str:
    lines = [f"| {label} | docs | " + " | ".join(FIELDS) + " | wrong values | s/page (median) |",
             "|---|---|" + "---|" * len(FIELDS) + "---|---|"]
    for key, indexes in groups.items():
        summary = summarise([truths[i] for i in indexes], [outcomes[i] for i in indexes])
        wrong, scored = wrong_rate(summary)
        cells = [f"{s.correct}/{s.scored}" for s in summary.values()]
        median = statistics.median(seconds_per_page[i] for i in indexes)
        lines.append(f"| {key} | {len(indexes)} | " + " | ".join(cells) + f" | {wrong}/{scored} | {median:.2f} |")
    return "\n".join(lines)


def _mark(outcome: str, answer: object) -> str:
    if outcome == CORRECT:
        return "ok" if answer is not None else "ok(null)"
    if outcome == ABSTAINED:
        return "-"
    if outcome == UNSCORED:
        return "n/s" if answer is None else f"n/s({answer})"
    return f"X({answer})"


# ---- running -----------------------------------------------------------------------------------

@dataclass
class Result:
    file: str
    kind: str
    language: str
    pages: int
    seconds: float
    answers: dict[str, Any] | None
    outcomes: dict[str, str]
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def load_truth(path: Path = TRUTH) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["documents"]


async def _warm_up(analyzer: Any) -> float:
    """One extraction on a small generated page, so the engine's load is not charged to the first document."""
    from PIL import Image, ImageDraw

    from shared.extraction import extract

    page = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(page).text((20, 80), "Invoice 1 Total 1.00", fill="black")
    buffer = io.BytesIO()
    page.save(buffer, "PNG")
    started = time.perf_counter()
    with contextlib.suppress(Exception):  # only the load matters here
        await extract(analyzer, buffer.getvalue(), "invoice")
    return time.perf_counter() - started


RENDER_DPI = 200
#: The long side the service prepares a page to at ``high`` detail: pages are rendered no larger (see below).
RENDER_MAX_SIDE = 2048


def pdf_as_images(data: bytes, dpi: int = RENDER_DPI, max_side: int = RENDER_MAX_SIDE) -> bytes:
    """The PDF's pages rendered at ``dpi`` (at most ``max_side`` px): one PNG, or a multi-page TIFF (LZW).

    Capped at the size the service would scale them to anyway; this also keeps clear of a failure of
    multi-page RGB TIFFs whose pages the service has to shrink ("Operation on closed image", seen with
    ``shared/documents`` as of this benchmark's writing).
    """
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    try:
        pages = []
        for i in range(len(document)):
            page = document[i]
            scale = min(dpi / 72, max_side / max(page.get_size()))
            pages.append(page.render(scale=scale).to_pil().convert("RGB"))
    finally:
        document.close()
    buffer = io.BytesIO()
    if len(pages) == 1:
        pages[0].save(buffer, "PNG")
    else:
        pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw",
                      dpi=(dpi, dpi))
    return buffer.getvalue()


async def run(documents: Sequence[Mapping[str, Any]], *, echo: bool = True,
              text_layers: bool = True) -> tuple[list[Result], float]:
    from shared.config import Settings
    from shared.extraction import extract
    from shared.services import build_analyzer

    analyzer = build_analyzer(Settings.from_mapping({"VISION_PROVIDER": "local", "VISION_CACHE_ENABLED": "false"}))
    results: list[Result] = []
    try:
        load = await _warm_up(analyzer)
        for doc in documents:
            data = (DOCUMENTS / doc["file"]).read_bytes()
            if not text_layers and doc["file"].lower().endswith(".pdf"):
                data = await asyncio.to_thread(pdf_as_images, data)  # not timed: an upload would arrive so
            started = time.perf_counter()
            error, extracted, warnings = None, None, []
            try:
                reply = await extract(analyzer, data, "invoice")
                extracted = reply["data"]
                warnings = [w.get("code", str(w)) if isinstance(w, dict) else str(w) for w in reply.get("warnings", [])]
            except Exception as exc:  # a failure is scored (as abstentions) and listed
                error = f"{type(exc).__name__}: {exc}"[:300]
            seconds = time.perf_counter() - started
            answers = answers_from_data(extracted)
            outcomes = score_document(doc, answers)
            result = Result(doc["file"], doc["kind"], doc["language"], int(doc.get("pages", 1)), seconds, answers,
                            outcomes, error, warnings)
            results.append(result)
            if echo:
                marks = "  ".join(f"{name}={_mark(outcomes[name], (answers or {}).get(name))}" for name in FIELDS)
                tail = f"  ERROR {error}" if error else ""
                print(f"{doc['file'][:58]:58} {seconds / result.pages:6.2f} s/p  {marks}{tail}", flush=True)
    finally:
        await analyzer.aclose()
    return results, load


def report(documents: Sequence[Mapping[str, Any]], results: Sequence[Result], load: float) -> str:
    outcomes = [r.outcomes for r in results]
    summary = summarise(documents, outcomes)
    wrong, scored = wrong_rate(summary)
    per_page = [r.seconds / r.pages for r in results]
    pages = sum(r.pages for r in results)
    by_kind: dict[str, list[int]] = {}
    by_language: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        by_kind.setdefault(r.kind, []).append(i)
        by_language.setdefault(r.language, []).append(i)
    out = [
        f"{len(results)} documents, {pages} pages "
        f"({', '.join(f'{n} {k}' for k, n in Counter(r.kind for r in results).most_common())})",
        "",
        field_table(summary),
        "",
        f"Wrong values: **{wrong} of {scored} scored fields ({_pct(wrong, scored)})**; "
        f"abstentions: {sum(s.abstained for s in summary.values())}; failed requests: "
        f"{sum(r.error is not None for r in results)}.",
        f"Time: {statistics.median(per_page):.2f} s/page median, {statistics.mean(per_page):.2f} mean, "
        f"{max(per_page):.2f} max; {sum(r.seconds for r in results):.0f} s in all; engine warm-up {load:.1f} s.",
        "",
        group_table("kind", by_kind, documents, outcomes, per_page),
        "",
        group_table("language", by_language, documents, outcomes, per_page),
    ]
    errors = [r for r in results if r.error]
    if errors:
        out += ["", "Failed requests:"] + [f"* {r.file}: {r.error}" for r in errors]
    return "\n".join(out)


def environment() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"python": platform.python_version(), "machine": platform.machine(),
            **{name: version(name) for name in ("rapidocr-onnxruntime", "onnxruntime", "pypdfium2", "pillow")}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="FILE",
                        help="score only documents whose file name contains this text (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write every answer and the summary as JSON ('-': stdout)")
    parser.add_argument("--no-text-layer", action="store_true",
                        help=f"upload PDFs as rendered pages ({RENDER_DPI} dpi images, at most {RENDER_MAX_SIDE} px), "
                             "so that every page is OCR'd")
    parser.add_argument("--truth", type=Path, default=TRUTH, help=f"ground truth (default {TRUTH.relative_to(ROOT)})")
    args = parser.parse_args(argv)

    from shared.extraction import ISO_4217

    documents = load_truth(args.truth)
    problems = validate_truth(documents, ISO_4217)
    if problems:
        print("truth.json is not well formed:\n" + "\n".join(f"* {p}" for p in problems), file=sys.stderr)
        return 2
    if args.only:
        documents = [d for d in documents if any(text in d["file"] for text in args.only)]
        if not documents:
            print(f"no document's file name contains any of {args.only}", file=sys.stderr)
            return 2
    source = args.truth.relative_to(ROOT) if args.truth.is_relative_to(ROOT) else args.truth
    print(f"{len(documents)} documents from {source}; "
          f"{', '.join(f'{k} {v}' for k, v in environment().items())}\n", flush=True)
    if args.no_text_layer:
        print(f"--no-text-layer: PDFs uploaded as {RENDER_DPI} dpi page images (at most {RENDER_MAX_SIDE} px; OCR, "
              "no text layer)\n", flush=True)
    results, load = asyncio.run(run(documents, echo=args.json != "-", text_layers=not args.no_text_layer))
    text = report(documents, results, load)
    if args.json:
        summary = summarise(documents, [r.outcomes for r in results])
        wrong, scored = wrong_rate(summary)
        payload = {"environment": environment(), "text_layers": not args.no_text_layer, "warm_up_seconds": load,
                   "summary": {name: {**asdict(s), "accuracy": s.accuracy} for name, s in summary.items()},
                   "wrong_values": wrong, "scored_fields": scored,
                   "documents": [asdict(r) for r in results]}
        encoded = json.dumps(payload, indent=1, ensure_ascii=False, default=str)
        if args.json == "-":
            print(encoded)
            return 0
        Path(args.json).write_text(encoded + "\n", encoding="utf-8")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
