"""Dates on invoices and receipts, from OCR text, as ISO 8601: pure functions, tested on strings alone.

* **Forms**: ``2024-03-15``; day, month and year with ``.``, ``/`` or ``-``; month names in every language of
  :mod:`shared.offline.months` (``15 Mar 2024``, ``7. Mai 2014``, ``02 Juillet 2015``, ``March 15, 2024``,
  ``August 3 , 2014``, ``Jan 1,2022``, ``3 de marzo de 2024``, glued ``4.Juni2014``).
* **Day or month first**: dotted dates are always day first (``15.03.2024``). For ``a/b/yyyy`` a part over
  12 decides; when both are <= 12 the caller's ``day_first`` decides (the page's other dates, or its
  language: :func:`date_order`); when that is unknown the date is ambiguous: read day first, or refused
  with ``strict=True`` (an invoice extraction would rather have no date than a wrong one).
* **Glued times**: receipt printers and OCR run a time into the date (``03.04.2009:53`` is 3 April 2020,
  09:53; ``12/05/20188:30:00PM``; ``07May201812:30``): the digits before a ``:`` belong to the time.
* **Years**: four digits, or two after a dotted day and month (``23.09.16``: receipts print them; read as
  20yy); a slash date with a two-digit year is refused (``15/03/24``). Years outside 1980-2099 are not
  dates (``08.10.1614`` is an OCR slip, and the rule above reads it as 8 Oct 2016 14:..).
"""

from __future__ import annotations

import re
from datetime import date

from shared.offline.months import MONTH_NUMBERS, MONTH_PATTERN

FIRST_YEAR, LAST_YEAR = 1980, 2099

_ISO = re.compile(r"(?<![\d.,])(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?!\d)")
# Day, separator, month, the same separator, then the year's digits (maybe run into a time's hour).
_NUMERIC = re.compile(r"(?<![\d.,/])(\d{1,2})([./-])\s?(\d{1,2})\2\s?(\d{2,6})(?![.,]\d)(?=(:\d)?)")
_MONTH = rf"(?<![a-zà-ÿ])({MONTH_PATTERN})(?![a-zà-ÿ])\.?"
_DAY_NAME_YEAR = re.compile(
    rf"(?<!\d)(?<!\d[.,])(\d{{1,2}})(?:st|nd|rd|th|er|e)?\.?[\s-]*(?:de\s+)?{_MONTH}[\s,.-]*(?:de\s+|del\s+)?"
    rf"(\d{{4}})(?=\d{{1,2}}:|\D|$)", re.I)
_NAME_DAY_YEAR = re.compile(rf"{_MONTH}\s*(\d{{1,2}})(?:st|nd|rd|th)?\s*,?\s*(\d{{4}})(?=\d{{1,2}}:|\D|$)", re.I)
_SLASHED = re.compile(r"(?<![\d/.])(\d{1,2})[/-](\d{1,2})[/-](\d{4})(?!\d)")


def _numeric_year(digits: str, time_follows: bool, dotted: bool) -> int | None:
    """The year in the digits after day and month; a following ``:`` means the last one or two are the hour."""
    if time_follows:
        digits = {6: digits[:4], 5: digits[:4], 4: digits[:2], 3: digits[:2]}.get(len(digits), "")
    if len(digits) == 4:
        return int(digits)
    if len(digits) == 2 and dotted:
        return 2000 + int(digits)
    return None


def date_candidates(text: str, *, day_first: bool | None = None,
                    strict: bool = False) -> list[tuple[int, str]]:
    """Every date in ``text`` as (position, ISO date), in text order (see the module docstring)."""
    found: list[tuple[int, int, int, int]] = []  # (position, year, month, day)
    for m in _ISO.finditer(text):
        found.append((m.start(), int(m[1]), int(m[3]), int(m[4])))
    for m in _NUMERIC.finditer(text):
        dotted = m[2] == "."
        year = _numeric_year(m[4], bool(m[5]), dotted)
        first, second = int(m[1]), int(m[3])
        if year is None:
            continue
        if dotted or first > 12 or first == second:
            month, day = second, first
        elif second > 12:
            month, day = first, second
        elif day_first is None and strict:
            continue  # 04/05/2024 on a page that does not say which comes first
        else:
            month, day = (second, first) if day_first is not False else (first, second)
        found.append((m.start(), year, month, day))
    for m in _DAY_NAME_YEAR.finditer(text):
        found.append((m.start(), int(m[3]), MONTH_NUMBERS[m[2].lower()], int(m[1])))
    for m in _NAME_DAY_YEAR.finditer(text):
        found.append((m.start(), int(m[3]), MONTH_NUMBERS[m[1].lower()], int(m[2])))
    dates = []
    for position, year, month, day in sorted(found):
        if not FIRST_YEAR <= year <= LAST_YEAR:
            continue
        try:
            dates.append((position, date(year, month, day).isoformat()))
        except ValueError:
            continue
    return dates


def parse_date(text: str, *, day_first: bool | None = None, strict: bool = False) -> str | None:
    """The first date in ``text`` as ISO 8601, else None."""
    dates = date_candidates(text, day_first=day_first, strict=strict)
    return dates[0][1] if dates else None


def date_order(texts: list[str]) -> bool | None:
    """True for day-first, False for month-first, from the first unambiguous slash date; None if none."""
    for text in texts:
        for first, second, _ in _SLASHED.findall(text):
            if int(first) > 12 >= int(second):
                return True
            if int(second) > 12 >= int(first):
                return False
    return None


_TIME = re.compile(r"(?<!\d)\d{1,2}:\d{2}(?!\d)")


def has_time(text: str) -> bool:
    """True when ``text`` holds a clock time (``15:56``): a receipt prints its date beside the time of sale."""
    return bool(_TIME.search(text)) or bool(re.search(r"\d{3,}:\d{2}", text))
