"""Document understanding for the offline engine: invoices and tables from OCR boxes.

Why this exists: :mod:`shared.offline.engine` turns pixels into text boxes (recognition); this module
turns boxes into structured data (interpretation), so each stays one concern and the parsers work
and are tested without the OCR engine. Every value comes from a recognised box, and every extractor
returns ``None`` rather than a guess (a wrong invoice total is worse than a missing one).

Decisions, and why:

* **Geometry, not language**: lines come from :func:`~shared.offline.engine.group_lines`; table columns
  are the x-ranges that the cells of multi-cell lines cover (:mod:`shared.offline.tables`); labels are
  matched by patterns, one table per language (:mod:`shared.offline.labels`, which accept the missing
  spaces the recogniser produces), and their values are read in the label's own box, on its row at any
  distance, or under it in its column (:mod:`shared.offline.layout`, which also says which rows are table
  headers and repairs text layers' stray decimal marks and letter-spaced words).
* **Which value**: the total by arithmetic, label strength and position (:mod:`shared.offline.totals`);
  other fields the first labelled value; an invoice date with no label from the title line that carries
  the number, or a receipt's date beside its time of sale. Ambiguous dates follow the page's other dates,
  then its language, else stay null.
* **Values** (dates, amounts, currencies) are read by :mod:`shared.offline.values` and
  :mod:`shared.offline.dates`; any JSON Schema is filled by :mod:`shared.offline.forms` with the label
  helpers below. Every filled field's provenance names its box, the OCR confidence and the ``rule``.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from typing import Any

from shared.offline.dates import has_time
from shared.offline.engine import TextBox, group_lines
from shared.offline.labels import FIELDS, TITLE, label_pattern, page_language
from shared.offline.layout import (
    attach_marks,
    below,
    first_value,
    is_header_row,
    last_value,
    row_after,
    squeeze_spaced,
    vertical_text,
)
from shared.offline.tables import build_table, column_of, column_spans, table_from_boxes, table_provenance, union_box
from shared.offline.totals import Candidate, choose_total
from shared.offline.values import (
    ZERO_DECIMAL,
    currencies,
    date_order,
    find_currency,
    parse_amount,
    parse_date,
    parse_money,
    parse_reference,
    parse_tax_id,
    whole_number_page,
)

__all__ = ["LABELS", "build_table", "column_spans", "first_parsed", "invoice_from_boxes", "labelled_values",
           "neighbour_below", "neighbour_right", "parse_money", "table_from_boxes", "table_provenance", "union_box"]

# --- label: value -----------------------------------------------------------------------------------


def neighbour_right(box: TextBox, line: list[TextBox]) -> TextBox | None:
    """The next box to the right on the same line, if the gap is under ten line heights."""
    after = [b for b in line if b.left >= box.right - 0.5 * box.height and b is not box]
    nearest = min(after, key=lambda b: b.left, default=None)
    return nearest if nearest is not None and nearest.left - box.right < 10 * box.height else None


def neighbour_below(box: TextBox, lines: list[list[TextBox]], index: int) -> TextBox | None:
    """The box on the next line that overlaps ``box`` horizontally the most, if the gap is small."""
    if index + 1 >= len(lines):
        return None
    below = [(min(b.right, box.right) - max(b.left, box.left), b) for b in lines[index + 1]]
    overlap, best = max(below, key=lambda pair: pair[0], default=(0.0, None))
    if best is None or overlap <= 0 or best.top - box.bottom > 1.5 * box.height:
        return None
    return best


def labelled_values(lines: list[list[TextBox]], label: re.Pattern[str], *, below: bool = True,
                    skip: frozenset[int] = frozenset()) -> list[tuple[TextBox, list[tuple[str, TextBox]]]]:
    """For each box starting with ``label``, in page order: the label box and its value candidates.

    Candidates, best first: the rest of the label's own box, the box to its right, and (if ``below``) the
    box directly under it; the caller keeps the first that parses. Boxes whose ``id`` is in ``skip``
    (table headers and rows) are never labels.
    """
    found = []
    for index, line in enumerate(lines):
        for box in line:
            match = label.match(box.text)
            if match is None or id(box) in skip:
                continue
            rest = box.text[match.end():].strip(" :#.-\t")
            candidates = [(rest, box)] if rest else []
            for other in (neighbour_right(box, line), neighbour_below(box, lines, index) if below else None):
                if other is not None:
                    candidates.append((other.text, other))
            found.append((box, candidates))
    return found


def first_parsed(candidates: list[tuple[str, TextBox]], parse: Any) -> tuple[Any, TextBox] | None:
    """The first candidate ``parse`` accepts, as (value, the box it was read from); None if none does."""
    for text, box in candidates:
        value = parse(text)
        if value is not None:
            return value, box
    return None


# --- invoices ---------------------------------------------------------------------------------------


def _label(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"\s*(?:{pattern})(?![a-z])", re.I)


LABELS = {
    # Invoice numbers, dates and amounts in every language of shared.offline.labels (one table per language).
    **{field: label_pattern(field) for field in FIELDS},
    "tax_id": _label(r"vat\s*(?:no\b\.?|number|reg\w*(?:\s*no\b\.?)?|id)|tax\s*(?:id|no\b\.?|number)|tin|ein|abn"),
    # A colon is required after the common words, or "From 1 March" and "Customer No: 12" would be names.
    "vendor": _label(r"(?:from|vendor|seller|supplier)\s*:|sold\s*by|bill\s*from"),
    "customer": _label(r"bill(?:ed)?\s*to|invoice\s*to|sold\s*to|(?:customer|client)\s*:"),
}
_ITEM_FIELDS = (("unit_price", r"unit\s*price|price|rate|unit\s*cost|each"),
                ("quantity", r"qty|quantity|units?|hours|hrs"), ("total", r"(?:line\s*)?total|amount|sum"),
                ("description", r"desc\w*|items?|product|service|details"))
_SUMMARY = ("subtotal", "tax", "total", "amount_due")
_INVOICE_WORDS = re.compile(r"\s*(?:tax\s*)?(?:invoice|receipt|bill|statement)\s*$", re.I)


def _line_items(lines: list[list[TextBox]]) -> tuple[list[dict[str, Any]], dict[str, Any], frozenset[int]]:
    """Line items from a table whose header names quantity, unit price and total; else nothing."""
    for start, header in enumerate(lines):
        fields: dict[int, str] = {}
        for i, box in enumerate(header):
            field = next((f for f, p in _ITEM_FIELDS if re.match(rf"\s*(?:{p})\b", box.text, re.I)), None)
            if field and field not in fields.values():
                fields[i] = field
        if len(header) < 3 or not {"quantity", "unit_price", "total"} <= set(fields.values()):
            continue
        end, height = start + 1, statistics.median(b.height for b in header)
        while end < len(lines) and not any(LABELS[f].match(b.text) for b in lines[end] for f in _SUMMARY):
            if min(b.top for b in lines[end]) - max(b.bottom for b in lines[end - 1]) > 3 * height:
                break
            end += 1
        names, rows = build_table(lines[start:end])
        by_name = {names[column_of(header[i], column_spans(lines[start:end]))]: f for i, f in fields.items()}
        items, provenance = [], {}
        for row in rows:
            item: dict[str, Any] = dict.fromkeys(("description", "quantity", "unit_price", "total"))
            for name, cell in row.items():
                field = by_name.get(name)
                value = None if cell is None or field is None else (
                    cell.text if field == "description" else parse_amount(cell.text))
                if value is not None:
                    item[field] = int(value) if field == "quantity" and float(value).is_integer() else value
                    provenance[f"line_items[{len(items)}].{field}"] = cell.as_provenance()
            if item["description"] is not None or item["total"] is not None:
                items.append(item)
        used = frozenset(id(b) for line in lines[start:end] for b in line)
        return items, provenance, used
    return [], {}, frozenset()


def _party(lines: list[list[TextBox]], name: TextBox) -> TextBox | None:
    """The address under a party's name: up to 4 left-aligned lines right below, until a label."""
    index = next(i for i, line in enumerate(lines) if any(b is name for b in line))
    parts, last = [], name
    for line in lines[index + 1:index + 5]:
        box = next((b for b in line if abs(b.left - name.left) < name.height), None)
        if box is None or box.top - last.bottom > name.height or ":" in box.text or any(
                p.match(box.text) for p in LABELS.values()):
            break
        parts.append(box)
        last = box
    return union_box(parts, ", ") if parts else None


def _nfkc(box: TextBox) -> TextBox:
    """The box with its text in Unicode NFKC: the recogniser emits full-width forms (``：06.08.2013``)."""
    text = unicodedata.normalize("NFKC", box.text)
    return box if text == box.text else TextBox(text, box.confidence, box.box)


def _currency_code(text: str) -> str | None:
    """The first currency a ``Currency:`` label's value names."""
    names = currencies(text)
    return names[0] if names else None


def _is_label(box: TextBox) -> bool:
    return any(pattern.match(box.text) for pattern in LABELS.values())


def _longer_label(text: str, field: str, end: int) -> bool:
    """True when another field's label matches more of ``text``: ``Date limite de paiement`` is a due
    date, not the ``Date`` of the invoice; ``Total HT`` a net amount, not the ``Total``."""
    return any(other != field and (m := pattern.match(text)) is not None and m.end() > end
               for other, pattern in LABELS.items() if other in FIELDS)


def _hits(lines: list[list[TextBox]], field: str, parse: Any, table: frozenset[int],
          header_rows: frozenset[int], own_box_only: bool = False) -> list[tuple[Any, TextBox, TextBox, str]]:
    """Every labelled value of ``field`` in page order: (value, value box, label box, how it was found).

    A label's value is the rest of its own box, else on its row at any distance (up to the next label; for
    sums the rightmost amount, the row's total column), else directly below it. A label in the line-item
    table is no label, and a sum is never read under a label in a table's header row.
    """
    found = []
    sums = field in _SUMMARY
    for index, line in enumerate(lines):
        for box in line:
            match = LABELS[field].match(box.text)
            if match is None or id(box) in table or _longer_label(box.text, field, match.end()):
                continue
            rest = box.text[match.end():].strip(" :#.-\t")
            value = parse(rest) if rest else None
            if value is not None:
                found.append((value, box, box, "label"))
                continue
            if own_box_only:
                continue
            row = row_after(box, line, _is_label)
            hit = (last_value if sums else first_value)(row, parse)
            if hit is None and not sums and len(row) > 1 and (value := parse(" ".join(b.text for b in row))):
                hit = (value, union_box(row))  # a value split over boxes ("Jan 1", ",", "2022")
            if hit is None and not (sums and id(line) in header_rows):
                under = below(box, lines, index)
                hit = first_value([under] if under is not None else [], parse)
                if hit is not None:
                    found.append((*hit, box, "label, value below"))
                continue
            if hit is not None:
                found.append((*hit, box, "label, same row"))
    return found


_TITLE = re.compile(rf"{label_pattern(TITLE).pattern}\s*:?\s*$", re.I)


def _number_column(lines: list[list[TextBox]], header_rows: frozenset[int]) -> tuple[str, TextBox, str] | None:
    """The number under a table header's column named by the document's own word alone (``Klant | Order |
    Factuur | Vervaldatum`` over the values): that column holds the document's number."""
    for index, line in enumerate(lines):
        if id(line) not in header_rows:
            continue
        for box in line:
            under = below(box, lines, index) if _TITLE.match(box.text) else None
            if under is not None and (value := parse_reference(under.text)):
                return value, under, "column headed by the document's name"
    return None


#: A word naming some date (``Lieferdatum``, ``Order date``): a date beside it is that one.
_OTHER_DATE = re.compile(r"[a-zäöü]*(?:datum|date|fecha|data)\b", re.I)


def _unlabelled_date(lines: list[list[TextBox]], parse: Any) -> tuple[str, TextBox, str] | None:
    """A date where no label names one: in the document's title line with its number
    (``Rechnung Nr. 42 vom 31.01.2014``, ``Invoice# 508 issued at2020-11-21``), else a receipt's date
    printed beside the time of sale (``02.03.20 15:59``) on a line with no label and no other date's name."""
    for line in lines:
        for box in line:
            match = LABELS["invoice_number"].match(box.text)
            if match and (value := parse(box.text[match.end():])) is not None:
                return value, box, "date in the title with the number"
    for line in lines:
        text = " ".join(b.text for b in line)
        if not has_time(text) or _OTHER_DATE.search(text) or any(
                p.match(b.text) for b in line for f, p in LABELS.items() if f != "invoice_date"):
            continue
        for box in line:
            if (value := parse(box.text)) is not None:
                return value, box, "receipt date beside a time"
    return None


def _page_language_day_first(texts: list[str]) -> bool | None:
    """Day first when the page's labels are in a language that writes the day first (all but English)."""
    language = page_language(texts)
    return None if language in (None, "en") else True


def invoice_from_boxes(boxes: list[TextBox]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Invoice fields found in the OCR boxes (None where not found reliably) and their provenance.

    Provenance maps a field path (``total``, ``vendor.name``, ``line_items[0].total``) to the box the
    value was read from, with ``rule``: how it was found. The vendor's name is the labelled one (From:,
    Vendor:, Sold by...) or else a heading in the first two lines: larger than the median text (x1.15),
    letters only, not a label and not "Invoice". The total is chosen by :mod:`shared.offline.totals`;
    other fields take the first labelled value. Labels inside the line-item table are ignored.
    """
    boxes = squeeze_spaced(attach_marks([_nfkc(b) for b in boxes]))
    sideways = vertical_text(boxes)  # no rows or columns: each box its own line, values only inside it
    lines = [[b] for b in boxes] if sideways else group_lines(boxes)
    items, provenance, table = _line_items(lines)
    texts = [b.text for b in boxes]
    order = date_order(texts)
    order = order if order is not None else _page_language_day_first(texts)
    zero_decimal = find_currency(boxes)[0] in ZERO_DECIMAL or whole_number_page(texts)

    def money(text: str) -> float | None:
        return parse_money(text, whole=zero_decimal)

    def day(text: str) -> str | None:
        return parse_date(text, day_first=order, strict=True)

    parsers: dict[str, Any] = {
        "invoice_number": parse_reference, "invoice_date": day, "due_date": day,
        "subtotal": money, "tax": money, "total": money, "amount_due": money, "currency": _currency_code,
        "tax_id": parse_tax_id, "vendor": lambda t: t.strip() or None, "customer": lambda t: t.strip() or None,
    }
    # A row of sum labels only (``Subtotal | VAT | Total``) is a summary in columns, its values under it.
    summaries = frozenset(id(line) for line in lines
                          if all(any(LABELS[f].match(b.text) for f in _SUMMARY) for b in line))
    header_rows = frozenset(id(line) for line in lines if is_header_row(line, money) and id(line) not in summaries)
    hits = {field: _hits(lines, field, parse, table, header_rows, sideways) for field, parse in parsers.items()}
    found: dict[str, tuple[Any, TextBox, str]] = {f: (h[0][0], h[0][1], h[0][3]) for f, h in hits.items() if h}
    for field in ("subtotal", "tax"):
        if hits[field]:  # the last on the page: summaries come after the lines
            found[field] = (hits[field][-1][0], hits[field][-1][1], hits[field][-1][3])
    candidates = {f: [Candidate(v, label.text, box.top, (v, box, rule)) for v, box, label, rule in hits[f]]
                  for f in ("total", "amount_due")}
    chosen = choose_total(candidates["total"], candidates["amount_due"],
                          [h[0] for h in hits["subtotal"]], [h[0] for h in hits["tax"]])
    found.pop("total", None)
    if chosen is not None:
        value, box, rule = chosen[0].source
        found["total"] = (value, box, f"{rule}; chosen by {chosen[1]}")
    if "invoice_number" not in found and (number := _number_column(lines, header_rows)) is not None:
        found["invoice_number"] = number
    if "invoice_date" not in found and (date_hit := _unlabelled_date(lines, day)) is not None:
        found["invoice_date"] = date_hit
    if "vendor" not in found and boxes and not sideways:
        body = statistics.median(b.height for b in boxes)
        heading = next((b for line in lines[:2] for b in line if b.height >= 1.15 * body and ":" not in b.text
                        and re.fullmatch(r"[^\d]*[a-z]{2}[^\d]*", b.text, re.I) and not _INVOICE_WORDS.match(b.text)
                        and not any(p.match(b.text) for p in LABELS.values())), None)
        if heading is not None:
            found["vendor"] = (heading.text, heading, "heading")
    if "currency" not in found:
        currency, currency_box = find_currency(boxes)
        if currency_box is not None:
            found["currency"] = (currency, currency_box, "the one currency on the page")
    for party in ("vendor", "customer"):
        if party in found and (address := _party(lines, found[party][1])) is not None:
            found[f"{party}_address"] = (address.text, address, f"lines under the {party}")

    def take(field: str, path: str) -> Any:
        if field not in found:
            return None
        value, box, rule = found[field]
        provenance[path] = {**box.as_provenance(), "rule": rule}
        return value

    data = {
        "vendor": {"name": take("vendor", "vendor.name"), "address": take("vendor_address", "vendor.address"),
                   "tax_id": take("tax_id", "vendor.tax_id")},
        "customer": {"name": take("customer", "customer.name"),
                     "address": take("customer_address", "customer.address")},
        "invoice_number": take("invoice_number", "invoice_number"),
        "invoice_date": take("invoice_date", "invoice_date"), "due_date": take("due_date", "due_date"),
        "line_items": items, "subtotal": take("subtotal", "subtotal"), "tax": take("tax", "tax"),
        "total": take("total", "total"), "currency": take("currency", "currency"),
    }
    return data, provenance
