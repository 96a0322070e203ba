"""``batch``: a folder into a JSON Lines file, streamed, bounded, resumable, against the Azure OpenAI double."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from shared.analysis import Analyzer
from shared.analysis_options import AnalysisOptions
from shared.batch import BatchSummary, iter_images, run_batch
from shared.cli.batch import add_batch_parser
from shared.cli.exit_codes import EXIT_FAILURES
from shared.errors import InputError, InvalidParameter, ModelNotConfigured
from shared.providers.base import Provider
from shared.services import build_analyzer
from tests.aoai_double import Reply

GOOD = ("astronaut.png", "chelsea.png", "rocket.jpg", "page.png", "no_time_for_that_tiny.gif")
OPTIONS = AnalysisOptions(prompt="What is it?", detail="low")


@pytest.fixture
def folder(corpus, tmp_path) -> Path:
    """Four images at the top, one in sub/, plus junk: text, a truncated JPEG, an empty and a hidden file."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for name in GOOD[:4]:
        shutil.copy(corpus / name, root / name)
    shutil.copy(corpus / GOOD[4], root / "sub" / GOOD[4])
    (root / "notes.txt").write_text("not an image")
    rocket = (corpus / "rocket.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(rocket[: len(rocket) // 3])
    (root / "empty.png").write_bytes(b"")
    shutil.copy(corpus / "logo.png", root / ".hidden.png")
    (root / ".cache").mkdir()
    shutil.copy(corpus / "logo.png", root / ".cache" / "logo.png")
    return root


GOOD_IDS = {"astronaut.png", "chelsea.png", "rocket.jpg", "page.png", "sub/no_time_for_that_tiny.gif"}
JUNK = {"notes.txt": 415, "broken.jpg": 422, "empty.png": 415}


@pytest.fixture
async def analyzer(make_settings):
    analyzer = build_analyzer(make_settings())
    yield analyzer
    await analyzer.aclose()


def lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # raises if any line is not valid JSON


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_analyses(analyzer: Analyzer) -> list[str]:
    """Wrap ``analyze`` to record the sha256 of each image it is asked for."""
    seen: list[str] = []
    original = analyzer.analyze

    async def analyze(data: bytes, options: AnalysisOptions) -> dict:
        seen.append(digest(data))
        return await original(data, options)

    analyzer.analyze = analyze  # type: ignore[method-assign]
    return seen


def test_iter_images_is_lazy_sorted_and_skips_what_is_not_a_candidate(folder, tmp_path):
    out = folder / "results.jsonl"
    out.write_text("")
    os.mkfifo(folder / "pipe")  # reading a FIFO would hang the run
    (folder / "dangling.png").symlink_to(folder / "missing.png")
    names = iter_images(folder, recursive=False, exclude=out)
    assert iter(names) is names  # a generator, not a list built up front
    assert next(names).name == "astronaut.png"
    assert [p.name for p in iter_images(folder, False, exclude=out)] == [
        "astronaut.png", "broken.jpg", "chelsea.png", "empty.png", "notes.txt", "page.png", "rocket.jpg"]
    recursive = [p.relative_to(folder).as_posix() for p in iter_images(folder, True, exclude=out)]
    assert "sub/no_time_for_that_tiny.gif" in recursive and not any(".cache" in p for p in recursive)
    with pytest.raises(InputError):
        next(iter_images(tmp_path / "nope", False))


async def test_every_file_gets_one_line(analyzer, aoai, folder, tmp_path):
    out = tmp_path / "results.jsonl"
    summary = await run_batch(analyzer, folder, out, OPTIONS, concurrency=3, recursive=True, progress=False)

    records = lines(out)
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(GOOD_IDS | set(JUNK))  # hidden files and .cache/ skipped, each id once
    by_id = {r["id"]: r for r in records}
    for key in GOOD_IDS:
        assert by_id[key]["success"] is True
        assert by_id[key]["result"]["analysis"].startswith("Test double analysis of 1 image(s) at detail=low")
        assert Path(by_id[key]["path"]) == folder / key
    for key, status in JUNK.items():
        error = by_id[key]["error"]
        assert by_id[key]["success"] is False and "result" not in by_id[key]
        assert error["status"] == status and error["type"].startswith("/problems/") and error["title"]
        assert error["detail"]
    assert len(aoai.requests) == len(GOOD_IDS)  # junk never reaches the model
    assert summary == BatchSummary(total=8, succeeded=5, failed=3, skipped=0,
                                   elapsed_seconds=summary.elapsed_seconds)


async def test_output_inside_the_folder_is_not_an_input(analyzer, folder):
    out = folder / "results.jsonl"
    await run_batch(analyzer, folder, out, OPTIONS, progress=False)
    assert "results.jsonl" not in {r["id"] for r in lines(out)}


async def test_existing_output_needs_resume_or_overwrite(analyzer, aoai, folder, tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text('{"id": "precious"}\n')
    with pytest.raises(InputError, match="--resume"):
        await run_batch(analyzer, folder, out, OPTIONS, progress=False)
    assert out.read_text() == '{"id": "precious"}\n' and aoai.requests == []
    await run_batch(analyzer, folder, out, OPTIONS, overwrite=True, progress=False)
    assert "precious" not in out.read_text() and len(lines(out)) == 7


async def test_bad_options_fail_once_before_any_work(analyzer, aoai, folder, tmp_path):
    with pytest.raises(InvalidParameter):
        await run_batch(analyzer, folder, tmp_path / "out.jsonl", AnalysisOptions(max_tokens=0), progress=False)
    assert not (tmp_path / "out.jsonl").exists() and aoai.requests == []


async def test_resume_after_cancellation_does_each_image_once(analyzer, aoai, corpus, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    good = [name for name in sorted(os.listdir(corpus)) if not name.endswith(".tif")]
    for name in good:
        shutil.copy(corpus / name, root / name)
    digests = {digest((root / name).read_bytes()): name for name in good}
    out = tmp_path / "results.jsonl"
    # Three answers, then every call stalls (until aoai.reset()): the cancel lands mid-run, whatever the timing.
    aoai.set_responder(lambda rec: None if len(aoai.requests) <= 3 else Reply.timeout(600))
    first = record_analyses(analyzer)
    task = asyncio.create_task(run_batch(analyzer, root, out, OPTIONS, concurrency=2, progress=False))
    async with asyncio.timeout(30):
        while not out.exists() or len(out.read_text().splitlines()) < 3:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    done_before = {r["id"] for r in lines(out)}  # whole, valid lines only
    assert len(done_before) == 3

    # The cancelled run's calls still finish (see Analyzer.cached): cut their stall short and let them,
    # then count only what the resumed run asks.
    aoai.reset()
    async with asyncio.timeout(30):
        while analyzer.in_flight:
            await asyncio.sleep(0.01)
    aoai.reset()
    del analyzer.analyze  # drop the first recorder
    second = record_analyses(analyzer)
    summary = await run_batch(analyzer, root, out, OPTIONS, concurrency=2, resume=True, progress=False)

    ids = Counter(r["id"] for r in lines(out))
    assert set(ids) == set(good) and set(ids.values()) == {1}
    assert {digests[d] for d in second}.isdisjoint(done_before)  # nothing already done was asked again
    assert len(aoai.requests) == len(second) == len(good) - len(done_before)
    assert summary.skipped == len(done_before) and summary.succeeded == len(good) - len(done_before)
    assert all(r["success"] for r in lines(out)) and len(first) >= len(done_before)


async def test_resume_drops_a_torn_last_line(analyzer, aoai, folder, tmp_path):
    out = tmp_path / "results.jsonl"
    await run_batch(analyzer, folder, out, OPTIONS, recursive=True, progress=False)
    text = out.read_text().splitlines(keepends=True)
    good_lines = [line for line in text if json.loads(line)["success"]]
    torn = json.loads(good_lines[-1])["id"]
    kept = [line for line in text if line != good_lines[-1]]
    kept.insert(2, "{not json\n")  # damage in the middle: dropped, its file (if any) redone
    kept.insert(3, kept[0])  # a duplicate line: dropped
    out.write_text("".join(kept) + good_lines[-1][: len(good_lines[-1]) // 2])  # a crash mid-write
    aoai.reset()
    seen = record_analyses(analyzer)

    summary = await run_batch(analyzer, folder, out, OPTIONS, recursive=True, resume=True, progress=False)

    ids = Counter(r["id"] for r in lines(out))
    assert set(ids) == GOOD_IDS | set(JUNK) and set(ids.values()) == {1}
    assert len(seen) == len(aoai.requests) == 1  # only the torn one; junk (terminal) is not retried
    assert summary.skipped == 7 and summary.succeeded == 1 and torn in ids


async def test_transient_failure_is_recorded_then_retried_on_resume(make_settings, aoai, folder, tmp_path):
    analyzer = build_analyzer(make_settings(VISION_MODEL_MAX_RETRIES="1"))
    out = tmp_path / "results.jsonl"
    aoai.enqueue(Reply.server_error(503), Reply.server_error(503))  # the first image: two attempts, both 503
    try:
        summary = await run_batch(analyzer, folder, out, OPTIONS, concurrency=1, progress=False)
        first = {r["id"]: r for r in lines(out)}
        assert first["astronaut.png"]["success"] is False
        assert first["astronaut.png"]["error"]["status"] == 503
        assert first["astronaut.png"]["error"]["type"] == "/problems/model-unavailable"
        assert summary.failed == 4 and summary.succeeded == 3

        aoai.reset()
        summary = await run_batch(analyzer, folder, out, OPTIONS, concurrency=1, resume=True, progress=False)
    finally:
        await analyzer.aclose()
    records = lines(out)
    assert Counter(r["id"] for r in records) == Counter({r["id"]: 1 for r in records})  # no duplicate ids
    assert {r["id"]: r["success"] for r in records}["astronaut.png"] is True
    assert len(aoai.requests) == 1 and summary.succeeded == 1 and summary.skipped == 6


async def test_over_limit_file_is_refused_unread(make_settings, aoai, folder, tmp_path, monkeypatch):
    import shared.batch as batch

    analyzer = build_analyzer(make_settings(VISION_MAX_IMAGE_BYTES="300000"))
    sizes = []
    real_read = batch._read_capped
    monkeypatch.setattr(batch, "_read_capped", lambda path, limit: sizes.append(len(data := real_read(path, limit)))
                        or data)
    try:
        await run_batch(analyzer, folder, tmp_path / "out.jsonl", OPTIONS, progress=False)
    finally:
        await analyzer.aclose()
    error = {r["id"]: r for r in lines(tmp_path / "out.jsonl")}["astronaut.png"]["error"]
    assert error["status"] == 413 and error["size_bytes"] == 791555
    assert max(sizes) <= 300000 and len(aoai.requests) == 3  # rocket, chelsea, page


async def test_progress_bar_gets_a_total_from_the_walk(analyzer, aoai, folder, tmp_path, monkeypatch):
    import shared.batch as batch

    stream, bars, real_tqdm = io.StringIO(), [], batch.tqdm

    def visible_bar(**kwargs):  # as on a terminal, but into a buffer
        bars.append(real_tqdm(**{**kwargs, "disable": False, "file": stream}))
        return bars[-1]

    monkeypatch.setattr(batch, "tqdm", visible_bar)
    await run_batch(analyzer, folder, tmp_path / "out.jsonl", OPTIONS, recursive=True)
    assert bars[0].total == 8 and bars[0].n == 8
    assert "8/8" in stream.getvalue() and "failed=3" in stream.getvalue()


class CountingProvider(Provider):
    """Wraps the real provider and records the most calls in flight at once."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.in_flight = self.peak = 0

    async def complete(self, request):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.inner.complete(request)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_concurrency_bound_is_respected(analyzer, aoai, corpus, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for index in range(9):
        shutil.copy(corpus / GOOD[index % len(GOOD)], root / f"{index}-{GOOD[index % len(GOOD)]}")
    aoai.default_reply = Reply.timeout(0.1)
    analyzer.provider = counting = CountingProvider(analyzer.provider)
    await run_batch(analyzer, root, tmp_path / "out.jsonl", OPTIONS, concurrency=3, progress=False)
    assert counting.peak == 3  # reached, never exceeded
    assert len(aoai.requests) == 9


async def test_producer_streams_through_a_bounded_queue(analyzer, aoai, tmp_path, monkeypatch, corpus):
    """The walk is pulled as the workers free up: it never runs far ahead of the analyses."""
    import shared.batch as batch

    monkeypatch.setattr(batch, "_WALK_CHUNK", 1)
    root = tmp_path / "in"
    root.mkdir()
    for index in range(40):
        shutil.copy(corpus / "page.png", root / f"{index:02d}.png")
    pulled, lead = 0, []
    analyzed = record_analyses(analyzer)
    real_iter = batch.iter_images

    def counting_iter(*args, **kwargs):
        nonlocal pulled
        for path in real_iter(*args, **kwargs):
            pulled += 1
            lead.append(pulled - len(analyzed))
            yield path

    monkeypatch.setattr(batch, "iter_images", counting_iter)
    reads = []
    real_read = batch._read_capped
    monkeypatch.setattr(batch, "_read_capped", lambda path, limit: reads.append(path) or real_read(path, limit))
    await run_batch(analyzer, root, tmp_path / "out.jsonl", OPTIONS, concurrency=2, progress=False)
    assert pulled == 40 and len(reads) == 40
    # queue of 2*2 + 2 workers holding one each + the one waiting at put(): nothing near the 40 files
    assert max(lead) <= 2 * 2 + 2 + 1


async def test_missing_model_configuration_stops_the_run(make_settings, folder, tmp_path):
    analyzer = build_analyzer(make_settings(AZURE_OPENAI_ENDPOINT="", VISION_PROVIDER="none"))
    out = tmp_path / "out.jsonl"
    try:
        with pytest.raises(ModelNotConfigured):
            await run_batch(analyzer, folder, out, OPTIONS, concurrency=1, progress=False)
    finally:
        await analyzer.aclose()
    assert all(not r["success"] for r in lines(out))  # only junk before the first image; file still valid


def batch_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_batch_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["batch", *argv])


@pytest.fixture
def env(aoai, monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(("AZURE_OPENAI", "OPENAI_", "VISION_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no local.settings.json here
    for name, value in {"AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_API_KEY": aoai.api_key,
                        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "VISION_CACHE_ENABLED": "false"}.items():
        monkeypatch.setenv(name, value)


async def test_handler_exit_codes_summary_and_resume(env, aoai, folder, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    args = batch_args(str(folder), "--out", str(out), "--recursive", "--detail", "low", "--json-summary", "--quiet")
    assert await args.handler(args) == EXIT_FAILURES  # junk failed
    captured = capsys.readouterr()
    assert "done: 5 succeeded, 3 failed, 0 skipped in" in captured.err
    assert json.loads(captured.out)["succeeded"] == 5
    with pytest.raises(InputError, match="already exists"):  # the CLI turns this into exit code 2
        await args.handler(args)
    resume = batch_args(str(folder), "--out", str(out), "--recursive", "--resume", "--quiet")
    assert await resume.handler(resume) == 0
    assert "0 succeeded, 0 failed, 8 skipped" in capsys.readouterr().err
    assert len(aoai.requests) == 5
    with pytest.raises(SystemExit):
        batch_args(str(folder), "--out", str(out), "--resume", "--overwrite")


async def test_handler_all_good_exits_zero(env, aoai, corpus, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(corpus / "rocket.jpg", root / "rocket.jpg")
    args = batch_args(str(root), "--out", str(tmp_path / "o.jsonl"), "--max-tokens", "50", "--quiet")
    assert await args.handler(args) == 0
    assert aoai.last_request.body["max_tokens"] == 50
