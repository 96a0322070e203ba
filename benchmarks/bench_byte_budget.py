"""The view at ``high`` fitted to the naive image's bytes, image by image (``shared.imaging.byte_budget``).

Why: the ladder of tables (``VIEW_ENCODING``) is set by the service's shrink alone and tuned on the photo with
the most fine detail, so smooth photos and, most of all, grainy ones came in far under the naive image's bytes,
and grain under its view. This prints, per image, the naive image (KB / PSNR dB / SSIM of the service's view
against the ideal), the view with the ladder's tables only, the view as sent (refitted where the ladder was far
under the estimate, or the naive image where the view did not hold: ``shared.imaging.view_check``), how far the
estimate was from the naive image's real bytes, and what the estimate cost. "Ladder only" has no budget, so
no refit and no check; grain under a small shrink is decoded in full there too.

Run from the repository root (after ``bench_prepare.py`` has built ``benchmarks/.data/``, ~1 minute)::

    .venv/bin/python benchmarks/bench_byte_budget.py [--images coffee_12mp.jpg,hubble_deep_field_12mp.jpg]
    .venv/bin/python benchmarks/bench_byte_budget.py --model gpt-4.1-mini   # the patch family
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_prepare import DATA, MODEL, baseline, ideal, psnr, ssim, with_grain  # noqa: E402

from shared.imaging import byte_budget  # noqa: E402
from shared.imaging import prepare as imaging  # noqa: E402
from shared.tokens import service_view  # noqa: E402

IMAGES = ",".join(
    f"{stem}_12mp{suffix}"
    for suffix in (".jpg", "_grain.jpg")
    for stem in ("coffee", "astronaut", "hubble_deep_field", "chelsea")
) + ",coffee_4000x2250.jpg,astronaut_4000x2667.jpg,coffee_3000x3000.jpg,coffee_12mp.png,hubble_deep_field_12mp.png"
IMAGES += "".join(  # other shapes, grainy: the service's shrink is small (1.38-1.5x) or the decode under the naive size
    f",{stem}_grain.jpg" for stem in ("coffee_4000x2250", "astronaut_4000x2250", "coffee_4000x2667",
                                      "astronaut_4000x2667", "coffee_3000x3000", "astronaut_3000x3000")
)


def load(name: str) -> bytes:
    """An image in benchmarks/.data; a ``<shape>_grain.jpg`` is made on first use from ``<shape>.jpg`` (built by
    bench_prepare.py) with the same grain as the 12 MP grainy photos."""
    path = DATA / name
    if not path.exists() and name.endswith("_grain.jpg"):
        with Image.open(DATA / name.replace("_grain.jpg", ".jpg")) as source:
            with_grain(source.convert("RGB")).save(path, "JPEG", quality=90)
    return path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=IMAGES, help="images in benchmarks/.data")
    parser.add_argument("--model", default=MODEL, help="the model (family) the view is of")
    args = parser.parse_args()
    print("| image | naive | ladder only | sent | estimate / naive bytes | estimate ms |")
    print("|---|---|---|---|---|---|")
    for name in args.images.split(","):
        data = load(name)
        naive, naive_size = baseline(data, "high")
        reference = ideal(data, service_view(*naive_size, "high", args.model))
        estimates: list[tuple[float | None, float]] = []
        real = imaging.naive_bytes

        def timed(*arguments, real=real, estimates=estimates):
            started = time.perf_counter()
            estimate = real(*arguments)
            estimates.append((estimate, time.perf_counter() - started))
            return estimate

        imaging.naive_bytes = timed
        try:
            sent = imaging.prepare_image(data, "high", model=args.model).data
        finally:
            imaging.naive_bytes = real
        imaging.naive_bytes = lambda *arguments: None  # the ladder's tables, as before the byte budget
        try:
            ladder = imaging.prepare_image(data, "high", model=args.model).data
        finally:
            imaging.naive_bytes = real
        cells = [_cell(encoded, naive, reference) for encoded in (naive, ladder, sent)]
        estimate, seconds = estimates[0] if estimates else (None, 0.0)
        accuracy = f"{estimate / len(naive):.3f}" if estimate else "none"
        print(f"| {name} | " + " | ".join(cells) + f" | {accuracy} | {seconds * 1000:.1f} |", flush=True)
    print(f"\nREFIT_BELOW {byte_budget.REFIT_BELOW}, TARGET {byte_budget.TARGET}, CEILING {byte_budget.CEILING}; "
          "cells: KB (share of the naive image's bytes) / PSNR dB / SSIM")


def _cell(encoded: bytes, naive: bytes, reference: Image.Image) -> str:
    return (f"{len(encoded) / 1024:.0f} ({len(encoded) / len(naive):.2f}) / {psnr(encoded, reference):.1f} / "
            f"{ssim(encoded, reference):.4f}")


if __name__ == "__main__":
    main()
