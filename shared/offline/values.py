"""Values on a page for the offline engine: dates, amounts and currencies, from OCR text.

Kept apart from :mod:`shared.offline.documents` (which finds *where* a value is) because reading a value
is its own set of rules, tested on strings alone. Every parser returns ``None`` rather than a guess.

* **Dates** are read by :mod:`shared.offline.dates` (re-exported here: ``parse_date``, ``date_order``).
* **Sums** (:func:`parse_money`) carry cents, keep their sign, and are told apart from references, dates
  and rates; whole amounts count only for currencies without minor units.
* **Document numbers** (:func:`parse_reference`) lose a date or a word the recogniser glued to them.
* **Amounts**: the last of ``,``/``.`` is the decimal mark when both appear; a single separator followed
  by exactly three digits groups thousands (``1,234`` and ``1.234`` are 1234); percentages are skipped.
* **Currencies**: ISO codes (in capitals), unambiguous symbols and prefixes (``€``, ``£``, ``₹``, ``US$``,
  ``RM``/``Rp``/``Fr.`` before an amount) and words (``euro``, ``US dollars``). A bare ``$``, ``¥`` or
  ``kr`` names no currency (several use it), and two different currencies on one page give null.
"""

from __future__ import annotations

import re

from shared.offline.dates import date_candidates, date_order, parse_date
from shared.offline.engine import TextBox

__all__ = ["currencies", "date_order", "find_currency", "parse_amount", "parse_date", "parse_money", "parse_reference",
           "parse_tax_id", "whole_number_page"]

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


_MONEY = re.compile(r"(?<![\d.,/])(?P<sign>[-−–]\s?)?(?P<int>\d{1,3}(?:[ \u00a0.,'’]\d{3})+|\d+)[.,](?P<cents>\d{2})"
                    r"(?!\d|[.,]\d|\s?%)(?P<trail>-(?![\w-]))?")
_GROUPED = re.compile(r"(?<![\d.,/])(?P<sign>[-−–]\s?)?(?P<int>\d{1,3}(?:[.,'’]\d{3})+)"
                      r"(?![\d%]|[.,]\d)(?P<trail>-(?![\w-]))?")


def parse_money(text: str, *, whole: bool = False) -> float | None:
    """The last amount in ``text`` written as money, signed, else None.

    Money carries cents (``120.00``, ``1.589,80``, ``1 589,80``, ``EUR34,00``): a bare integer beside
    ``Total`` is a quantity, a column number or a reference far more often than a sum. Only when
    ``whole`` (a currency without minor units: rupiah, yen, won) an integer in thousands groups counts
    (``174,600``). A minus before or after the digits makes it negative (credit notes, receipts' ``8,79-``).
    Digits split by single spaces that are not thousands groups (``1 27.50``) are not an amount.
    """
    found = [(m, True) for m in _MONEY.finditer(text)]
    if whole and not found:
        found = [(m, False) for m in _GROUPED.finditer(text)]
    for match, cents in reversed(found):
        if re.search(r"(?:^|[\s$€£])\d{1,3} $", text[:match.start()]) and not match["sign"]:
            continue  # "1 27.50": spaced digits, not a number
        digits = re.sub(r"\D", "", match["int"])
        value = float(f"{digits}.{match['cents']}") if cents else float(digits)
        return -value if match["sign"] or match["trail"] else value
    return None


#: ISO 4217 currencies without minor units in practice: their sums are printed as whole numbers.
ZERO_DECIMAL = frozenset({"IDR", "JPY", "KRW", "VND", "CLP", "ISK", "HUF", "UGX", "PYG", "COP"})
_CURRENCY_CODES = ("EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK",
                   "HUF", "INR", "CNY", "ZAR", "BRL", "MXN", "SGD", "HKD", "IDR", "KRW", "MYR", "RON", "TRY",
                   "THB", "PHP", "VND", "AED", "SAR", "ILS", "ISK", "BGN", "RUB", "UAH", "TWD", "CLP", "COP")
#: Symbols and words that name one currency wherever they appear. ``$``, ``¥`` and ``kr`` do not: many
#: currencies use them (a ``$`` page is read as USD only when it also says "US dollars").
_NAMES = {"€": "EUR", "£": "GBP", "₹": "INR", "US$": "USD", "U.S.$": "USD", "RM": "MYR", "Rp": "IDR", "zł": "PLN",
          "₩": "KRW", "Fr.": "CHF"}
#: Words, without their spaces and dots, lower case.
_WORDS = {"euro": "EUR", "euros": "EUR", "usdollar": "USD", "usdollars": "USD", "poundsterling": "GBP",
          "poundssterling": "GBP"}
CURRENCY = re.compile(
    r"(?-i:(?<![A-Z])(" + "|".join(_CURRENCY_CODES) + r"))(?![A-Za-z])|(US\$|U\.S\.\$|[€£₹₩])"
    r"|(?<![A-Za-z])(?-i:(RM|Rp|Fr\.))(?=\s?\d)|(zł)|((?-i:U\.?S\.?)\s*dollars?|(?<![a-z])euros?|(?<![a-z])pounds?\s*sterling)(?![a-z])",
    re.I)


def _currency_name(match: re.Match[str]) -> str:
    code, symbol, prefix, zloty, word = match.groups()
    if code:
        return code
    if word:
        return _WORDS[re.sub(r"[\s.]", "", word.lower())]
    name = symbol or prefix or zloty
    return _NAMES[name]


def currencies(text: str) -> list[str]:
    """The ISO codes ``text`` names, by code (in capitals: "try" is a word), unambiguous symbol or word."""
    return [_currency_name(match) for match in CURRENCY.finditer(text)]


def find_currency(boxes: list[TextBox]) -> tuple[str | None, TextBox | None]:
    """The one currency the page names (ISO code, unambiguous symbol or word), else (None, None)."""
    found: dict[str, TextBox] = {}
    for box in boxes:
        for code in currencies(box.text):
            found.setdefault(code, box)
    if len(found) != 1:
        return None, None
    return next(iter(found.items()))


_GROUPED_WHOLE = re.compile(r"(?<![\d.,])\d{1,3}(?:[.,]\d{3})+(?![\d.,])")


def whole_number_page(texts: list[str]) -> bool:
    """True when a page's amounts are whole numbers in thousands groups (``82,000``, ``174,600``) and none
    has cents: a currency without minor units (rupiah, yen, won) even when the page does not name it."""
    if any(_MONEY.search(text) for text in texts):
        return False
    return sum(len(_GROUPED_WHOLE.findall(text)) for text in texts) >= 3


_REFERENCE = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,39}", re.I)
_GLUED_DATE = re.compile(r"(?<=[\d/])(\d{2}\.\d{2}\.\d{2}(?:\d{2})?)$")


def parse_reference(text: str) -> str | None:
    """A document number: letters, digits and ``/_.-``, with a digit; a date glued to its end is cut off.

    Receipt printers print the number and the date side by side and OCR drops the space between
    (``599/018/0000107.09.18``): a ``dd.mm.yy(yy)`` that ends a number with separators is the date; so is
    a date after a glued connector word (``562044387du02Juillet2015``: the number, "du", the date), and
    small letters after its last digit are a word run into it (``508issuedat``).
    """
    match = _REFERENCE.match(text.strip().lstrip(":# "))
    if not match or not any(c.isdigit() for c in match[0]):
        return None
    value = match[0].rstrip(".")
    glued = _GLUED_DATE.search(value)
    if glued and re.search(r"[/_-]", value) and parse_date(glued[1]):
        value = value[:glued.start()]
    dates = date_candidates(value)
    if dates and dates[0][0] > 0 and (head := re.match(r"(.*\d)[a-zäöüé]{1,4}$", value[:dates[0][0]])):
        value = head[1]
    value = re.sub(r"(?<=\d)[a-z]{2,}$", "", value)  # a word run into the number ("508issuedat")
    return None if parse_date(value, strict=True) and not re.search(r"[A-Z]", value, re.I) else value


def parse_tax_id(text: str) -> str | None:
    """A VAT or tax number: letters, digits, spaces, dots and dashes, with four digits or more."""
    value = text.strip()[:30]
    valid = re.fullmatch(r"[A-Z0-9][A-Z0-9 .-]+", value, re.I) and sum(c.isdigit() for c in value) >= 4
    return value if valid else None
