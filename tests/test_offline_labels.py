"""Invoice labels in six languages, kept as data, and the money rule for sums: each a general fact about invoices."""

from __future__ import annotations

import pytest

from shared.offline.documents import LABELS, parse_money
from shared.offline.labels import FIELDS, LANGUAGES, TITLE, page_language


@pytest.mark.parametrize(("text", "field"), [
    ("Rechnungsnummer: R-2024-7", "invoice_number"), ("Rechnungs-Nr. 42", "invoice_number"),
    ("Facture N° F-12", "invoice_number"), ("Factuurnummer 2023001", "invoice_number"),
    ("Número de factura 7", "invoice_number"), ("Fattura n. 12/2024", "invoice_number"),
    ("Invoice No: INV-1", "invoice_number"), ("Rechnungsdatum 01.02.2024", "invoice_date"),
    ("Factuurdatum", "invoice_date"), ("Date de facturation", "invoice_date"), ("Data fattura", "invoice_date"),
    ("Fälligkeitsdatum", "due_date"), ("Date d'échéance", "due_date"), ("Vervaldatum", "due_date"),
    ("Total HT 100,00", "subtotal"), ("Zwischensumme", "subtotal"), ("Base imponible", "subtotal"),
    ("MwSt. 19%", "tax"), ("TVA 20%", "tax"), ("BTW 21%", "tax"), ("IVA 22%", "tax"),
    ("Total TTC 120,00", "total"), ("Gesamtbetrag", "total"), ("Totaalbedrag", "total"),
    ("Importe total", "total"), ("Totale documento", "total"), ("Grand total", "total"),
    ("Net à payer", "amount_due"), ("Zu zahlender Betrag", "amount_due"), ("Te betalen", "amount_due"),
    ("Due payable: 571.04", "amount_due"), ("Somme à payer", "amount_due"), ("Solde à payer", "amount_due"),
    ("Invoice Total: $101.00", "total"), ("Factuur totaal EUR", "total"), ("SUMME EUR", "total"),
    ("Bruttosumme", "total"), ("Zuzüglich USt.", "tax"), ("Beleg-Datum", "invoice_date"),
    ("Factuur datum", "invoice_date"), ("issued at2020-11-21", "invoice_date"), ("Currency: EUR", "currency"),
    ("Rechnungswährung : GBP", "currency"), ("Devise", "currency"), ("Valuta", "currency"),
    ("Date limite de paiement", "due_date"),
])
def test_each_languages_labels_are_recognised(text, field):
    assert LABELS[field].match(text), (text, field)


@pytest.mark.parametrize(("text", "not_field"), [
    ("Total HT 100,00", "total"),  # a French net amount is not the grand total
    ("Totaal excl. BTW", "total"), ("Total net", "total"), ("Totale imponibile", "total"),
    ("BTW-nummer NL001", "tax"), ("USt-IdNr. DE123", "tax"), ("VAT No: GB1", "tax"),
    ("Datumsangabe", "invoice_date"),  # a label is a whole word, not the start of a longer one
    ("Gesamtbetrag der Abschläge", "total"), ("Summe netto", "total"),  # the total of a part, a net sum
    ("Währung der Umsatzsteuerbuchung", "currency"),  # the currency of the tax booking, not the invoice's
])
def test_labels_that_look_alike_are_told_apart(text, not_field):
    assert not LABELS[not_field].match(text), (text, not_field)


def test_every_language_has_a_table_for_every_field():
    assert set(LANGUAGES) == {"en", "de", "fr", "nl", "es", "it"}
    assert all(table.get(field) for table in LANGUAGES.values() for field in (*FIELDS, TITLE))


def test_a_pages_language_is_the_one_whose_labels_start_most_texts():
    assert page_language(["Rechnungsnummer 1", "Gesamtbetrag", "Datum"]) == "de"
    assert page_language(["Factuurnummer 1", "Totaalbedrag"]) == "nl"
    assert page_language(["hello", "world"]) is None


@pytest.mark.parametrize(("text", "amount"), [
    ("120.00", 120.0), ("1.589,80 EUR", 1589.8), ("€ 7,50", 7.5),
    ("3", None), ("Pos. 30", None), ("2024", None),  # sums carry cents; a bare integer is a count or a code
])
def test_sums_are_read_only_when_written_as_money(text, amount):
    assert parse_money(text) == amount
