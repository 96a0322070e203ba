"""Values on a page for the offline engine: dates, amounts and currencies, from OCR text.

Kept apart from :mod:`shared.offline.documents` (which finds *where* a value is) because reading a value
is its own set of rules, tested on strings alone. Every parser returns ``None`` rather than a guess.

* **Dates** become ISO 8601. ``2024-03-15``, ``15 Mar 2024``, ``March 15, 2024`` and dotted
  ``15.03.2024`` (always day first) are unambiguous. For ``a/b/yyyy``: a part over 12 decides; when
  both are <= 12 the order of an unambiguous slash date elsewhere on the same page decides, else day
  first (most of the world writes day first). Two-digit years are not read (null).
* **Amounts**: the last of ``,``/``.`` is the decimal mark when both appear; a single separator followed
  by exactly three digits groups thousands (``1,234`` and ``1.234`` are 1234); percentages are skipped.
  A bare ``$`` or ``¥`` names no currency (many use it), so only ISO codes, ``US$``, ``€``, ``£``, ``₹``
  count, and two different currencies on one page give null.
"""

from __future__ import annotations

import re
from datetime import date

from shared.offline.engine import TextBox

_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"))}
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_ISO = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_DAY_NAME_YEAR = re.compile(rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th)?[\s-]+{_MONTH}[\s,-]+(\d{{4}})(?!\d)", re.I)
_NAME_DAY_YEAR = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})(?!\d)", re.I)
_DOTTED = re.compile(r"(?<!\d)(\d{1,2})\.(\d{1,2})\.(\d{4})(?!\d)")
_SLASHED = re.compile(r"(?<![\d/])(\d{1,2})[/-](\d{1,2})[/-](\d{4})(?!\d)")


def date_order(texts: list[str]) -> bool | None:
    """True for day-first, False for month-first, from the first unambiguous slash date; None if none."""
    for text in texts:
        for first, second, _ in _SLASHED.findall(text):
            if int(first) > 12 >= int(second):
                return True
            if int(second) > 12 >= int(first):
                return False
    return None


def parse_date(text: str, *, day_first: bool | None = None) -> str | None:
    """The first date in ``text`` as ISO 8601 (see the module docstring for the rules), else None."""
    candidates: list[tuple[int, int, int, int]] = []  # (position, year, month, day)
    for m in _ISO.finditer(text):
        candidates.append((m.start(), int(m[1]), int(m[2]), int(m[3])))
    for m in _DAY_NAME_YEAR.finditer(text):
        candidates.append((m.start(), int(m[3]), _MONTHS[m[2].lower()[:3]], int(m[1])))
    for m in _NAME_DAY_YEAR.finditer(text):
        candidates.append((m.start(), int(m[3]), _MONTHS[m[1].lower()[:3]], int(m[2])))
    for m in _DOTTED.finditer(text):
        candidates.append((m.start(), int(m[3]), int(m[2]), int(m[1])))
    for m in _SLASHED.finditer(text):
        first, second = int(m[1]), int(m[2])
        is_day_first = first > 12 or (second <= 12 and day_first is not False)
        month, day = (second, first) if is_day_first else (first, second)
        candidates.append((m.start(), int(m[3]), month, day))
    for _, year, month, day in sorted(candidates):
        try:
            return date(year, month, day).isoformat()
        except ValueError:
            continue
    return None


_AMOUNT = re.compile(r"(?<![\w/.,-])(\d{1,3}(?:[,.'’]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
                     r"(?![\w/%-]|[.,]\d|\s*%)")


def parse_amount(text: str) -> float | None:
    """The first amount in ``text`` (not part of a date, code or percentage), else None."""
    for match in _AMOUNT.finditer(text):
        token = match[1].replace("'", "").replace("’", "")
        marks = [c for c in token if c in ",."]
        if len(set(marks)) == 2:
            decimal = token.rfind(",") > token.rfind(".")
            token = token.replace(".", "").replace(",", ".") if decimal else token.replace(",", "")
        elif marks and re.search(r"[,.]\d{3}$", token):
            token = token.replace(",", "").replace(".", "")
        else:
            token = token.replace(",", ".")
        try:
            return float(token)
        except ValueError:
            continue
    return None


_CURRENCY_CODES = ("EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK",
                   "HUF", "INR", "CNY", "ZAR", "BRL", "MXN", "SGD", "HKD")
_CURRENCY = re.compile(r"\b(" + "|".join(_CURRENCY_CODES) + r")\b|(US\$)|([€£₹])")
_SYMBOLS = {"€": "EUR", "£": "GBP", "₹": "INR", "US$": "USD"}


def find_currency(boxes: list[TextBox]) -> tuple[str | None, TextBox | None]:
    """The one currency the page names (ISO code or unambiguous symbol), else (None, None)."""
    found: dict[str, TextBox] = {}
    for box in boxes:
        for code, us, symbol in _CURRENCY.findall(box.text):
            found.setdefault(code or _SYMBOLS[us or symbol], box)
    if len(found) != 1:
        return None, None
    return next(iter(found.items()))
