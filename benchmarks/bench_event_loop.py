"""Benchmark how long ``/api/health`` waits while large uploads are hashed and prepared on the same app.

Why: the HTTP routes and the blob trigger share one event loop per worker. CPU work on that loop (hashing
a 20 MiB upload, decoding and resizing a 12 MP photo, decoding a large JSON body) stalls every other
request for as long as it runs. The service does that work in worker threads (and hashes raw uploads as
they stream in); this measures what that buys.

Run from the repository root (about a minute)::

    .venv/bin/python benchmarks/bench_event_loop.py [--uploads 24] [--concurrency 4] [--size 4000x3000]

The real app (``shared.http.app.create_app``) is served by uvicorn on a loopback port in this process,
with the real openai SDK against the Azure OpenAI test double (instant answers, cache off), so the time
is the service's own work. A client thread sends ``--uploads`` distinct 12 MP JPEGs (``detail=high``)
to ``POST /api/analyze``, ``--concurrency`` at a time, as raw bodies and as multipart, while another
probes ``GET /api/health`` every 10 ms; both rows run in the same process, one after the other:

* **ours**: the service as shipped;
* **on the loop (before)**: the same app with ``asyncio.to_thread`` and the loop's executor made to run
  their function inline on the event loop: what the service did before the work moved to threads.

Columns: uploads per second; health latency median, 99th percentile and worst while uploads ran (the
idle row: the same probes with nothing else running, the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.config import Settings  # noqa: E402
from shared.http.app import create_app  # noqa: E402
from tests.aoai_double import AzureOpenAIDouble, Reply  # noqa: E402
from tests.azurite import free_port  # noqa: E402


def make_photos(count: int, size: tuple[int, int]) -> list[bytes]:
    """Distinct noisy photos (like a phone's): the cache would merge equal ones, and noise is hard to shrink."""
    base = Image.effect_noise(size, 40).convert("RGB")
    photos = []
    for index in range(count):
        image = base.copy()
        image.putpixel((index, index), (255, 0, 0))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


@contextlib.contextmanager
def work_on_the_loop() -> Iterator[None]:
    """``asyncio.to_thread`` and ``run_in_executor`` run their function inline: the 'before' row."""
    real_to_thread = asyncio.to_thread
    real_run_in_executor = asyncio.BaseEventLoop.run_in_executor

    async def inline(function, /, *args, **kwargs):
        return function(*args, **kwargs)

    def run_inline(self, executor, function, *args):
        future = self.create_future()
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # handed to the awaiting caller, as an executor would
            future.set_exception(exc)
        return future

    asyncio.to_thread = inline
    asyncio.BaseEventLoop.run_in_executor = run_inline
    try:
        yield
    finally:
        asyncio.to_thread = real_to_thread
        asyncio.BaseEventLoop.run_in_executor = real_run_in_executor


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """The app under uvicorn on a loopback port, in a thread of this process; its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                            loop="asyncio", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                break
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


def idle_latencies(url: str, probes: int = 100) -> list[float]:
    """Health latencies in ms with nothing else running: the probe's own cost, the floor of every row."""
    latencies = []
    with httpx.Client(timeout=60) as client:
        for _ in range(probes):
            started = time.perf_counter()
            client.get(f"{url}/api/health").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    return latencies


def run_row(url: str, photos: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """(uploads per second, health latencies in ms while the uploads ran)."""
    done = threading.Event()
    latencies: list[float] = []

    def probe() -> None:
        with httpx.Client(timeout=60) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get(f"{url}/api/health").raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
                time.sleep(0.01)

    def send(index: int) -> None:
        query = {"detail": "high", "max_tokens": "20", "prompt": "What is it?"}
        with httpx.Client(timeout=120) as client:
            if index % 2:
                response = client.post(f"{url}/api/analyze", params=query, content=photos[index],
                                       headers={"content-type": "image/jpeg"})
            else:
                response = client.post(f"{url}/api/analyze", data=query,
                                       files={"file": ("photo.jpg", photos[index], "image/jpeg")})
            response.raise_for_status()

    prober = threading.Thread(target=probe)
    started = time.perf_counter()
    prober.start()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, range(len(photos))))
    finally:
        done.set()
        prober.join()
    return len(photos) / (time.perf_counter() - started), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--size", default="4000x3000", help="photo size, WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    photos = make_photos(args.uploads, (width, height))
    print(f"{args.uploads} JPEGs of {width}x{height} ({sum(map(len, photos)) / len(photos) / 2**20:.1f} MiB each), "
          f"{args.concurrency} at a time, half raw and half multipart, detail=high\n")
    rows = []
    with AzureOpenAIDouble() as double:
        double.default_reply = Reply.ok("A photo.")
        settings = Settings.from_mapping({
            "AZURE_OPENAI_ENDPOINT": double.endpoint, "AZURE_OPENAI_API_KEY": double.api_key,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o", "VISION_PROVIDER": "azure_openai", "VISION_CACHE_ENABLED": "false",
            "VISION_LOCAL_FALLBACK": "off"})
        for name, context in (("idle (no uploads)", contextlib.nullcontext()), ("ours", contextlib.nullcontext()),
                              ("on the loop (before)", work_on_the_loop())):
            with context, serve(settings) as url:
                if name.startswith("idle"):
                    rate, latencies = 0.0, idle_latencies(url)
                else:
                    rate, latencies = run_row(url, photos, args.concurrency)
            ordered = sorted(latencies)
            rows.append((name, rate, statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))], ordered[-1]))
            print(f"  {name}: {rate:.1f} uploads/s, health median {rows[-1][2]:.1f} ms, "
                  f"p99 {rows[-1][3]:.0f} ms, worst {rows[-1][4]:.0f} ms ({len(ordered)} probes)", file=sys.stderr)
    print("| row | uploads/s | health median ms | health p99 ms | health worst ms |")
    print("|---|---|---|---|---|")
    for name, rate, median, p99, worst in rows:
        print(f"| {name} | {rate:.1f} | {median:.1f} | {p99:.0f} | {worst:.0f} |")


if __name__ == "__main__":
    main()
