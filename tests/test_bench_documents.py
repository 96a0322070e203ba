"""The document benchmark's scorer (``benchmarks/bench_documents.py``) and its ground truth: pure checks, no OCR."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from shared.extraction import ISO_4217

ROOT = Path(__file__).resolve().parent.parent
_SPEC = importlib.util.spec_from_file_location("bench_documents", ROOT / "benchmarks" / "bench_documents.py")
assert _SPEC is not None and _SPEC.loader is not None
bench = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("bench_documents", bench)
_SPEC.loader.exec_module(bench)


@pytest.mark.parametrize(("printed", "answer"), [
    ("INV/2023/03/0008", "inv 2023 03 0008"),
    ("BLR_WFLD20151000982590", "# BLR_WFLD20151000982590"),
    ("RE-20170509/505", "RE20170509505"),
    ("18291/102/T0163", "18291-102-t0163"),
])
def test_numbers_match_whatever_their_case_spaces_and_punctuation(printed: str, answer: str) -> None:
    assert bench.score_field("invoice_number", printed, answer) == bench.CORRECT


def test_a_number_with_other_characters_is_wrong() -> None:
    assert bench.score_field("invoice_number", "42", "No. 42") == bench.WRONG
    assert bench.score_field("invoice_number", "R0005532486", "R0005532487") == bench.WRONG
    assert bench.score_field("invoice_number", "42", "#") == bench.WRONG  # nothing left after normalising


def test_dates_must_be_the_iso_string_exactly() -> None:
    assert bench.score_field("date", "2018-03-04", "2018-03-04") == bench.CORRECT
    assert bench.score_field("date", "2018-03-04", "2018-04-03") == bench.WRONG
    assert bench.score_field("date", "2018-03-04", "04/03/2018") == bench.WRONG
    assert bench.score_field("date", "2018-03-04", "2018-03-04T00:00:00") == bench.WRONG


def test_totals_match_within_a_cent() -> None:
    assert bench.score_field("total", 529.87, 529.87) == bench.CORRECT
    assert bench.score_field("total", 529.87, 529.88) == bench.CORRECT
    assert bench.score_field("total", 529.87, "529.86") == bench.CORRECT
    assert bench.score_field("total", 529.87, 529.89) == bench.WRONG
    assert bench.score_field("total", 174600, 174.6) == bench.WRONG
    assert bench.score_field("total", 1.0, True) == bench.WRONG
    assert bench.score_field("total", 1.0, "one") == bench.WRONG


def test_currency_is_the_code_exactly() -> None:
    assert bench.score_field("currency", "EUR", "EUR") == bench.CORRECT
    assert bench.score_field("currency", "EUR", "€") == bench.WRONG
    assert bench.score_field("currency", "EUR", "eur") == bench.WRONG


def test_null_answers_abstain_where_a_value_is_printed_and_are_right_where_none_is() -> None:
    assert bench.score_field("total", 12.0, None) == bench.ABSTAINED
    assert bench.score_field("invoice_number", "42", "  ") == bench.ABSTAINED
    assert bench.score_field("invoice_number", None, None) == bench.CORRECT
    assert bench.score_field("invoice_number", None, "7163") == bench.WRONG


def test_any_accepted_value_counts_and_unscored_fields_count_nowhere() -> None:
    assert bench.score_field("total", [671.15, 470.15], 470.15) == bench.CORRECT
    assert bench.score_field("total", [-233.47, 233.47], 233.47) == bench.CORRECT
    assert bench.score_field("total", [671.15, 470.15], 624.90) == bench.WRONG
    assert bench.score_field("date", "2020-02-25", "2020-02-29", unscored=True) == bench.UNSCORED


def test_a_document_is_scored_field_by_field_and_a_failed_request_abstains() -> None:
    truth = {"invoice_number": None, "date": "2018-05-21", "total": 70.3, "currency": None, "unscored": ["currency"]}
    answers = {"invoice_number": "1994", "date": "2018-05-21", "total": None, "currency": "MYR"}
    assert bench.score_document(truth, answers) == {
        "invoice_number": bench.WRONG, "date": bench.CORRECT, "total": bench.ABSTAINED, "currency": bench.UNSCORED}
    assert bench.score_document(truth, None) == {
        "invoice_number": bench.CORRECT, "date": bench.ABSTAINED, "total": bench.ABSTAINED, "currency": bench.UNSCORED}


def test_answers_come_from_the_invoice_model_fields() -> None:
    data = {"invoice_number": "A1", "invoice_date": "2020-01-02", "total": 3.5, "currency": "EUR", "due_date": "x"}
    assert bench.answers_from_data(data) == {"invoice_number": "A1", "date": "2020-01-02", "total": 3.5,
                                             "currency": "EUR"}
    assert bench.answers_from_data(None) is None


def test_the_summary_counts_outcomes_per_field() -> None:
    truths = [{"invoice_number": "1", "date": None, "total": 1.0, "currency": "EUR"},
              {"invoice_number": None, "date": "2020-01-01", "total": 2.0, "currency": "EUR"}]
    outcomes = [{"invoice_number": bench.CORRECT, "date": bench.WRONG, "total": bench.ABSTAINED,
                 "currency": bench.UNSCORED},
                {"invoice_number": bench.CORRECT, "date": bench.CORRECT, "total": bench.WRONG,
                 "currency": bench.CORRECT}]
    summary = bench.summarise(truths, outcomes)
    assert (summary["invoice_number"].scored, summary["invoice_number"].correct,
            summary["invoice_number"].truth_null) == (2, 2, 1)
    assert summary["invoice_number"].found == 1  # the other right answer is a right null
    assert (summary["date"].correct, summary["date"].wrong, summary["date"].truth_null) == (1, 1, 1)
    assert (summary["total"].abstained, summary["total"].wrong, summary["total"].accuracy) == (1, 1, 0.0)
    assert (summary["currency"].scored, summary["currency"].unscored) == (1, 1)
    assert bench.wrong_rate(summary) == (2, 7)


def test_validation_names_malformed_truth() -> None:
    bad = [{"file": "a.pdf", "source": {"repo": "x"}, "licence": "MIT", "language": "en", "kind": "fax",
            "truth_from": "eye", "invoice_number": "", "date": "2023-02-30", "total": "12", "currency": "XYZ",
            "unscored": ["vendor"]}]
    problems = "\n".join(bench.validate_truth(bad, ISO_4217))
    for expected in ("kind 'fax'", "does not exist", "total '12'", "currency 'XYZ'", "invoice_number ''",
                     "unscored field 'vendor'"):
        assert expected in problems


def test_the_evaluation_set_is_well_formed_and_matches_its_files() -> None:
    documents = bench.load_truth()
    assert bench.validate_truth(documents, ISO_4217) == []
    assert len(documents) >= 40
    on_disk = {p.name for p in bench.DOCUMENTS.iterdir() if p.suffix in (".pdf", ".jpg")}
    assert {d["file"] for d in documents} == on_disk
    for doc in documents:
        data = (bench.DOCUMENTS / doc["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == doc["sha256"], doc["file"]
    assert sum((bench.DOCUMENTS / name).stat().st_size for name in on_disk) < 8_000_000
    kinds = Counter(d["kind"] for d in documents)
    assert kinds["digital_pdf"] >= 20 and kinds["scan"] >= 10 and kinds["scanned_pdf"] >= 1 and kinds["photo"] >= 1
    assert {"en", "de", "fr", "nl"} <= {d["language"] for d in documents}
    assert len({d["source"]["repo"] for d in documents}) >= 5
