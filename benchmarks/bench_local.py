"""Benchmark the offline engine (``shared.offline.engine``, ``shared.offline.documents``): load time, seconds a page.

Why: the ``local`` provider is what a fresh clone runs, and OCR is CPU-bound; these figures say what a
request costs in latency on a given machine, and whether a Consumption-plan Function (1 vCPU per
instance) can keep up with a blob upload rate.

Run from the repository root::

    .venv/bin/python benchmarks/bench_local.py [--repeat N]

Pages (generated in memory, no files written):

* **A4 text page, 150 dpi**: 1240x1754, 44 lines of 26 px text (a typical scanned page).
* **A4 text page, 300 dpi, prepared**: 2480x3508 of 52 px text, through ``prepare_image`` at ``high``
  (1448x2048 JPEG), which is what the provider receives for an OCR request.
* **invoice**: the 1240x1100 invoice of ``tests/test_local_engine.py``'s kind, OCR + ``invoice_from_boxes``.
* **corpus page.png**: the corpus's 384x191 scanned snippet.
* **provider, A4 150 dpi**: ``LocalProvider.complete`` with ``task="ocr"`` on the prepared page (JPEG
  decode, OCR in a worker thread, reading order), i.e. what a request pays after ``prepare``.

Each row: one warm-up, then the median (and min/max) of ``--repeat`` runs. "Engine load" is measured
first, in this fresh process: importing ``rapidocr_onnxruntime`` (numpy, OpenCV, ONNX Runtime) and
building the three ONNX sessions. Peak RSS (Linux VmHWM) is printed last: OCR of a full page is
memory-hungry (detection runs at page resolution), which matters on a 1.5 GB Consumption instance.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.imaging import prepare_image  # noqa: E402
from shared.offline import documents, engine  # noqa: E402
from shared.providers.base import VisionRequest  # noqa: E402
from shared.providers.local import LocalProvider  # noqa: E402

PROSE = ("the quick brown fox jumps over a lazy dog while invoices tables and receipts are read offline "
         "by a small engine that never calls the network total amount due date reference number")
WORDS = PROSE.split(" ")
FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in FONTS:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def text_page(width: int, height: int, size: int) -> Image.Image:
    """A page of pseudo-prose: margins of 1/12 of the width, line pitch 1.5x the font size."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    face, margin, pitch = font(size), width // 12, int(size * 1.5)
    y, index = margin, 0
    while y + pitch < height - margin:
        words: list[str] = []
        while draw.textlength(" ".join([*words, WORDS[index % len(WORDS)]]), font=face) < width - 2 * margin:
            words.append(WORDS[index % len(WORDS)])
            index += 1
        draw.text((margin, y), " ".join(words), fill=(20, 20, 20), font=face)
        y += pitch
    return page


def invoice_page() -> Image.Image:
    page = Image.new("RGB", (1240, 1100), "white")
    draw = ImageDraw.Draw(page)
    draw.text((80, 40), "ACME Widgets Ltd", fill="black", font=font(44))
    rows = [(80, 230, "Invoice No: INV-2024-0042"), (80, 280, "Date: 2024-03-15"), (80, 330, "Due: 15/04/2024"),
            (80, 430, "Description"), (600, 430, "Qty"), (760, 430, "Unit price"), (1000, 430, "Total"),
            (80, 480, "Blue widget"), (600, 480, "2"), (760, 480, "30.00"), (1000, 480, "60.00"),
            (700, 630, "Subtotal"), (1000, 630, "60.00"), (700, 680, "Tax"), (1000, 680, "12.00"),
            (700, 730, "Total"), (1000, 730, "72.00"), (700, 780, "Currency: EUR")]
    for x, y, text in rows:
        draw.text((x, y), text, fill="black", font=font(30))
    return page


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def timed(run: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    result = run()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="measured runs per page, after one warm-up")
    args = parser.parse_args()

    started = time.perf_counter()
    import rapidocr_onnxruntime  # noqa: F401 - the import is part of what is measured

    imported = time.perf_counter() - started
    started = time.perf_counter()
    engine.get_engine()
    built = time.perf_counter() - started
    built_rss = peak_rss_mib()

    a4 = text_page(1240, 1754, 26)
    a4_300 = prepare_image(png(text_page(2480, 3508, 52)), "high")
    invoice = png(invoice_page())
    corpus = (ROOT / "tests" / "fixtures" / "images" / "page.png").read_bytes()
    provider, prepared_a4 = LocalProvider(), prepare_image(png(a4), "high")
    request = VisionRequest(prompt="Describe this image", images=(prepared_a4,), max_tokens=1, task="ocr")

    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("A4 text page, 150 dpi", "1240x1754", lambda: engine.reading_order(engine.ocr(a4))),
        ("A4 text page, 300 dpi, prepared (high)", f"{a4_300.width}x{a4_300.height}",
         lambda: engine.reading_order(engine.ocr(a4_300.data))),
        ("invoice + invoice_from_boxes", "1240x1100",
         lambda: documents.invoice_from_boxes(engine.ocr(invoice))[0]),
        ("corpus page.png", "384x191", lambda: engine.reading_order(engine.ocr(corpus))),
        ("provider, A4 150 dpi, task=ocr", f"{prepared_a4.width}x{prepared_a4.height}",
         lambda: asyncio.run(provider.complete(request)).text.splitlines()),
    ]
    print(f"Machine: {os.cpu_count()} CPUs, {platform.machine()} {platform.system()}, "
          f"Python {platform.python_version()}, rapidocr-onnxruntime {metadata.version('rapidocr-onnxruntime')}, "
          f"onnxruntime {metadata.version('onnxruntime')}, OpenCV {cv_version()}, Pillow {metadata.version('pillow')}")
    print(f"\nEngine load: import {imported:.2f} s + build sessions {built:.2f} s = {imported + built:.2f} s\n")
    print("| page | size | s/page median | min | max | text lines | runs |\n|---|---|---|---|---|---|---|")
    for name, size, run in cases:
        times, result = timed(run, args.repeat)
        lines = len(result) if isinstance(result, list) else "-"
        print(f"| {name} | {size} | **{statistics.median(times):.2f}** | {min(times):.2f} | {max(times):.2f} "
              f"| {lines} | {args.repeat} |", flush=True)
    print(f"\nPeak RSS of this process: {peak_rss_mib()} (after the engine was built: {built_rss})")


def peak_rss_mib() -> str:
    """VmHWM (peak resident set, C allocations included) on Linux; "n/a" elsewhere."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return "n/a"
    return f"{int(status.split('VmHWM:')[1].split()[0]) / 1024:.0f} MiB"


def cv_version() -> str:
    import cv2

    return str(cv2.__version__)


if __name__ == "__main__":
    main()
