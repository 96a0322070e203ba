"""What the built-in extraction targets are, and the checks on what a model filled in.

Why a module of its own: the invoice and table models are the contract (:mod:`shared.extraction.extract`
sends their strict schemas and validates replies against them; the HTTP routes document them; the
offline engine writes the same shapes), and their checks are pure arithmetic on dates, amounts and
currency codes, testable without a model. Checks become ``warnings``, never silent fixes: each line's
quantity x unit price against its total, the lines against the subtotal, subtotal + tax against the
total, dates as ISO 8601 and the due date not before the invoice date, the currency an ISO 4217 code.
Amounts agree within ``max(0.01, 0.5% of the printed amount)``: a cent for printed rounding, half a
percent for unit prices printed with fewer decimals than they were computed with.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Active ISO 4217 codes (2025), funds and precious metals included; XTS and XXX (test, none) left out.
_ISO_4217_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN
NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL
SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES
VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL
"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Vendor(_Strict):
    name: str | None = Field(description="Seller's name as printed")
    address: str | None = Field(description="Seller's full address, one line")
    tax_id: str | None = Field(description="Seller's VAT or tax number as printed")


class Customer(_Strict):
    name: str | None = Field(description="Buyer's name as printed")
    address: str | None = Field(description="Buyer's full address, one line")


class LineItem(_Strict):
    description: str | None
    quantity: float | None
    unit_price: float | None
    total: float | None = Field(description="The line's amount as printed")


class Invoice(_Strict):
    vendor: Vendor
    customer: Customer
    invoice_number: str | None
    invoice_date: str | None = Field(description="ISO 8601 date, YYYY-MM-DD")
    due_date: str | None = Field(description="ISO 8601 date, YYYY-MM-DD")
    line_items: list[LineItem]
    subtotal: float | None = Field(description="Total before tax as printed")
    tax: float | None = Field(description="Total tax as printed")
    total: float | None = Field(description="Amount due as printed")
    currency: str | None = Field(description="ISO 4217 code, e.g. EUR")


class TableGrid(_Strict):
    """What the model writes: strict mode cannot express objects keyed by column names it has not seen."""

    columns: list[str] = Field(description="Header cells, left to right")
    rows: list[list[str | None]] = Field(description="One array per row; one cell per column, null if empty")


class Table(BaseModel):
    """What we return: rows keyed by column."""

    columns: list[str]
    rows: list[dict[str, str | None]]


def _close(computed: Decimal, printed: Decimal) -> bool:
    return abs(computed - printed) <= max(Decimal("0.01"), abs(printed) * Decimal("0.005"))


def _money(value: float) -> Decimal:
    return Decimal(str(value))


def _iso_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def invoice_warnings(invoice: Invoice) -> list[dict[str, Any]]:
    """Inconsistencies in what was read, as ``{code, message, field}``; the data itself is left as read."""
    warnings: list[dict[str, Any]] = []

    def warn(code: str, field: str, message: str) -> None:
        warnings.append({"code": code, "message": message, "field": field})

    for i, item in enumerate(invoice.line_items):
        if item.quantity is not None and item.unit_price is not None and item.total is not None:
            computed = _money(item.quantity) * _money(item.unit_price)
            if not _close(computed, _money(item.total)):
                warn("line_total_mismatch", f"line_items[{i}].total", f"line {i + 1}: {item.quantity} x "
                     f"{item.unit_price} = {computed}, but its total is {item.total}")
    totals = [item.total for item in invoice.line_items]
    if invoice.subtotal is not None and totals and None not in totals:
        lines = sum((_money(t) for t in totals if t is not None), Decimal(0))
        if not _close(lines, _money(invoice.subtotal)):
            warn("subtotal_mismatch", "subtotal",
                 f"the lines add up to {lines}, but the subtotal is {invoice.subtotal}")
    if invoice.subtotal is not None and invoice.total is not None:
        computed = _money(invoice.subtotal) + _money(invoice.tax or 0)
        if not _close(computed, _money(invoice.total)):
            tax = "no tax" if invoice.tax is None else f"tax {invoice.tax}"
            warn("total_mismatch", "total",
                 f"subtotal {invoice.subtotal} + {tax} = {computed}, but the total is {invoice.total}")
    dates: dict[str, date | None] = {}
    for field in ("invoice_date", "due_date"):
        text = getattr(invoice, field)
        dates[field] = _iso_date(text) if text is not None else None
        if text is not None and dates[field] is None:
            warn("invalid_date", field, f"{field} {text!r} is not an ISO 8601 date (YYYY-MM-DD)")
    issued, due = dates["invoice_date"], dates["due_date"]
    if issued and due and due < issued:
        warn("due_date_before_invoice_date", "due_date", f"due {due.isoformat()} is before the invoice date "
             f"{issued.isoformat()}")
    if invoice.currency is not None and invoice.currency not in ISO_4217:
        warn("invalid_currency", "currency", f"{invoice.currency!r} is not an ISO 4217 currency code")
    return warnings


def table_from_grid(grid: TableGrid) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``{columns, rows}`` with rows keyed by column, and warnings for what did not fit."""
    warnings: list[dict[str, Any]] = []
    columns: list[str] = []
    for i, raw in enumerate(grid.columns):
        name = raw.strip() or f"Column {i + 1}"
        if not raw.strip():
            warnings.append({"code": "empty_column_name", "field": f"columns[{i}]",
                             "message": f"column {i + 1} has no name; called it {name!r}"})
        base, n = name, 1
        while name in columns:
            n += 1
            name = f"{base} ({n})"
        if name != base:
            warnings.append({"code": "duplicate_column", "field": f"columns[{i}]",
                             "message": f"column {i + 1} repeats the name {base!r}; called it {name!r}"})
        columns.append(name)
    rows = []
    for r, cells in enumerate(grid.rows):
        if len(cells) > len(columns):
            warnings.append({"code": "extra_cells", "field": f"rows[{r}]",
                             "message": f"row {r + 1} has {len(cells)} cells for {len(columns)} columns; "
                                        f"dropped {json.dumps(cells[len(columns):], ensure_ascii=False)}"})
        kept = [cell if cell is None or cell.strip() else None for cell in cells[: len(columns)]]
        rows.append(dict(zip(columns, kept + [None] * (len(columns) - len(kept)), strict=True)))
    return Table(columns=columns, rows=rows).model_dump(), warnings
