"""Dates on invoices and receipts (shared.offline.dates, shared.offline.months): each a general fact, on strings."""

from __future__ import annotations

import pytest

from shared.offline.dates import date_candidates, has_time, parse_date
from shared.offline.months import MONTHS


@pytest.mark.parametrize(("text", "expected"), [
    ("7. Mai 2014", "2014-05-07"), ("19 april 2014", "2014-04-19"), ("29 maart 2014", "2014-03-29"),
    ("02 Juillet 2015", "2015-07-02"), ("1er avril 2024", "2024-04-01"), ("3 de marzo de 2024", "2024-03-03"),
    ("15 marzo 2024", "2024-03-15"), ("5 agosto 2023", "2023-08-05"), ("12 févr. 2024", "2024-02-12"),
    ("3. März 2024", "2024-03-03"), ("1 mei 2024", "2024-05-01"), ("9 dicembre 2023", "2023-12-09"),
])
def test_month_names_in_six_languages(text, expected):
    assert parse_date(text) == expected


def test_month_tables_cover_every_month_and_no_name_means_two_months():
    assert set(MONTHS) == {"en", "de", "fr", "nl", "es", "it"}
    assert all(set(table) == set(range(1, 13)) for table in MONTHS.values())
    seen: dict[str, int] = {}
    for table in MONTHS.values():
        for number, names in table.items():
            for name in names:
                assert seen.setdefault(name, number) == number, name


@pytest.mark.parametrize(("text", "expected"), [
    ("August 3 , 2014", "2014-08-03"),  # a space before the comma
    ("Jan 1,2022", "2022-01-01"),  # no space after it
    ("Rechnungsdatum.4.Juni2014", "2014-06-04"),  # glued to its label and year
])
def test_month_name_dates_with_odd_spacing(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("03.04.2009:53", "2020-04-03"),  # dd.mm.yy + hh:mm, run together by the OCR
    ("06.04.202014:43", "2020-04-06"),  # dd.mm.yyyy + hh:mm
    ("12/05/20188:30:00PM", "2018-05-12"),  # dd/mm/yyyy + h:mm:ss
    ("07May201812:30", "2018-05-07"),
    ("Datum08.10.1614:16Uhr", "2016-10-08"),
])
def test_times_glued_to_dates_are_split_off(text, expected):
    assert parse_date(text) == expected


def test_two_digit_years_only_after_a_dotted_day_and_month():
    assert parse_date("Datum 23.09.16 14:05Uhr") == "2016-09-23"
    assert parse_date("15/03/24") is None


def test_years_outside_the_plausible_range_are_not_dates():
    assert parse_date("08.10.1614") is None and parse_date("01.01.2150") is None


def test_ambiguous_day_and_month_are_refused_when_strict_and_unresolved():
    assert parse_date("04/05/2024", strict=True) is None
    assert parse_date("04/05/2024", day_first=True, strict=True) == "2024-05-04"
    assert parse_date("04/05/2024", day_first=False, strict=True) == "2024-04-05"
    assert parse_date("8-9-2022", day_first=True, strict=True) == "2022-09-08"
    assert parse_date("05/05/2024", strict=True) == "2024-05-05"  # the same either way
    assert parse_date("15.03.2024", strict=True) == "2024-03-15"  # dotted dates are day first


def test_numbers_that_only_look_like_dates_are_not_dates():
    assert parse_date("78.46.77.79") is None  # an IP address
    assert date_candidates("01.05.14-31.05.14") == [(0, "2014-05-01"), (9, "2014-05-31")]


def test_a_clock_time_marks_a_receipts_date():
    assert has_time("02.03.20 15:59") and has_time("03.04.2009:53")
    assert not has_time("02.03.2020") and not has_time("Ratio 3:2")
