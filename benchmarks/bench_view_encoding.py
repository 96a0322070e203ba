"""How to encode the service's view: bytes and fidelity of each JPEG setting, by how much the service would
have shrunk the naive image.

Why: sent at the view, our image has no service shrink left to average its JPEG noise away and restore its
chroma, so it must be quantised finer than the naive image; but it must also stay smaller than the naive
image, which has the shrink squared as many pixels. ``shared.imaging.VIEW_ENCODING`` (the tables' scale by
shrink) and ``VIEW_MIN_SHRINK`` (below which the naive size is sent) were read off this table. The settings:
libjpeg's own tables at a quality ("q94"), and the view's tables (``shared.imaging.encoding.view_tables``:
libjpeg's base tables pulled halfway to their mean) at a scale ("t0.07").

Run from the repository root (after ``bench_prepare.py`` has built ``benchmarks/.data/``)::

    .venv/bin/python benchmarks/bench_view_encoding.py [--images coffee_12mp.png,hubble_deep_field_12mp.png]

Each source is fitted to sizes whose naive image (2048 px long side at ``high``) the service would shrink
by 1.07x to 2.67x, saved as JPEG quality 92, and prepared at ``high`` with every setting forced on the view.
A cell is "bytes ours / naive, PSNR ours - naive (dB), SSIM ours - naive" of the service's view against the ideal
(bench_prepare's floating-point LANCZOS); ``*`` marks a setting that is both no larger and no more than 0.1 dB
worse.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_prepare import DATA, MODEL, baseline, ideal, psnr, ssim  # noqa: E402

from shared.imaging import prepare as imaging  # noqa: E402 - the module itself: its settings are patched
from shared.imaging.encoding import JpegEncoding, view_tables  # noqa: E402
from shared.tokens import service_view  # noqa: E402

SIZES = [(4000, 1600), (4000, 1875), (1365, 1024), (4000, 2250), (4000, 2400), (4000, 2667), (4000, 2800),
         (4000, 3000), (4000, 3200), (4000, 3400), (3600, 3240), (3000, 3000)]  # fmt: skip
SETTINGS = {f"q{q}": JpegEncoding("4:4:4", quality=q) for q in (94, 97)} | {
    f"t{scale}": JpegEncoding("4:4:4", tables=view_tables(scale, 85))
    for scale in (0.13, 0.12, 0.11, 0.1, 0.09, 0.085, 0.08, 0.07, 0.06, 0.05, 0.045, 0.04)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="coffee_12mp.png,astronaut_12mp.png,hubble_deep_field_12mp.png",
                        help="files in benchmarks/.data")
    args = parser.parse_args()
    print("| size | image | shrink | naive KB, dB | " + " | ".join(SETTINGS) + " | kept |")
    print("|" + "---|" * (len(SETTINGS) + 5))
    for size in SIZES:
        for name in args.images.split(","):
            with Image.open(DATA / name) as source:
                fitted = ImageOps.fit(source.convert("RGB"), size, Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            fitted.save(buffer, "JPEG", quality=92)
            data = buffer.getvalue()
            naive, naive_size = baseline(data, "high")
            view = service_view(*naive_size, "high", MODEL)
            reference = ideal(data, view)
            naive_db, naive_ssim = psnr(naive, reference), ssim(naive, reference)

            def cell(sent: bytes, mark: bool = True) -> str:
                ratio, delta = len(sent) / len(naive), psnr(sent, reference) - naive_db  # noqa: B023
                good = mark and ratio <= 1 and delta >= -0.1
                return f"{ratio:.2f}, {delta:+.1f}, {ssim(sent, reference) - naive_ssim:+.4f}{'*' if good else ''}"  # noqa: B023

            cells = [cell(prepared_with(data, encoding)) for encoding in SETTINGS.values()]
            kept = imaging.prepare_image(data, "high", model=MODEL).data
            shrink = max(naive_size) / max(view)
            print(f"| {size[0]}x{size[1]} | {name} | {shrink:.2f} | {len(naive) / 1024:.0f}, {naive_db:.1f} | "
                  + " | ".join(cells) + f" | {cell(kept, mark=False)} |", flush=True)


def prepared_with(data: bytes, encoding: JpegEncoding) -> bytes:
    """``prepare_image`` at ``high`` sending the view itself, encoded as ``encoding`` says."""
    saved = imaging.VIEW_MIN_SHRINK, imaging.view_encoding
    imaging.VIEW_MIN_SHRINK = 1.0  # always the view, even where the naive size would be sent
    imaging.view_encoding = lambda shrink, jpeg_quality: encoding
    try:
        return imaging.prepare_image(data, "high", model=MODEL).data
    finally:
        imaging.VIEW_MIN_SHRINK, imaging.view_encoding = saved


if __name__ == "__main__":
    main()
