"""Structured extraction against the Azure OpenAI double over real HTTP with the real SDK: strict
response_format, one re-ask with the errors, honest failure, invoice warnings, tables keyed by column,
cache keys with the schema hash, the HTTP routes and the CLI."""

from __future__ import annotations

import argparse
import base64
import copy
import json
from pathlib import Path

import pytest

from shared.analysis import Analyzer
from shared.cli.extract import add_extract_parser
from shared.errors import ContentFiltered
from shared.extraction import (
    ExtractionFailed,
    Invoice,
    TableGrid,
    extract,
    invoice_warnings,
    model_format,
    table_from_grid,
)
from shared.providers.base import Completion, Provider, Usage, VisionRequest
from shared.schemas import schema_hash
from tests.aoai_double import Reply

FIXTURES = Path(__file__).parent / "fixtures" / "extraction"
INVOICE = json.loads((FIXTURES / "invoice.json").read_text())
RECEIPT = json.loads((FIXTURES / "receipt.schema.json").read_text())
PROBLEM = "application/problem+json"
RECEIPT_REPLY = {"merchant": "K", "date": None, "store_code": None, "items": [{"name": "tea", "price": 2}],
                 "payment": None, "total": 2}
RECEIPT_DATA = {"merchant": "K", "items": [{"name": "tea", "price": 2}], "total": 2}  # absent nulls dropped


@pytest.fixture
def page(corpus) -> bytes:
    return (corpus / "page.png").read_bytes()


def _invoice(**changes) -> dict:
    document = copy.deepcopy(INVOICE)
    document.update(changes)
    return document


async def test_invoice_sends_a_strict_schema_and_returns_validated_data(make_settings, make_analyzer, aoai, page):
    aoai.enqueue(Reply.ok(json.dumps(INVOICE), prompt_tokens=1500, completion_tokens=200))
    result = await extract(make_analyzer(make_settings()), page, "invoice")

    assert result["data"] == INVOICE and result["warnings"] == []
    assert result["kind"] == "invoice" and result["attempts"] == 1 and result["cached"] is False
    assert result["usage"] == {"prompt_tokens": 1500, "completion_tokens": 200, "total_tokens": 1700}
    assert result["detail"] == "high" and result["image"]["format"] == "PNG"
    assert result["schema_hash"] == model_format(Invoice, "invoice")[1]
    assert result["deployment"] == "gpt-4o" and result["estimated_cost_usd"] > 0
    [request] = aoai.requests
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "invoice"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(Invoice.model_fields)
    assert request.images[0].detail == "high"
    assert request.body["messages"][0]["role"] == "system" and "never guess" in request.body["messages"][0]["content"]
    assert request.body["max_tokens"] == 2000


async def test_table_rows_are_keyed_by_column_with_nulls(make_settings, make_analyzer, aoai, page):
    grid = {"columns": ["Item", "Qty", "Price"],
            "rows": [["Tea", "2", "3.00"], ["Cake", None, ""], ["Total"], ["Soup", "1", "4.50", "extra"]]}
    aoai.enqueue(Reply.ok(json.dumps(grid)))
    result = await extract(make_analyzer(make_settings()), page, "table")
    assert aoai.requests[0].body["response_format"]["json_schema"]["name"] == "table"
    assert result["data"] == {"columns": ["Item", "Qty", "Price"], "rows": [
        {"Item": "Tea", "Qty": "2", "Price": "3.00"},
        {"Item": "Cake", "Qty": None, "Price": None},
        {"Item": "Total", "Qty": None, "Price": None},
        {"Item": "Soup", "Qty": "1", "Price": "4.50"},
    ]}
    assert [(w["code"], w["field"]) for w in result["warnings"]] == [("extra_cells", "rows[3]")]
    assert '"extra"' in result["warnings"][0]["message"]


def test_blank_and_repeated_column_names_are_made_unique_and_warned():
    data, warnings = table_from_grid(TableGrid(columns=["Amount", "", "Amount"], rows=[["1", "2", "3"]]))
    assert data["columns"] == ["Amount", "Column 2", "Amount (2)"]
    assert data["rows"] == [{"Amount": "1", "Column 2": "2", "Amount (2)": "3"}]
    assert [w["code"] for w in warnings] == ["empty_column_name", "duplicate_column"]


def _without(key: str) -> dict:
    document = copy.deepcopy(INVOICE)
    del document[key]
    return document


@pytest.mark.parametrize(
    ("first", "expected_error"),
    [
        pytest.param(json.dumps(_invoice(total="309.36")), "total: Input should be a valid number", id="wrong-type"),
        pytest.param(json.dumps(_without("currency")), "currency: Field required", id="missing-field"),
        pytest.param(json.dumps({**INVOICE, "notes": "x"}), "notes: Extra inputs are not permitted", id="extra"),
        pytest.param("Sorry, I cannot read this invoice.", "not valid JSON", id="prose"),
        pytest.param("```json\n" + json.dumps(_invoice(line_items="none")) + "\n```",
                     "line_items: Input should be a valid list", id="fenced-and-wrong"),
    ],
)
async def test_invalid_output_is_re_asked_once_with_the_errors(make_settings, make_analyzer, aoai, page, first,
                                                               expected_error):
    aoai.enqueue(Reply.ok(first, prompt_tokens=1000, completion_tokens=100),
                 Reply.ok(json.dumps(INVOICE), prompt_tokens=1200, completion_tokens=150))
    result = await extract(make_analyzer(make_settings()), page, "invoice")
    assert result["data"] == INVOICE and result["attempts"] == 2
    assert result["usage"] == {"prompt_tokens": 2200, "completion_tokens": 250, "total_tokens": 2450}
    first_request, second = aoai.requests
    assert second.body["messages"][:2] == first_request.body["messages"]
    assert second.body["messages"][2] == {"role": "assistant", "content": first}
    correction = second.body["messages"][3]
    assert correction["role"] == "user" and expected_error in correction["content"]
    assert "corrected JSON" in correction["content"]
    assert second.body["response_format"] == first_request.body["response_format"]
    assert second.body["max_tokens"] == first_request.body["max_tokens"]


async def test_fenced_valid_json_is_accepted_without_a_re_ask(make_settings, make_analyzer, aoai, page):
    aoai.enqueue(Reply.ok("```json\n" + json.dumps(INVOICE, indent=2) + "\n```"))
    result = await extract(make_analyzer(make_settings()), page, "invoice")
    assert result["data"] == INVOICE and result["attempts"] == 1
    assert len(aoai.requests) == 1


@pytest.mark.parametrize(("max_tokens", "retried_with"), [(700, 1400), (3000, 4096)])
async def test_truncated_reply_is_re_asked_with_more_tokens(make_settings, make_analyzer, aoai, page, max_tokens,
                                                            retried_with):
    cut = json.dumps(INVOICE)[:120]
    aoai.enqueue(Reply.truncated(cut), Reply.ok(json.dumps(INVOICE), completion_tokens=300))
    result = await extract(make_analyzer(make_settings()), page, "invoice", max_tokens=max_tokens)
    assert result["attempts"] == 2 and result["data"] == INVOICE
    assert result["usage"]["completion_tokens"] == max_tokens + 300
    first, second = aoai.requests
    assert first.body["max_tokens"] == max_tokens and second.body["max_tokens"] == retried_with
    assert second.body["messages"][2] == {"role": "assistant", "content": cut}
    assert "cut off" in second.body["messages"][3]["content"]


async def test_still_invalid_after_the_re_ask_fails_honestly(make_settings, make_analyzer, aoai, page):
    aoai.enqueue(Reply.ok("not json", completion_tokens=5), Reply.ok('{"vendor": null}', completion_tokens=7))
    with pytest.raises(ExtractionFailed) as caught:
        await extract(make_analyzer(make_settings()), page, "invoice")
    failure = caught.value
    assert failure.status == 502 and failure.attempts == 2
    assert failure.raw_reply == '{"vendor": null}'
    assert any(e.startswith("vendor:") for e in failure.errors) and any("customer" in e for e in failure.errors)
    assert failure.usage.completion_tokens == 12
    problem = failure.to_problem()
    assert problem["type"] == "/problems/extraction-failed"
    assert problem["raw_reply"] == '{"vendor": null}' and problem["errors"] == failure.errors
    assert problem["attempts"] == 2 and problem["usage"]["completion_tokens"] == 12
    assert len(aoai.requests) == 2


async def test_provenance_of_a_completion_is_passed_on(make_settings, page):
    """The local engine's completions say where each value was read; the result carries that along."""

    class Engine(Provider):
        name = "local"

        async def complete(self, request: VisionRequest) -> Completion:
            return Completion(json.dumps(INVOICE), "engine-1", Usage(), "stop", provenance={"total": {"box": [1, 2]}})

    result = await extract(Analyzer(make_settings(), Engine(), None), page, "invoice")
    assert result["provenance"] == {"total": {"box": [1, 2]}} and result["provider"] == "local"


async def test_content_filtered_completion_is_422_and_not_re_asked(make_settings, make_analyzer, aoai, page):
    aoai.enqueue(Reply.content_filter_completion())
    with pytest.raises(ContentFiltered) as caught:
        await extract(make_analyzer(make_settings()), page, "invoice")
    assert caught.value.status == 422 and len(aoai.requests) == 1


def test_a_consistent_invoice_has_no_warnings():
    assert invoice_warnings(Invoice.model_validate(INVOICE)) == []
    rounded = _invoice(line_items=[{"description": "Bolt", "quantity": 3, "unit_price": 0.333, "total": 1.0}],
                       subtotal=1.0, tax=0.19, total=1.19)  # within the tolerance: 3 x 0.333 = 0.999
    assert invoice_warnings(Invoice.model_validate(rounded)) == []
    sparse = _invoice(line_items=[], subtotal=None, tax=None, total=None, invoice_date=None, currency=None)
    assert invoice_warnings(Invoice.model_validate(sparse)) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"line_items": [{"description": "Drill", "quantity": 3, "unit_price": 19.99, "total": 69.97},
                         INVOICE["line_items"][1]], "subtotal": 269.97, "total": 319.36},
         [("line_total_mismatch", "line_items[0].total")]),
        ({"subtotal": 250.0, "total": 299.39}, [("subtotal_mismatch", "subtotal")]),
        ({"total": 320.0}, [("total_mismatch", "total")]),
        ({"tax": None}, [("total_mismatch", "total")]),
        ({"due_date": "2024-02-15"}, [("due_date_before_invoice_date", "due_date")]),
        ({"invoice_date": "01/03/2024"}, [("invalid_date", "invoice_date")]),
        ({"currency": "EURO"}, [("invalid_currency", "currency")]),
        ({"currency": "eur"}, [("invalid_currency", "currency")]),
        ({"currency": "XYZ"}, [("invalid_currency", "currency")]),
    ],
)
def test_inconsistent_invoices_get_exact_warning_codes(changes, expected):
    document = _invoice(**changes)
    warnings = invoice_warnings(Invoice.model_validate(document))
    assert [(w["code"], w["field"]) for w in warnings] == expected
    assert all(w["message"] for w in warnings)
    assert Invoice.model_validate(document).model_dump() == document  # reported, never "fixed"


async def test_custom_schema_data_is_valid_against_the_callers_schema(make_settings, make_analyzer, aoai, page):
    reply = {"merchant": "Kiosk", "date": "2024-05-01", "store_code": None, "items": [{"name": "tea", "price": 2}],
             "payment": None, "total": 2}
    aoai.enqueue(Reply.ok(json.dumps(reply)))
    result = await extract(make_analyzer(make_settings()), page, "schema", schema=RECEIPT, prompt="Read the receipt")
    assert result["data"] == {"merchant": "Kiosk", "date": "2024-05-01", "items": [{"name": "tea", "price": 2}],
                              "total": 2}
    assert result["schema_hash"] == schema_hash(RECEIPT)
    [request] = aoai.requests
    assert request.body["response_format"]["json_schema"]["name"] == "receipt"
    assert request.body["response_format"]["json_schema"]["strict"] is True
    sent = request.body["response_format"]["json_schema"]["schema"]["properties"]["store_code"]
    assert "pattern" not in sent and "pattern" in sent["description"]  # stripped for the model, checked by us
    assert request.text.startswith("Read the receipt")


async def test_a_stripped_constraint_broken_by_the_model_is_re_asked(make_settings, make_analyzer, aoai, page):
    bad = {"merchant": "Kiosk", "date": "yesterday", "store_code": "abc", "items": [{"name": "tea", "price": 2}],
           "payment": "card", "total": 2}
    good = {**bad, "date": "2024-05-01", "store_code": "KIO-0001"}
    aoai.enqueue(Reply.ok(json.dumps(bad)), Reply.ok(json.dumps(good)))
    result = await extract(make_analyzer(make_settings()), page, "schema", schema=RECEIPT)
    assert result["data"] == good and result["attempts"] == 2
    correction = aoai.requests[1].body["messages"][-1]["content"]
    assert "$.store_code: 'abc' does not match" in correction and "$.date: 'yesterday' is not a 'date'" in correction


@pytest.mark.azurite
async def test_cache_key_includes_the_schema_hash(make_settings, cache_settings, make_analyzer, aoai, page):
    other = {**RECEIPT, "properties": {**RECEIPT["properties"], "tip": {"type": "number"}}}
    aoai.set_responder(lambda rec: Reply.ok(json.dumps(
        {**RECEIPT_REPLY, **({"tip": None} if "tip" in json.dumps(rec.body["response_format"]) else {})})))
    analyzer = make_analyzer(make_settings(**cache_settings))
    first = await extract(analyzer, page, "schema", schema=RECEIPT)
    again = await extract(analyzer, page, "schema", schema=copy.deepcopy(RECEIPT))
    assert (first["cached"], again["cached"], len(aoai.requests)) == (False, True, 1)
    assert again["data"] == first["data"]
    changed = await extract(analyzer, page, "schema", schema=other)
    assert changed["cached"] is False and changed["schema_hash"] != first["schema_hash"]
    assert len(aoai.requests) == 2


async def test_http_invoice_multipart(make_settings, make_client, aoai, page):
    aoai.enqueue(Reply.ok(json.dumps(_invoice(total=300.0))))
    client = await make_client(make_settings())
    response = await client.post("/api/extract/invoice", files={"file": ("inv.png", page, "image/png")},
                                 data={"detail": "auto", "max_tokens": "1500"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"]["total"] == 300.0 and body["detail"] == "auto"
    assert [w["code"] for w in body["warnings"]] == ["total_mismatch"]
    assert isinstance(body["latency_ms"], int)
    assert aoai.requests[0].body["max_tokens"] == 1500


async def test_http_table_raw_body(make_settings, make_client, aoai, page):
    aoai.enqueue(Reply.ok(json.dumps({"columns": ["A"], "rows": [["1"], []]})))
    client = await make_client(make_settings())
    response = await client.post("/api/extract/table?prompt=Only%20the%20first%20table", content=page)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"columns": ["A"], "rows": [{"A": "1"}, {"A": None}]}
    assert aoai.requests[0].text.startswith("Only the first table")


async def test_http_schema_as_multipart_field_and_as_json_body(make_settings, make_client, aoai, page):
    aoai.default_reply = Reply.ok(json.dumps({**RECEIPT_REPLY, "payment": "cash"}))
    client = await make_client(make_settings())
    form = await client.post("/api/extract", files={"file": ("r.png", page, "image/png")},
                             data={"schema": json.dumps(RECEIPT)})
    assert form.status_code == 200, form.text
    body = await client.post("/api/extract", json={"image": base64.b64encode(page).decode(), "schema": RECEIPT,
                                                   "prompt": "Receipt please", "detail": "low"})
    assert body.status_code == 200, body.text
    assert form.json()["data"] == body.json()["data"] == {**RECEIPT_DATA, "payment": "cash"}
    assert body.json()["detail"] == "low" and aoai.requests[1].text.startswith("Receipt please")
    data_url = "data:image/png;base64," + base64.b64encode(page).decode()
    again = await client.post("/api/extract", json={"image": data_url, "schema": RECEIPT})
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("path", "request_kwargs", "parameter", "fragment"),
    [
        ("/api/extract", {"data": {"schema": json.dumps({"type": "object", "properties": {
            "tags": {"type": "object", "properties": {}, "patternProperties": {"^x": {"type": "string"}}}}})}},
         "schema", "'patternProperties' at /properties/tags/patternProperties"),
        ("/api/extract", {"data": {"schema": "{not json"}}, "schema", "not valid JSON"),
        ("/api/extract", {}, "schema", "is required"),
        ("/api/extract/invoice", {"data": {"schema": json.dumps(RECEIPT)}}, "schema", "only for kind 'schema'"),
        ("/api/extract/invoice", {"data": {"detail": "ultra"}}, "detail", "must be one of"),
    ],
)
async def test_http_bad_schemas_and_parameters_are_400(make_settings, make_client, aoai, page, path, request_kwargs,
                                                        parameter, fragment):
    client = await make_client(make_settings())
    response = await client.post(path, files={"file": ("x.png", page, "image/png")}, **request_kwargs)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["parameter"] == parameter and fragment in body["detail"]
    assert aoai.requests == []


async def test_http_json_body_problems(make_settings, make_client, aoai, page):
    client = await make_client(make_settings(VISION_MAX_IMAGE_BYTES="1000"))
    bad = await client.post("/api/extract", json={"image": "%%%", "schema": RECEIPT})
    assert bad.status_code == 400 and bad.json()["parameter"] == "image"
    big = await client.post("/api/extract", json={"image": base64.b64encode(page).decode(), "schema": RECEIPT})
    assert big.status_code == 413 and big.json()["type"] == "/problems/payload-too-large"
    typo = await client.post("/api/extract", json={"image": "AAAA", "schema": RECEIPT, "promt": "x"})
    assert typo.status_code == 400 and typo.json()["parameter"] == "promt"
    wrong = await client.post("/api/extract", json={"image": "AAAA", "schema": "{}", "max_tokens": True})
    assert wrong.status_code == 400 and wrong.json()["parameter"] in ("schema", "max_tokens")
    not_json = await client.post("/api/extract", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["parameter"] == "body"
    assert aoai.requests == []


async def test_http_extraction_failure_is_502_with_raw_reply_and_errors(make_settings, make_client, aoai, page):
    aoai.enqueue(Reply.ok("nope"), Reply.ok("still nope"))
    client = await make_client(make_settings())
    response = await client.post("/api/extract/table", content=page)
    assert response.status_code == 502 and response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["type"] == "/problems/extraction-failed"
    assert body["raw_reply"] == "still nope" and body["errors"] and body["attempts"] == 2


async def test_http_content_filter_is_422(make_settings, make_client, aoai, page):
    aoai.enqueue(Reply.content_filter_completion())
    client = await make_client(make_settings())
    response = await client.post("/api/extract/invoice", content=page)
    assert response.status_code == 422 and response.json()["type"] == "/problems/content-filtered"


async def test_openapi_documents_the_extraction_routes(make_settings, make_client):
    client = await make_client(make_settings())
    document = (await client.get("/api/openapi.json")).json()
    for path in ("/api/extract/invoice", "/api/extract/table", "/api/extract", "/api/compare", "/api/sequence"):
        assert {"200", "400", "413", "502"} <= set(document["paths"][path]["post"]["responses"])
    content = document["paths"]["/api/extract"]["post"]["requestBody"]["content"]
    assert "schema" in content["multipart/form-data"]["schema"]["properties"]
    assert "image" in content["application/json"]["schema"]["properties"]
    assert "Invoice" in document["components"]["schemas"]


def _cli(env: dict[str, str], monkeypatch, tmp_path, *argv: str):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no local.settings.json
    parser = argparse.ArgumentParser()
    add_extract_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


@pytest.fixture
def cli_env(aoai) -> dict[str, str]:
    return {"AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_API_KEY": aoai.api_key,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "VISION_CACHE_ENABLED": "false"}


async def test_cli_prints_data_and_warnings(cli_env, monkeypatch, tmp_path, aoai, corpus, capsys):
    aoai.enqueue(Reply.ok(json.dumps(_invoice(currency="EURO"))))
    args = _cli(cli_env, monkeypatch, tmp_path, "extract", "invoice", str(corpus / "page.png"))
    assert await args.handler(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["currency"] == "EURO"
    assert "warning: invalid_currency (currency)" in err


async def test_cli_schema_kind_and_full_json(cli_env, monkeypatch, tmp_path, aoai, corpus, capsys):
    aoai.enqueue(Reply.ok(json.dumps(RECEIPT_REPLY)))
    schema_path = str(FIXTURES / "receipt.schema.json")
    args = _cli(cli_env, monkeypatch, tmp_path, "extract", "schema", str(corpus / "page.png"), "--schema",
                schema_path, "--json")
    assert await args.handler(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "schema" and result["data"] == RECEIPT_DATA


async def test_cli_failure_shows_the_raw_reply(cli_env, monkeypatch, tmp_path, aoai, corpus, capsys):
    aoai.enqueue(Reply.ok("first"), Reply.ok("second"))
    args = _cli(cli_env, monkeypatch, tmp_path, "extract", "table", str(corpus / "page.png"))
    with pytest.raises(ExtractionFailed):
        await args.handler(args)
    err = capsys.readouterr().err
    assert "raw reply:\nsecond" in err and "not valid JSON" in err
