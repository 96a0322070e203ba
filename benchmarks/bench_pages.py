"""Benchmark reading a 20-page PDF for a model: time per page and peak memory, against the naive way.

Why: invoices and statements arrive as PDFs of many pages, and a Function instance has a few GiB of
memory shared by every request it runs. What matters is how long each page takes to become the
image the model is sent, and how much memory a whole document costs while it does.

Run from the repository root (about a minute)::

    .venv/bin/python benchmarks/bench_pages.py [--pages 20] [--detail high] [--repeat 3]

All three start from the same PDF bytes (``--pages`` A4 pages, each with text, a table and a
photo-like picture, written with fpdf2) and end with one JPEG per page at the detail's size:

* **ours**: :func:`shared.documents.reader.inspect_document` (structure checks, no rendering), then
  :func:`shared.documents.prepare.prepare_pages`: each page rendered by PDFium straight at the size the
  model service will look at (at ``high``: short side 768), its text layer read, encoded, and its
  bitmap dropped before the next page;
* **ours-full**: the same at the detail's full size (long side 2048 at ``high``), as the offline
  engine gets it: the rendering cost without the service-view saving;
* **naive**: what a first implementation does (``pdf2image``-style): every page rendered at 300 dpi
  into a list, then each resized to the detail's size and encoded.

Each way runs in a fresh interpreter (so peak memory is its own: ``VmHWM``, the resident high-water
mark, which counts PDFium's and Pillow's C allocations that ``tracemalloc`` cannot see); the time is
the best of ``--repeat`` runs inside it.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_pdf(pages: int) -> bytes:
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (900, 600))
    draw = ImageDraw.Draw(picture)
    for y in range(600):  # a gradient with stripes: compresses like a photo, not like a flat colour
        draw.line([(0, y), (899, y)], fill=(y % 256, (3 * y) % 256, 255 - y % 256))
    for x in range(0, 900, 7):
        draw.line([(x, 0), (x + 300, 599)], fill=(255 - x % 256, x % 256, 128), width=2)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    pdf = FPDF(unit="pt", format="A4")
    pdf.set_auto_page_break(False)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", size=18)
        pdf.set_xy(40, 40)
        pdf.cell(text=f"Statement page {number} of {pages}")
        pdf.set_font("Helvetica", size=10)
        for row in range(30):
            pdf.set_xy(40, 80 + row * 14)
            pdf.cell(text=f"2024-03-{row % 28 + 1:02d}   Item {number}-{row:02d}   reference RF{number:03d}{row:04d}"
                          f"   {row * 3.5:10.2f}   {row * 7.25:10.2f}")
        buffer.seek(0)
        pdf.image(buffer, x=40, y=520, w=515)
    return bytes(pdf.output())


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ours(data: bytes, detail: str, to_service_view: bool = True) -> int:
    from shared.documents.prepare import prepare_pages
    from shared.documents.reader import inspect_document

    info = inspect_document(data, "PDF", pages=None, max_pages=10_000, max_pixels=50_000_000)
    pages = prepare_pages(data, info, detail, model="gpt-4o", jpeg_quality=85, to_service_view=to_service_view)
    return sum(len(page.image.data) for page in pages)


def ours_full(data: bytes, detail: str) -> int:
    return ours(data, detail, to_service_view=False)


def naive(data: bytes, detail: str) -> int:
    import pypdfium2 as pdfium
    from PIL import Image

    from shared.imaging import DETAIL_MAX_SIDE, target_size

    document = pdfium.PdfDocument(data)
    rendered = [document[index].render(scale=300 / 72).to_pil() for index in range(len(document))]
    total = 0
    for image in rendered:
        size = target_size(image.width, image.height, DETAIL_MAX_SIDE[detail])
        buffer = io.BytesIO()
        image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=85)
        total += buffer.tell()
    document.close()
    return total


def measure(mode: str, pdf_path: str, detail: str, repeat: int, pages: int) -> None:
    """In a fresh interpreter: the best time of ``repeat`` runs, the bytes produced, the peak RSS."""
    data = Path(pdf_path).read_bytes()
    work = {"ours": ours, "ours-full": ours_full, "naive": naive}[mode]
    best = float("inf")
    produced = 0
    for _ in range(repeat):
        started = time.perf_counter()
        produced = work(data, detail)
        best = min(best, time.perf_counter() - started)
    print(json.dumps({"mode": mode, "seconds": best, "ms_per_page": 1000 * best / pages,
                      "jpeg_bytes": produced, "peak_rss_mib": peak_rss_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--detail", default="high", choices=("low", "auto", "high"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", choices=("ours", "ours-full", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--pdf", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        measure(args.mode, args.pdf, args.detail, args.repeat, args.pages)
        return
    with tempfile.TemporaryDirectory() as folder:
        pdf_path = Path(folder) / "statement.pdf"
        pdf_path.write_bytes(make_pdf(args.pages))
        print(f"{args.pages}-page PDF, {pdf_path.stat().st_size / 1024:.0f} KiB, detail={args.detail}, "
              f"best of {args.repeat}")
        rows = []
        for mode in ("ours", "ours-full", "naive"):
            output = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--pdf", str(pdf_path), "--detail", args.detail,
                 "--repeat", str(args.repeat), "--pages", str(args.pages)],
                capture_output=True, text=True, check=True, cwd=ROOT).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
    print(f"{'way':<10}{'ms/page':>10}{'total s':>10}{'peak RSS MiB':>15}{'JPEG KiB':>11}")
    for row in rows:
        print(f"{row['mode']:<10}{row['ms_per_page']:>10.0f}{row['seconds']:>10.2f}{row['peak_rss_mib']:>15.0f}"
              f"{row['jpeg_bytes'] / 1024:>11.0f}")
    ours_row, _, naive_row = rows
    print(f"ours: {naive_row['seconds'] / ours_row['seconds']:.1f}x faster, "
          f"{naive_row['peak_rss_mib'] / ours_row['peak_rss_mib']:.1f}x less peak memory")


if __name__ == "__main__":
    main()
