"""Benchmark a large backlog against a deployment quota: share of the quota used, images lost.

Why: the first thing users do is drop thousands of images on one deployment. Its tokens-per-minute
quota, not our code, sets the pace; what matters is using all of it without losing images to 429s.

Run from the repository root (4-5 minutes; Azurite from ``scripts/setup`` for the blob row)::

    .venv/bin/python benchmarks/bench_quota.py [--images 600] [--tpm 300000] [--latency 0.3] [--no-blob]
    .venv/bin/python benchmarks/bench_quota.py --only blob --only "limiter (VISION"   # two rows

The Azure OpenAI test double (``tests/aoai_double.py``) enforces the quota the way Azure does
(``tests/quota_double.py``: charge on arrival = prompt estimate + ``max_tokens``, sliding 10 s window,
RPM at 6 per 1,000 TPM, 429 with ``retry-after-ms``) and answers after a fixed latency. The same
``--images`` distinct small PNGs (``detail=low``, ``max_tokens=300``: about 410 tokens each) go
through, in the same run:

* **batch, limiter**: ``shared.batch.run_batch`` at ``--concurrency`` 16 with ``VISION_TPM_LIMIT``
  set to the quota (as the Bicep deploys it);
* **batch, learning**: the same with no limit configured (learnt from ``x-ratelimit-*`` headers);
* **blob process, limiter**: the blob pipeline's backfill (``shared.blob.watch.process``, what
  ``python -m shared process`` runs) at ``--concurrency`` over the same images uploaded to a private
  Azurite (``tests/azurite.py``) with metadata asking for the same prompt, detail and ``max_tokens``;
  the upload is not timed;
* **SDK retries only**: what the service did before the limiter: 16 at a time, the openai SDK's
  own retries (``max_retries=2``) and nothing else;
* **naive**: the seed's client: a semaphore of 10, three tries with 1, 2, 4 s sleeps.

A 429 or a lost connection that the plain clients give up on is a failed image.

Columns: wall time; **share of the quota**: tokens admitted per minute, from the first admission to
one window past the last, over the quota (100% = every window full); failed images (for the blob
row: every blob without a ``succeeded`` result); 429s received; CPU time of this process per image
(the double's share included, the same for every row; Azurite's, a separate process, not).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.analysis_options import AnalysisOptions  # noqa: E402
from shared.batch import run_batch  # noqa: E402
from shared.blob.watch import process  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.quota.breaker import forget_process_breakers  # noqa: E402
from shared.quota.limiter import forget_process_limiters  # noqa: E402
from shared.services import Services, build_analyzer  # noqa: E402
from tests.aoai_double import AzureOpenAIDouble  # noqa: E402
from tests.azurite import Azurite  # noqa: E402
from tests.quota_double import WINDOW_SECONDS, AzureQuota  # noqa: E402

PROMPT = "Describe this image"
MAX_TOKENS = 300
OPTIONS = AnalysisOptions(prompt=PROMPT, detail="low", max_tokens=MAX_TOKENS)
#: What a blob's metadata says to ask for: the batch rows' prompt, detail and max_tokens.
BLOB_METADATA = {"prompt": PROMPT, "detail": "low", "max_tokens": str(MAX_TOKENS)}


def make_images(folder: Path, count: int) -> list[bytes]:
    images = []
    for index in range(count):
        image = Image.new("RGB", (64, 48), ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256))
        image.putpixel((index % 64, index // 64 % 48), (255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        (folder / f"img{index:05d}.png").write_bytes(buffer.getvalue())
        images.append(buffer.getvalue())
    return images


def quota_share(quota: AzureQuota, tpm: int) -> float:
    """Tokens admitted per minute over the quota, from the first admission to one window past the last.

    The quota allows one window's worth in any 10 s, so N windows admit at most N windows' worth: the
    last admission's window is counted whole, and a run that kept the deployment full scores 100%.
    """
    if not quota.admitted:
        return 0.0
    span = quota.admitted[-1][0] - quota.admitted[0][0] + WINDOW_SECONDS
    return sum(charge for _, charge in quota.admitted) * 60 / span / tpm


def our_settings(double: AzureOpenAIDouble, tpm: int | None, **values: str) -> Settings:
    """The service's settings against the double, the cache off; a fresh process's limiters and breakers."""
    forget_process_limiters()
    forget_process_breakers()
    values = {"AZURE_OPENAI_ENDPOINT": double.endpoint, "AZURE_OPENAI_API_KEY": double.api_key,
              "AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "VISION_CACHE_ENABLED": "false", "VISION_LOCAL_FALLBACK": "off",
              "VISION_PROVIDER": "azure_openai", **values}
    if tpm:
        values["VISION_TPM_LIMIT"] = str(tpm)
    return Settings.from_mapping(values)


async def run_ours(double: AzureOpenAIDouble, folder: Path, tpm: int | None, concurrency: int) -> int:
    analyzer = build_analyzer(our_settings(double, tpm))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            summary = await run_batch(analyzer, folder, Path(scratch) / "out.jsonl", OPTIONS,
                                      concurrency=concurrency, progress=False)
        finally:
            await analyzer.aclose()
    return summary.failed


def upload_blobs(pipeline, images: list[bytes]) -> None:
    """Drop the images into the pipeline's input container (not timed), in parallel like a user's upload."""
    pipeline.ensure_containers()

    def put(index: int) -> None:
        pipeline.inputs.get_blob_client(f"img{index:05d}.png").upload_blob(
            images[index], overwrite=True, metadata=BLOB_METADATA)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(len(images))))


async def run_blob(double: AzureOpenAIDouble, azurite: Azurite, images: list[bytes], tpm: int,
                   concurrency: int) -> tuple[int, float, float]:
    """``process`` over a fresh container of the images: (failed images, seconds, CPU seconds), upload not included."""
    tag = uuid.uuid4().hex[:10]
    settings = our_settings(double, tpm, AzureWebJobsStorage=azurite.connection_string,
                            VISION_INPUT_CONTAINER=f"in-{tag}", VISION_RESULTS_CONTAINER=f"out-{tag}",
                            VISION_QUARANTINE_CONTAINER=f"bad-{tag}", VISION_SCHEMAS_CONTAINER=f"schemas-{tag}")
    async with Services(settings) as services:
        pipeline = services.pipeline
        await asyncio.to_thread(upload_blobs, pipeline, images)
        started, cpu_started = time.monotonic(), time.process_time()
        summary = await process(pipeline, concurrency=concurrency, progress=False)
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    return len(images) - summary.counts["succeeded"], elapsed, cpu


async def timed(run: Awaitable[int]) -> tuple[int, float, float]:
    """(failed images, seconds, CPU seconds of this process)."""
    started, cpu_started = time.monotonic(), time.process_time()
    failed = await run
    return failed, time.monotonic() - started, time.process_time() - cpu_started


async def run_client(double: AzureOpenAIDouble, images: list[bytes], *, concurrency: int, sdk_retries: int,
                     own_tries: int) -> int:
    """A plain client: ``concurrency`` at once, the SDK's retries, then ``own_tries`` with 2^n s sleeps."""
    import base64

    client = openai.AsyncAzureOpenAI(azure_endpoint=double.endpoint, api_key=double.api_key,
                                     api_version="2024-10-21", max_retries=sdk_retries)
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(data: bytes) -> None:
        nonlocal failed
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        messages = [{"role": "user", "content": [{"type": "text", "text": "Describe this image"},
                                                 {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]
        async with gate:
            for attempt in range(own_tries):
                try:
                    await client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=MAX_TOKENS)
                    return
                except (openai.RateLimitError, openai.APIConnectionError):  # a 429, or a connection lost
                    if attempt + 1 < own_tries:
                        await asyncio.sleep(2 ** attempt)
            failed += 1

    try:
        await asyncio.gather(*(one(data) for data in images))
    finally:
        await client.close()
    return failed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--tpm", type=int, default=300_000)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the double takes per answer")
    parser.add_argument("--concurrency", type=int, default=16, help="images at once, batch and blob rows")
    parser.add_argument("--no-blob", action="store_true", help="skip the blob row (no Azurite needed)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only the rows whose name contains TEXT (repeatable)")
    args = parser.parse_args()

    rows = []
    with contextlib.ExitStack() as stack:
        double = stack.enter_context(AzureOpenAIDouble())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        images = make_images(folder, args.images)
        runs: list[tuple[str, Callable[[], Awaitable[tuple[int, float, float]]]]] = [
            ("batch, limiter (VISION_TPM_LIMIT)", lambda: timed(run_ours(double, folder, args.tpm, args.concurrency))),
            ("batch, limiter learning the quota", lambda: timed(run_ours(double, folder, None, args.concurrency))),
        ]
        if not args.no_blob and (not args.only or any(text in "blob `process`" for text in args.only)):
            azurite = Azurite().start()
            stack.callback(azurite.stop)
            runs.append(("blob `process`, limiter (VISION_TPM_LIMIT)",
                         lambda: run_blob(double, azurite, images, args.tpm, args.concurrency)))
        runs += [
            ("SDK retries only (before)", lambda: timed(run_client(double, images, concurrency=args.concurrency,
                                                                   sdk_retries=2, own_tries=1))),
            ("naive: semaphore 10, 3 tries, 2^n s", lambda: timed(run_client(double, images, concurrency=10,
                                                                             sdk_retries=0, own_tries=3))),
        ]
        for name, run in runs:
            if args.only and not any(text in name for text in args.only):
                continue
            double.reset()
            quota = AzureQuota(double, tpm=args.tpm, latency=args.latency)
            double.set_responder(quota)
            failed, elapsed, cpu = await run()
            cpu_ms = cpu * 1000 / args.images
            rows.append((name, elapsed, quota_share(quota, args.tpm), failed, quota.throttled, cpu_ms))
            print(f"  {name}: {elapsed:.1f} s, {rows[-1][2]:.1%} of the quota, {failed} failed, "
                  f"{quota.throttled} throttled, {cpu_ms:.0f} ms CPU per image", file=sys.stderr)

    print(f"\n{args.images} images, {args.tpm:,} TPM quota ({args.tpm * 6 // 1000:,} RPM), "
          f"{args.latency} s latency, detail=low, max_tokens={MAX_TOKENS}\n")
    print("| path | wall time | share of the quota | failed images | 429s received | CPU ms per image |")
    print("|---|---|---|---|---|---|")
    for name, elapsed, share, failed, throttled, cpu_ms in rows:
        print(f"| {name} | {elapsed:.1f} s | {share:.0%} | {failed} | {throttled} | {cpu_ms:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
