"""Rows, columns and the choice of the total (shared.offline.layout, .totals, .documents): synthetic boxes.

Each test is one general fact about how invoices and receipts are laid out; none uses the evaluation set.
"""

from __future__ import annotations

from shared.offline import documents as lx
from shared.offline.engine import TextBox, group_lines
from shared.offline.layout import (
    attach_marks,
    below,
    is_header_row,
    letter_spaced,
    row_after,
    squeeze_spaced,
    vertical_text,
)
from shared.offline.totals import Candidate, choose_total, strength
from shared.offline.values import parse_money


def box(text: str, left: float, top: float, width: float = 150, height: float = 30) -> TextBox:
    right, bottom = left + width, top + height
    return TextBox(text, 0.95, ((left, top), (right, top), (right, bottom), (left, bottom)))


def invoice(*boxes: TextBox) -> dict:
    return lx.invoice_from_boxes(list(boxes))[0]


# --- rows and columns ---------------------------------------------------------------------------------


def test_a_value_is_on_its_labels_row_at_any_distance():
    data, provenance = lx.invoice_from_boxes([box("Invoice Number:", 60, 100), box("42183017", 1400, 100),
                                              box("Gesamtbetrag", 60, 300), box("1.589,80", 1400, 302)])
    assert (data["invoice_number"], data["total"]) == ("42183017", 1589.8)
    assert provenance["total"]["rule"].startswith("label, same row") and provenance["total"]["confidence"] == 0.95


def test_a_row_ends_at_the_next_label_and_the_value_is_then_below():
    row = [box("Invoice Date:", 0, 100), box("Due Date:", 450, 100), box("Reference:", 900, 100)]
    values = [box("15/03/2024", 0, 140), box("04/04/2024", 450, 140), box("CUST REF 1", 900, 140)]
    lines = group_lines(row + values)
    assert row_after(row[0], lines[0], lambda b: b.text.endswith(":")) == []
    assert below(row[0], lines, 0).text == "15/03/2024"
    data = invoice(*row, *values)
    assert (data["invoice_date"], data["due_date"]) == ("2024-03-15", "2024-04-04")


def test_below_skips_a_line_with_nothing_in_the_column_but_not_a_gap():
    label, other, value = box("Gesamtsumme", 800, 100), box("20%", 100, 135), box("EUR 35,24", 800, 165)
    lines = group_lines([label, other, value])
    assert below(label, lines, 0) is value
    far = box("EUR 35,24", 800, 400)
    assert below(label, group_lines([label, far]), 0) is None


def test_a_table_header_total_is_not_a_label_for_the_first_rows_amount():
    header = [box("Amount", 0, 100), box("Product", 200, 100), box("VAT", 500, 100), box("Price", 700, 100),
              box("Total", 900, 100)]
    first = [box("1.00", 0, 140), box("Design", 200, 140), box("7%", 500, 140), box("160.00 €", 700, 140),
             box("160.00 €", 900, 140)]
    assert is_header_row(header, parse_money) and not is_header_row(first, parse_money)
    data = invoice(*header, *first, box("Due payable: 571.04 €", 0, 300, width=400))
    assert data["total"] == 571.04


def test_a_row_of_sum_labels_is_a_summary_with_its_values_below():
    labels = [box("Zwischensumme", 0, 100), box("USt. Gesamt", 400, 100), box("Gesamtsumme", 800, 100)]
    values = [box("EUR 29,37", 0, 140), box("EUR 5,87", 400, 140), box("EUR 35,24", 800, 140)]
    assert invoice(*labels, *values)["total"] == 35.24


def test_the_rightmost_amount_of_a_total_row_is_its_total():
    row = [box("Total facture", 0, 100), box("24.99", 600, 100), box("5.00", 800, 100), box("29.99", 1000, 100)]
    assert invoice(*row)["total"] == 29.99
    # ...but the row ends at a word after a value: "Shipping 5.00" is another line's pair.
    assert invoice(box("Subtotal", 0, 100), box("100.00", 300, 100), box("Shipping", 600, 100),
                   box("5.00", 900, 100))["subtotal"] == 100.0


def test_stray_decimal_marks_are_put_back_into_the_digits_above():
    digits = box("1 589 80", 1184, 1273, width=91, height=18)
    marks = [box(".", 1197, 1287, width=4, height=4), box(",", 1244, 1287, width=4, height=4)]
    repaired = attach_marks([digits, *marks])
    assert [b.text for b in repaired] == ["1.589,80"]
    assert attach_marks([box("Page 1", 0, 0), box(".", 500, 500, width=4, height=4)])[1].text == "."


# --- which total ----------------------------------------------------------------------------------------


def test_the_total_equal_to_subtotal_plus_tax_wins():
    totals = [Candidate(37.62, "Total", 500), Candidate(571.04, "Total", 300)]
    assert choose_total(totals, [], [496.0], [11.2, 63.84])[0].value == 571.04  # several tax rates together
    assert choose_total(totals, [], [], [])[0].value == 37.62  # no arithmetic: the lowest bare total


def test_a_specific_total_label_beats_a_bare_one_and_the_lowest_wins_among_equals():
    assert strength("Total:") == strength("SUMME EUR") == 1 < strength("Gesamtbetrag") == strength("Total TTC")
    totals = [Candidate(5.0, "Total Sales (Inclusive of GST)", 100), Candidate(0.3, "Total:", 400)]
    assert choose_total(totals, [], [], [])[0].value == 5.0
    assert choose_total([], [Candidate(7.0, "Amount due", 10), Candidate(8.0, "Amount due", 20)], [], [])[0].value == 8


def test_partial_totals_are_not_the_grand_total():
    data = invoice(box("Gesamtbetrag der Abschläge", 0, 100, width=400), box("-0,00", 900, 100),
                   box("Bruttosumme", 0, 140), box("529,87", 900, 140))
    assert data["total"] == 529.87


def test_a_credit_notes_total_is_negative():
    assert invoice(box("Total HT", 800, 100), box("-218,48 €", 1100, 100),
                   box("Total TTC", 800, 140), box("-233,47 €", 1100, 140))["total"] == -233.47


def test_a_currency_without_cents_reads_whole_amounts():
    rows = [("ICE COFFEE", "82,000"), ("AVOCADO", "61,000"), ("SUBTOTAL", "194,000"), ("TOTAL", "174,600")]
    boxes = [b for i, (name, amount) in enumerate(rows)
             for b in (box(name, 0, 100 + 40 * i), box(amount, 600, 100 + 40 * i))]
    assert invoice(*boxes)["total"] == 174600.0
    assert invoice(box("TOTAL", 0, 100), box("174,600", 600, 100))["total"] is None  # one number is no evidence


def test_a_mark_prefers_the_slot_before_the_cents():
    # "$ 1 0 1 00" over a "." whose even-width estimate falls between "0" and "1": glyphs are not evenly wide.
    digits = box("Total : $ 1 0 1 00", 0, 100, width=180, height=20)
    mark = box(".", 139, 116, width=3, height=3)
    assert attach_marks([digits, mark])[0].text == "Total : $ 1 0 1.00"


def test_a_letter_spaced_page_loses_its_spaces_and_reads_again():
    spaced = [box("I nvo i ce N o", 0, 0), box("1 24 2 9 64 7", 400, 0), box("Su btota l", 0, 60),
              box("Tota l", 0, 100), box("$ 1 0 1 00", 400, 100), box(".", 505, 116, width=3, height=3),
              box("Al l p rices a re i n U S dol la rs", 0, 200, width=500)]
    assert letter_spaced(spaced) and not letter_spaced([box("Invoice No: 12 à payer", 0, 0)] * 12)
    assert [b.text for b in squeeze_spaced(spaced)][:2] == ["InvoiceNo", "12429647"]
    data = invoice(*spaced)
    assert (data["invoice_number"], data["total"], data["currency"]) == ("12429647", 101.0, "USD")


def test_a_value_split_over_several_boxes_of_its_row_is_read_together():
    data = invoice(box("Date:", 0, 0, width=60), box("Jan 1", 300, 0, width=60), box(",", 365, 5, width=5),
                   box("2022", 380, 0, width=60))
    assert data["invoice_date"] == "2022-01-01"


def test_a_sideways_page_reads_values_only_inside_their_label_boxes():
    def tall(text: str, left: float, top: float) -> TextBox:
        return box(text, left, top, width=30, height=20 * len(text))

    boxes = [tall("Bon-Nr. :1433", 100, 0), tall("SUMME", 200, 0), tall("Steuer", 300, 0), tall("B=7,08", 300, 140),
             tall("Gleich hier am REWE", 400, 0)]
    assert vertical_text(boxes) and not vertical_text([box("SUMME", 0, 0)] * 6)
    data = invoice(*boxes)
    assert (data["invoice_number"], data["total"], data["vendor"]["name"]) == ("1433", None, None)
