"""The daily spend budget (issue 10): the arithmetic, the shared counter in Azurite, and every edge past the budget.

Past the budget a new model call is refused (HTTP 429 ``/problems/budget-exhausted`` with ``Retry-After``
at the next UTC midnight), a cache hit is still served, a batch leaves the rest for ``--resume``, and a
blob stays pending (``deferred``) without using up its attempts. The counter is checked for lost
updates under concurrency: tasks, threads, and two processes writing the same Azurite table.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from shared.analysis_options import AnalysisOptions
from shared.batch import run_batch
from shared.blob.deferral import BlobDeferred
from shared.blob.watch import process
from shared.budget import (
    DailyBudget,
    DaySpend,
    Pricing,
    SpendLedger,
    build_budget,
    day_key,
    next_reset,
    seconds_until_reset,
    to_micros,
)
from shared.cli.exit_codes import EXIT_BUDGET
from shared.cli.main import main
from shared.errors import BudgetExhausted, ConfigError, ModelError, ModelThrottled, ModelUnavailable
from shared.providers.base import Completion, Provider, Usage, VisionRequest
from shared.providers.budgeted import BudgetedProvider
from shared.services import Services, build_analyzer
from shared.tokens import get_model_spec
from tests.aoai_double import Reply
from tests.conftest import assert_problem, distinct_png, upload

REPO = Path(__file__).resolve().parent.parent
#: Every call the double answers costs exactly this at gpt-4o's list prices ($2.50 per 1M prompt tokens).
CALL = Reply.ok("A picture.", prompt_tokens=1000, completion_tokens=0)
CALL_USD = 0.0025


def at(text: str) -> float:
    """Epoch seconds of an ISO 8601 UTC time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Clock:
    """An injectable epoch clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def budget_values(storage_connection_string) -> dict[str, str]:
    """Settings values giving a budget of three calls, counted in a table of this test's own."""
    return {"AzureWebJobsStorage": storage_connection_string, "VISION_BUDGET_TABLE": f"b{uuid.uuid4().hex[:16]}",
            "VISION_DAILY_BUDGET_USD": str(3 * CALL_USD)}


def ledger_of(values: dict[str, str]) -> SpendLedger:
    service = TableServiceClient.from_connection_string(values["AzureWebJobsStorage"])
    return SpendLedger(service, values["VISION_BUDGET_TABLE"])


def spend_today(values: dict[str, str], usd: float) -> None:
    """Someone else (another instance) spent ``usd`` today."""
    ledger = ledger_of(values)
    try:
        ledger.add(day_key(time.time()), to_micros(usd), 1)
    finally:
        ledger.close()


# -- pure arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "day", "reset", "seconds"), [
    ("2024-03-10T12:00:00Z", "2024-03-10", "2024-03-11T00:00:00Z", 12 * 3600),
    ("2024-03-10T23:59:59.500000Z", "2024-03-10", "2024-03-11T00:00:00Z", 0.5),
    ("2024-03-11T00:00:00Z", "2024-03-11", "2024-03-12T00:00:00Z", 86400),
    ("2024-02-28T23:00:00Z", "2024-02-28", "2024-02-29T00:00:00Z", 3600),  # a leap year
    ("2024-12-31T18:00:00Z", "2024-12-31", "2025-01-01T00:00:00Z", 6 * 3600),
])
def test_day_key_and_reset_are_utc(now, day, reset, seconds):
    assert day_key(at(now)) == day
    assert next_reset(at(now)) == datetime.fromisoformat(reset.replace("Z", "+00:00"))
    assert seconds_until_reset(at(now)) == pytest.approx(seconds)


def test_micro_dollars_round_up_and_never_drift():
    assert to_micros(0.0025) == 2500 and to_micros(0.000655) == 655 and to_micros(0.0000001) == 1
    assert to_micros(0) == 0
    assert sum(to_micros(0.1) for _ in range(10)) == to_micros(1.0)  # where float sums drift


def test_cost_is_the_usage_at_the_answering_models_prices():
    pricing = Pricing("gpt-4o")
    assert pricing.cost(Completion("x", "m", Usage(1000, 0))) == pytest.approx(CALL_USD)
    mini = get_model_spec("gpt-4o-mini")
    answered_by_mini = Completion("x", "m", Usage(1_000_000, 1_000_000), pricing_model="gpt-4o-mini")
    assert pricing.cost(answered_by_mini) == pytest.approx(mini.input_price_per_1m + mini.output_price_per_1m)


def test_cost_uses_the_model_table_overrides(make_settings):
    settings = make_settings(VISION_MODEL_TABLE=json.dumps({"gpt-4o": {"input_price_per_1m": 5.0}}))
    assert Pricing.from_settings(settings).cost(Completion("x", "m", Usage(1000, 0))) == pytest.approx(0.005)


def test_budget_exhausted_is_not_an_outage():
    """The local fallback, fallback deployments and the retry layer act on throttling and outages only."""
    error = BudgetExhausted(spent_usd=1.25, budget_usd=1.0, retry_after=0.2, resets_at="2024-03-11T00:00:00Z")
    assert isinstance(error, ModelError) and not isinstance(error, ModelThrottled | ModelUnavailable)
    assert error.retry_after == 1.0  # at least a second
    problem = error.to_problem()
    assert problem["type"] == "/problems/budget-exhausted" and problem["status"] == 429
    assert problem["spent_usd"] == 1.25 and problem["budget_usd"] == 1.0
    assert "$1.25" in problem["detail"] and "$1.00" in problem["detail"] and "2024-03-11T00:00:00Z" in problem["detail"]


# -- the budget over a stand-in ledger (no storage) ------------------------------------------------


class MemoryLedger:
    """A SpendLedger stand-in that counts reads and can be told to fail."""

    table_name = "memory"

    def __init__(self) -> None:
        self.days: dict[str, DaySpend] = {}
        self.reads = 0
        self.failing = False

    def read(self, day: str) -> DaySpend:
        self.reads += 1
        if self.failing:
            raise ConnectionError("storage down")
        return self.days.get(day, DaySpend(day))

    def add(self, day: str, micros: int, calls: int = 1) -> DaySpend:
        if self.failing:
            raise ConnectionError("storage down")
        self.days[day] = self.days.get(day, DaySpend(day)).plus(micros, calls)
        return self.days[day]

    def close(self) -> None:
        pass


async def test_check_refuses_at_the_budget_and_says_until_when():
    clock = Clock(at("2024-03-10T22:00:00Z"))
    budget = DailyBudget(3 * CALL_USD, MemoryLedger(), clock=clock)
    for _ in range(3):
        await budget.check()
        await budget.record(CALL_USD)
    with pytest.raises(BudgetExhausted) as refused:
        await budget.check()
    assert refused.value.retry_after == pytest.approx(7200)
    assert refused.value.resets_at == "2024-03-11T00:00:00Z"
    assert refused.value.spent_usd == pytest.approx(3 * CALL_USD)
    clock.now = at("2024-03-11T00:00:01Z")  # a new UTC day: a new counter
    await budget.check()
    assert (await budget.status())["spent_today_usd"] == 0


async def test_a_burst_of_checks_reads_the_table_once_a_second():
    ledger = MemoryLedger()
    budget = DailyBudget(1.0, ledger)
    await asyncio.gather(*(budget.check() for _ in range(50)))
    assert ledger.reads == 1
    await asyncio.sleep(1.05)
    await budget.check()
    assert ledger.reads == 2


async def test_storage_trouble_fails_open_and_loses_no_spend():
    ledger = MemoryLedger()
    budget = DailyBudget(1.0, ledger, failure_cooldown_seconds=0)
    await budget.record(0.25)
    ledger.failing = True
    await budget.record(0.5)  # kept in memory
    await budget.check()  # unreadable: the last spend seen (plus what is pending) decides
    status = await budget.status()
    assert status["error"].startswith("ConnectionError") and status["spent_today_usd"] == pytest.approx(0.75)
    ledger.failing = False
    await budget.record(0.5)  # written together with what was pending
    assert ledger.days[day_key(time.time())] == DaySpend(day_key(time.time()), 1_250_000, 3)
    with pytest.raises(BudgetExhausted):
        await budget.check()
    assert "error" not in await budget.status()


class Fixed(Provider):
    """A provider answering every request with ``CALL``'s usage."""

    name = "fixed"
    max_images_per_request = 3
    deterministic = True
    preferred_detail = "high"
    preferred_jpeg_quality = 90

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    @property
    def model(self) -> str:
        return "fixed-1"

    async def complete(self, request: VisionRequest) -> Completion:
        self.calls += 1
        return Completion("ok", "fixed-1", Usage(1000, 0))

    async def aclose(self) -> None:
        self.closed = True

    def describe(self) -> dict:
        return {"provider": "fixed", "extra": 1}


async def test_the_wrapper_declares_the_inner_capabilities_and_counts_each_answer():
    inner, ledger = Fixed(), MemoryLedger()
    budget = DailyBudget(2 * CALL_USD, ledger)
    wrapped = BudgetedProvider(inner, budget, Pricing("gpt-4o"))
    assert (wrapped.name, wrapped.max_images_per_request, wrapped.deterministic, wrapped.preferred_detail,
            wrapped.preferred_jpeg_quality, wrapped.model, wrapped.supports_images) == (
            "fixed", 3, True, "high", 90, "fixed-1", True)
    assert wrapped.describe() == inner.describe() and wrapped.calls == 0  # anything else reads through
    request = VisionRequest(prompt="p", images=(), max_tokens=10)
    await wrapped.complete(request)
    await wrapped.complete(request)
    with pytest.raises(BudgetExhausted):
        await wrapped.complete(request)
    assert inner.calls == 2  # the refused call never reached the model
    await wrapped.aclose()
    assert inner.closed


# -- wiring -----------------------------------------------------------------------------------------


async def test_wrapped_only_with_a_budget_and_a_billed_model(make_settings, budget_values):
    plain = build_analyzer(make_settings())
    local = build_analyzer(make_settings(VISION_PROVIDER="local", VISION_DAILY_BUDGET_USD="1"))
    budgeted = build_analyzer(make_settings(**budget_values))
    try:
        assert not isinstance(plain.provider, BudgetedProvider)
        assert not isinstance(local.provider, BudgetedProvider)  # the offline engine costs nothing
        assert isinstance(budgeted.provider, BudgetedProvider)
        data = distinct_png(1)
        options = AnalysisOptions(prompt="p", detail="low", max_tokens=10)
        assert budgeted.key_for(data, options).value == plain.key_for(data, options).value  # the cache still hits
    finally:
        for analyzer in (plain, local, budgeted):
            await analyzer.aclose()


def test_a_budget_with_no_table_is_a_configuration_error(make_settings):
    with pytest.raises(ConfigError) as refused:
        build_budget(make_settings(VISION_DAILY_BUDGET_USD="5"))
    assert refused.value.setting == "VISION_DAILY_BUDGET_USD"


# -- the counter in Azurite --------------------------------------------------------------------------


async def test_concurrent_adds_from_many_clients_lose_nothing(budget_values):
    """50 adds at once through 5 separate clients (5 threads each racing on the ETag): every one counts."""
    ledgers = [ledger_of(budget_values) for _ in range(5)]
    day = "2024-03-10"
    try:
        await asyncio.gather(*(asyncio.to_thread(ledger.add, day, 7 + index, 1)
                               for ledger in ledgers for index in range(10)))
        total = ledgers[0].read(day)
        assert total == DaySpend(day, 5 * sum(7 + index for index in range(10)), 50)
        assert ledgers[0].read("2024-03-11") == DaySpend("2024-03-11")
    finally:
        for ledger in ledgers:
            ledger.close()


async def test_concurrent_records_from_many_tasks_lose_nothing(budget_values):
    budget = DailyBudget(100.0, ledger_of(budget_values))
    await asyncio.gather(*(budget.record(0.001) for _ in range(50)))
    spent = await budget.spent(fresh=True)
    assert (spent.micros, spent.calls) == (50_000, 50)
    await budget.aclose()


def test_a_stale_write_is_refused_and_redone(budget_values, monkeypatch):
    """The ETag condition at work, deterministically: a write based on an outdated read gets 412 and reads again."""
    mine, theirs = ledger_of(budget_values), ledger_of(budget_values)
    day = "2024-03-10"
    try:
        mine.add(day, 100)
        stale = mine._get(day)
        theirs.add(day, 10)  # lands between my read and my write
        real_get = mine._get
        reads = iter([stale])
        monkeypatch.setattr(mine, "_get", lambda key: next(reads, None) or real_get(key))
        assert mine.add(day, 1) == DaySpend(day, 111, 3)
        assert mine.conflicts == 1
    finally:
        mine.close()
        theirs.close()


def test_a_day_created_concurrently_is_added_to(budget_values, monkeypatch):
    mine, theirs = ledger_of(budget_values), ledger_of(budget_values)
    day = "2024-03-12"
    try:
        theirs.add(day, 10)
        real_get = mine._get
        seen = []

        def first_sees_nothing(key):
            seen.append(key)
            return None if len(seen) == 1 else real_get(key)

        monkeypatch.setattr(mine, "_get", first_sees_nothing)
        assert mine.add(day, 5) == DaySpend(day, 15, 2)
        assert mine.conflicts == 1
    finally:
        mine.close()
        theirs.close()


ADD_IN_A_PROCESS = """
import sys, threading, time
from azure.data.tables import TableServiceClient
from shared.budget import SpendLedger
connection, table, day, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ledgers = [SpendLedger(TableServiceClient.from_connection_string(connection), table) for _ in range(3)]
for ledger in ledgers:
    ledger.read(day)  # the table exists and connections are open before the race starts
time.sleep(max(0.0, start - time.time()))
threads = [threading.Thread(target=lambda l=ledger: [l.add(day, 3, 1) for _ in range(10)]) for ledger in ledgers]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sum(ledger.conflicts for ledger in ledgers))
"""


def test_two_processes_share_the_counter_without_lost_updates(budget_values):
    """Two interpreters, three writer threads each, started at the same instant on the same Azurite row."""
    day = "2024-03-10"
    start = time.time() + 3.0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [budget_values["AzureWebJobsStorage"], budget_values["VISION_BUDGET_TABLE"], day, str(start)]
    workers = [subprocess.Popen([sys.executable, "-c", ADD_IN_A_PROCESS, *args], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-2000:]
    ledger = ledger_of(budget_values)
    try:
        assert ledger.read(day) == DaySpend(day, 2 * 3 * 10 * 3, 60)
    finally:
        ledger.close()


# -- HTTP -------------------------------------------------------------------------------------------


async def test_past_the_budget_analyze_is_a_429_problem_until_midnight(make_settings, make_client, aoai,
                                                                       budget_values, png_bytes):
    spend_today(budget_values, 5 * CALL_USD)
    client = await make_client(make_settings(**budget_values, VISION_LOCAL_FALLBACK="all"))
    response = await client.post("/api/analyze", files={"file": ("cat.png", png_bytes, "image/png")})
    body = assert_problem(response, 429, "/problems/budget-exhausted")
    expected = seconds_until_reset(time.time())
    assert abs(int(response.headers["Retry-After"]) - expected) <= 2
    assert body["spent_usd"] == pytest.approx(5 * CALL_USD) and body["budget_usd"] == pytest.approx(3 * CALL_USD)
    assert body["resets_at"] == next_reset(time.time()).isoformat().replace("+00:00", "Z")
    assert "degraded" not in body and aoai.requests == []  # no model call, and no local stand-in either


async def test_cache_hits_are_still_served_past_the_budget(make_settings, make_client, aoai, budget_values,
                                                           cache_settings):
    aoai.default_reply = CALL
    client = await make_client(make_settings(**{**budget_values, **cache_settings}))
    first, second = distinct_png(1), distinct_png(2)
    assert (await client.post("/api/analyze?detail=low", content=first)).json()["cached"] is False
    spend_today(budget_values, 2 * CALL_USD)  # other instances spent the rest
    await asyncio.sleep(1.1)  # past the one-second read cache
    assert_problem(await client.post("/api/analyze?detail=low", content=second), 429, "/problems/budget-exhausted")
    again = await client.post("/api/analyze?detail=low", content=first)
    assert again.status_code == 200 and again.json()["cached"] is True
    assert len(aoai.requests) == 1


async def test_health_shows_the_budget_and_todays_spend(make_settings, make_client, aoai, budget_values):
    aoai.default_reply = CALL
    client = await make_client(make_settings(**budget_values))
    assert (await client.post("/api/analyze?detail=low", content=distinct_png(3))).status_code == 200
    health = (await client.get("/api/health")).json()
    assert health["status"] == "ok"
    budget = health["budget"]
    assert budget["daily_usd"] == pytest.approx(3 * CALL_USD) and budget["spent_today_usd"] == pytest.approx(CALL_USD)
    assert budget["calls_today"] == 1 and budget["exhausted"] is False
    assert budget["resets_at"] == next_reset(time.time()).isoformat().replace("+00:00", "Z")
    plain = await make_client(make_settings())
    assert (await plain.get("/api/health")).json()["budget"] is None


# -- batch --------------------------------------------------------------------------------------------


@pytest.fixture
def five_images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(5):
        (folder / f"img{index}.png").write_bytes(distinct_png(10 + index))
    return folder


async def test_the_budget_reached_mid_batch_fails_nothing_and_the_rest_goes_through_tomorrow(
        make_settings, aoai, budget_values, five_images, tmp_path):
    aoai.default_reply = CALL
    analyzer = build_analyzer(make_settings(**budget_values))
    clock = Clock(at("2024-03-10T15:00:00Z"))
    analyzer.provider.budget.clock = clock
    out = tmp_path / "out.jsonl"
    options = AnalysisOptions(prompt="What is it?", detail="low")
    try:
        today = await run_batch(analyzer, five_images, out, options, concurrency=1, progress=False)
        assert (today.succeeded, today.failed, today.not_done) == (3, 0, 2)
        assert today.budget_resets_at == "2024-03-11T00:00:00Z" and "--resume" in today.line()
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(lines) == 3 and all(line["success"] for line in lines)  # nothing recorded as failed

        clock.now = at("2024-03-11T00:00:05Z")
        tomorrow = await run_batch(analyzer, five_images, out, options, concurrency=1, resume=True, progress=False)
        assert (tomorrow.succeeded, tomorrow.failed, tomorrow.skipped, tomorrow.not_done) == (2, 0, 3, 0)
        assert tomorrow.budget_resets_at is None
        ids = sorted(json.loads(line)["id"] for line in out.read_text().splitlines())
        assert ids == [f"img{index}.png" for index in range(5)] and len(aoai.requests) == 5
    finally:
        await analyzer.aclose()


def test_batch_stopped_by_the_budget_exits_5(make_settings, aoai, budget_values, five_images, tmp_path, monkeypatch,
                                             capsys):
    aoai.default_reply = CALL
    monkeypatch.chdir(tmp_path)  # no local.settings.json
    for name, value in {"AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_API_KEY": aoai.api_key,
                        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "VISION_CACHE_ENABLED": "false",
                        **budget_values}.items():
        monkeypatch.setenv(name, value)
    code = main(["batch", str(five_images), "--out", str(tmp_path / "out.jsonl"), "--concurrency", "1", "--quiet",
                 "--detail", "low"])
    assert code == EXIT_BUDGET
    assert "not done" in capsys.readouterr().err


# -- the blob flow -------------------------------------------------------------------------------------


async def test_past_the_budget_a_blob_is_deferred_never_failed_and_keeps_its_attempts(
        make_settings, aoai, budget_values, containers):
    aoai.default_reply = CALL
    settings = make_settings(**budget_values, **containers, VISION_MAX_ATTEMPTS="2")
    clock = Clock(time.time())
    async with Services(settings) as services:
        services.analyzer.provider.budget.clock = clock
        pipeline = services.pipeline
        pipeline.ensure_containers()
        spend_today(budget_values, 3 * CALL_USD)
        blob = upload(pipeline, "describe/later.png", distinct_png(20))
        for _ in range(3):  # more deliveries than VISION_MAX_ATTEMPTS
            with pytest.raises(BlobDeferred) as deferred:
                await pipeline.handle(blob)
            assert 0 < deferred.value.retry_after <= 86400
        document = pipeline.read_result("describe/later.png")
        assert document["status"] == "deferred" and document["attempts"] == 0
        assert document["error"]["type"] == "/problems/budget-exhausted" and "budget" in document["reason"]
        assert document["resets_at"] == next_reset(clock.now).isoformat().replace("+00:00", "Z")
        assert list(pipeline.quarantine.list_blobs()) == [] and aoai.requests == []

        summary = await process(pipeline, progress=False)  # still to do, and deferred again
        assert summary.counts["deferred"] == 1 and summary.counts["failed"] == 0 and not summary.unresolved
        assert "deferred: 1" in summary.line()

        clock.now += seconds_until_reset(clock.now) + 1  # the next UTC day
        summary = await process(pipeline, progress=False)
        assert summary.counts["succeeded"] == 1
        document = pipeline.read_result("describe/later.png")
        assert document["status"] == "succeeded" and document["attempts"] == 1
        assert len(aoai.requests) == 1
