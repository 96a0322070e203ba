"""Amounts and currencies on invoices (shared.offline.values): each a general fact, tested on strings."""

from __future__ import annotations

import pytest

from shared.offline.engine import TextBox
from shared.offline.values import currencies, find_currency, parse_money, whole_number_page


def box(text: str, top: float = 0) -> TextBox:
    return TextBox(text, 0.99, ((0, top), (100, top), (100, top + 30), (0, top + 30)))


@pytest.mark.parametrize(("text", "amount"), [
    ("-233,47 €", -233.47), ("− 8,79", -8.79), ("8,79-", -8.79),  # credit notes and receipts' trailing minus
    ("EUR -5,00", -5.0),
])
def test_negative_sums_keep_their_sign(text, amount):
    assert parse_money(text) == amount


@pytest.mark.parametrize(("text", "amount"), [
    ("1 589,80", 1589.8), ("1\u00a0589,80 €", 1589.8),  # a space groups thousands (French, German)
    ("EUR34,00", 34.0), ("34,00EURA", 34.0), ("49.99*", 49.99),  # receipts glue codes and marks to sums
    ("Total 24.99 5.00 29.99", 29.99),  # several in one text: the last is the row's total
])
def test_money_with_cents_in_its_printed_forms(text, amount):
    assert parse_money(text) == amount


@pytest.mark.parametrize("text", [
    "1 27.50",  # digits split by a space that is not a thousands group: not one number
    "02.03.20 15:59", "16.09.2018", "78.46.77.79",  # dates and addresses
    "19,0%", "Rechnung 4711", "12345678",  # percentages, references, bare integers
])
def test_reference_numbers_dates_and_rates_are_not_money(text):
    assert parse_money(text) is None


def test_whole_amounts_count_only_for_currencies_without_cents():
    assert parse_money("174,600") is None
    assert parse_money("174,600", whole=True) == 174600.0 and parse_money("8020", whole=True) is None


def test_a_page_of_grouped_whole_amounts_is_a_zero_decimal_currency():
    assert whole_number_page(["82,000", "61,000", "TOTAL", "174,600"])
    assert not whole_number_page(["82,000", "61,000", "174,600", "Tax 1.50"])  # cents somewhere: not
    assert not whole_number_page(["1,000", "pages"])  # too little evidence


@pytest.mark.parametrize(("text", "codes"), [
    ("Total € 12,00", ["EUR"]), ("£5.00", ["GBP"]), ("₹ 319", ["INR"]), ("RM 12.00", ["MYR"]),
    ("CHF 1'050.00", ["CHF"]), ("Rp 174.600", ["IDR"]), ("ZU ZAHLEN EURO", ["EUR"]),
    ("All prices are in US dollars", ["USD"]), ("US$ 10", ["USD"]),
    ("Total $120.00", []), ("Pris 100 kr", []), ("¥ 500", []),  # shared by several currencies
    ("try again, eur", []),  # codes are printed in capitals; lower-case words are words
    ("RMA number", []), ("Fr. Müller", []),  # RM and Fr. only before an amount
])
def test_currencies_from_codes_symbols_and_words(text, codes):
    assert currencies(text) == codes


def test_a_dollar_page_is_usd_when_it_says_us_dollars():
    assert find_currency([box("Total $4.11"), box("All charges are in US Dollars", 50)])[0] == "USD"
    assert find_currency([box("Total $4.11")]) == (None, None)


def test_a_code_run_into_a_word_counts_after_a_small_letter_only():
    assert currencies("FactuurtotaalEUR") == ["EUR"]
    assert currencies("NEUROLOGY") == [] and currencies("EUROPA") == []
