"""Invoice numbers, dates and currencies read from synthetic boxes (shared.offline.documents, .labels).

Each test is one general fact about invoices and receipts; none uses the evaluation set.
"""

from __future__ import annotations

import pytest

from shared.offline import documents as lx
from shared.offline.engine import TextBox
from shared.offline.labels import page_language


def box(text: str, left: float, top: float, width: float = 300, height: float = 30) -> TextBox:
    right, bottom = left + width, top + height
    return TextBox(text, 0.9, ((left, top), (right, top), (right, bottom), (left, bottom)))


def invoice(*boxes: TextBox) -> tuple[dict, dict]:
    return lx.invoice_from_boxes(list(boxes))


# --- invoice numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "number"), [
    ("Invoice#AB-2020/508", "AB-2020/508"), ("Invoice No. 4711", "4711"), ("Rechnung Nr.42", "42"),
    ("Facture N° F-12", "F-12"), ("Handelsrechnung Nr. 471102 vom 05.03.2018", "471102"),
    ("Rechnungskorrektur Nr. RK21012345", "RK21012345"), ("Gutschrift Nr. G-7", "G-7"),
    ("Kassenbon Nr: 1505289010", "1505289010"), ("Avoir n° AV-1", "AV-1"), ("Credit note No. CN-9", "CN-9"),
])
def test_number_labels(text, number):
    assert invoice(box(text, 0, 0, width=600))[0]["invoice_number"] == number


@pytest.mark.parametrize(("text", "number"), [
    ("Facture FA-2017-0010", "FA-2017-0010"), ("Invoice INV/2023/03/0008", "INV/2023/03/0008"),
    ("Avoir AV-2017-0005", "AV-2017-0005"), ("Rechnung für EUVINS1-OFS-DE-1207", "EUVINS1-OFS-DE-1207"),
    ("Invoice 12.03.2024", None), ("Invoice for March", None), ("INVOICE", None),  # a date or a word is no code
])
def test_a_title_word_directly_followed_by_a_code_names_the_number(text, number):
    assert invoice(box(text, 0, 0, width=600))[0]["invoice_number"] == number


def test_a_date_glued_to_a_receipts_number_is_cut_off():
    data, _ = invoice(box("Beleg-Nr. 599/018/0000107.09.18 16:52", 0, 0, width=600))
    assert data["invoice_number"] == "599/018/00001"


# --- dates ----------------------------------------------------------------------------------------------


def test_the_date_in_the_title_line_with_the_number():
    for title in ("Handelsrechnung Nr. 471102 vom 05.03.2018", "Invoice# RE-508 issued at2020-11-21",
                  "Facture n°562044387 du 02 Juillet 2015"):
        data, provenance = invoice(box(title, 0, 0, width=800), box("Zahlbar bis 04.04.2018", 0, 400))
        assert data["invoice_date"] is not None and provenance["invoice_date"]["rule"].startswith("date in the title")
    assert invoice(box("Handelsrechnung Nr. 471102 vom 05.03.2018", 0, 0, width=800))[0]["invoice_date"] == "2018-03-05"


def test_a_receipts_date_is_the_one_beside_the_time_of_sale():
    data, provenance = invoice(box("Bestellt 01.02.2020", 0, 0), box("3182 748433701", 0, 100),
                               box("02.03.20", 400, 100, width=100), box("15:59", 600, 100, width=80))
    assert data["invoice_date"] == "2020-03-02" and provenance["invoice_date"]["rule"] == "receipt date beside a time"


def test_a_date_beside_another_label_is_not_the_receipts_date():
    data, _ = invoice(box("Lieferdatum 01.03.2020 10:00", 0, 0, width=500))
    assert data["invoice_date"] is None


def test_the_longer_label_wins_when_two_fields_match():
    data, _ = invoice(box("Date limite de paiement le 05 Juillet 2015", 0, 0, width=700))
    assert (data["invoice_date"], data["due_date"]) == (None, "2015-07-05")


def test_ambiguous_dates_follow_the_page_then_its_language_else_stay_null():
    english = [box("Invoice date:", 0, 0), box("04/05/2024", 400, 0)]
    assert invoice(*english)[0]["invoice_date"] is None
    assert invoice(*english, box("Due date: 04/25/2024", 0, 100))[0]["invoice_date"] == "2024-04-05"
    german = [box("Rechnungsdatum", 0, 0), box("04/05/2024", 400, 0), box("Gesamtbetrag", 0, 100),
              box("Zahlbar bis", 0, 200)]
    assert page_language([b.text for b in german]) == "de"
    assert invoice(*german)[0]["invoice_date"] == "2024-05-04"


# --- currencies -----------------------------------------------------------------------------------------


def test_a_labelled_currency_wins_over_other_mentions():
    data, provenance = invoice(box("Rechnungswährung : GBP", 0, 0), box("Währung der Umsatzsteuerbuchung : EUR", 0, 50),
                               box("EUR 183,14", 0, 100))
    assert data["currency"] == "GBP" and provenance["currency"]["rule"] == "label"


def test_two_currencies_without_a_label_give_none():
    assert invoice(box("EUR 12,00", 0, 0), box("USD 13.00", 0, 50))[0]["currency"] is None


def test_a_header_column_named_by_the_documents_word_holds_its_number():
    header = [box("Klant", 0, 0, width=100), box("Order", 200, 0, width=100), box("Factuur", 400, 0, width=100),
              box("Vervaldatum", 600, 0, width=150)]
    values = [box("SCONL0303", 0, 40, width=100), box("SCONL0004", 200, 40, width=100),
              box("VF1005193039", 400, 40, width=120), box("22-9-2022", 600, 40, width=100)]
    data, provenance = invoice(*header, *values)
    assert data["invoice_number"] == "VF1005193039"
    assert provenance["invoice_number"]["rule"] == "column headed by the document's name"
    # The word as a title, not in a header row, names no number under it.
    assert invoice(box("INVOICE", 0, 0), box("12 Harbour Road", 0, 40))[0]["invoice_number"] is None


def test_every_filled_field_has_a_confidence_and_the_rule_that_found_it():
    data, provenance = invoice(box("Invoice No: A-1", 0, 0), box("Date: 15.03.2024", 0, 50),
                               box("Total", 0, 100), box("€ 12,00", 600, 100))
    assert (data["invoice_number"], data["invoice_date"], data["total"], data["currency"]) == (
        "A-1", "2024-03-15", 12.0, "EUR")
    for path in ("invoice_number", "invoice_date", "total", "currency"):
        assert 0 < provenance[path]["confidence"] <= 1 and provenance[path]["rule"], path


def test_a_date_after_a_glued_connector_word_is_cut_off_the_number():
    data, _ = invoice(box("Facture n°562044387du02Juillet2015", 0, 0, width=600))
    assert (data["invoice_number"], data["invoice_date"]) == ("562044387", "2015-07-02")
    assert invoice(box("Rechnung Nr. RE-20170509/505", 0, 0, width=600))[0]["invoice_number"] == "RE-20170509/505"


def test_words_the_recogniser_ran_together_are_split_at_a_capital():
    data, _ = invoice(box("AvoirAV-2017-0005", 0, 0), box("FactuurtotaalEUR", 0, 100), box("49,99", 600, 100))
    assert (data["invoice_number"], data["total"], data["currency"]) == ("AV-2017-0005", 49.99, "EUR")
    assert invoice(box("BTWbedrag", 0, 0), box("8,68", 600, 0))[0]["tax"] is None  # "b": one word, not two


def test_a_word_run_into_the_end_of_a_number_is_not_part_of_it():
    assert invoice(box("Invoice #RE-20201121/508issuedat 2020-11-21", 0, 0, width=700))[0]["invoice_number"] == (
        "RE-20201121/508")


def test_full_width_punctuation_from_the_recogniser_is_read_as_ascii():
    data, _ = invoice(box("Beleg-Nr", 0, 0), box("：R87654321012345", 400, 0), box("Beleg-Datum", 0, 40),
                      box("：06.08.2013", 400, 40))
    assert (data["invoice_number"], data["invoice_date"]) == ("R87654321012345", "2013-08-06")
