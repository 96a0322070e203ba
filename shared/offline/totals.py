"""Which labelled amount is the document's total: pure choices over candidates, tested on numbers alone.

An invoice prints many sums under total-like labels: line totals, subtotals, tax summaries, the total
of discounts, the grand total, the amount still due. The facts used, in order:

1. **Arithmetic**: the candidate equal to a subtotal plus the tax (one rate, or all rates together) is the
   grand total, whatever its label says.
2. **Label strength**: a specific label (``Grand total``, ``Gesamtbetrag``, ``Total TTC``, ``Bruttosumme``)
   beats a bare one (``Total``, ``Summe``), which may head a tax summary or a column.
3. **Position**: totals come last, so among equals the lowest on the page wins.

The amount due (``Amount due``, ``Zahlbetrag``, ``Net à payer``) is the total when no total label gives
one. Sums are signed: a credit note's total is negative.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.offline.values import CURRENCY

#: A bare total word (with at most a colon or a currency after it): the weakest total label.
_BARE = re.compile(r"\s*(?:total|totaal|totale|summe|sum|somme|importe)\b", re.I)
TOLERANCE = 0.005


@dataclass(frozen=True)
class Candidate:
    """One labelled amount: its value, the label's text, its vertical position, and what it was read from."""

    value: float
    label: str
    top: float
    source: Any = None


def strength(label: str) -> int:
    """2 for a specific total label, 1 for a bare word (``Total``, ``SUMME EUR``)."""
    bare = _BARE.match(label)
    rest = CURRENCY.sub("", label[bare.end():]) if bare else "x"
    return 1 if not rest.strip(" :.$()") else 2


def tax_sums(subtotals: list[float], taxes: list[float]) -> set[float]:
    """Every subtotal plus each tax amount, and plus all the tax amounts together (several rates)."""
    sums = {round(s + t, 2) for s in subtotals for t in taxes}
    if len(taxes) > 1:
        sums |= {round(s + sum(taxes), 2) for s in subtotals}
    return sums


def choose_total(totals: list[Candidate], due: list[Candidate], subtotals: list[float],
                 taxes: list[float]) -> tuple[Candidate, str] | None:
    """The grand total among the candidates (see the module docstring) and the rule that chose it."""
    sums = tax_sums(subtotals, taxes)
    balanced = [c for c in totals + due if any(abs(c.value - s) <= TOLERANCE for s in sums)]
    if balanced:
        return max(balanced, key=lambda c: c.top), "subtotal + tax"
    if totals:
        best = max(totals, key=lambda c: (strength(c.label), c.top))
        return best, "total label"
    if due:
        return max(due, key=lambda c: c.top), "amount due label"
    return None

