"""What the view at ``high`` costs in faint texture (SSIM), and what buying it back would cost in bytes.

Why: ``VIEW_ENCODING`` is tuned on bytes and PSNR, by which the view is better than the naive image's on clean
photos in fewer bytes. SSIM ranks it under: texture a few levels deep, which the naive image carries in its middle
frequencies (finely quantised) and the view in its highest (coarsest). This measures, on the 12 MP photos,
finer qualities at the view, two other quantisation-table shapes, and the 1/2-scale decode sent as it is near
the naive size, each as "KB / PSNR dB / SSIM" of the service's view against the ideal; then, for the kept
setting, the share of its SSIM deficit that sits in windows whose ideal luma varies by under 8 levels.

Run from the repository root (after ``bench_prepare.py`` has built ``benchmarks/.data/``)::

    .venv/bin/python benchmarks/bench_view_fidelity.py [--images coffee_12mp.jpg,hubble_deep_field_12mp.jpg]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_prepare import DATA, MODEL, baseline, ideal, psnr, ssim, ssim_map  # noqa: E402
from bench_view_encoding import prepared_with  # noqa: E402

from shared.imaging import prepare as imaging  # noqa: E402
from shared.imaging.encoding import JpegEncoding, standard_tables  # noqa: E402
from shared.tokens import service_view  # noqa: E402

IMAGES = "coffee_12mp.jpg,astronaut_12mp.jpg,hubble_deep_field_12mp.jpg,chelsea_12mp_grain.jpg"
QUALITIES = (96, 98, 100)
FAINT = 8  # levels: a window whose ideal luma varies by less holds faint texture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=IMAGES, help="12 MP JPEGs in benchmarks/.data")
    args = parser.parse_args()
    columns = ["naive", "view, kept"] + [f"view q{q}" for q in QUALITIES]
    columns += ["view, flat table", "view, naive's low frequencies", "1/2 decode as it is, q85"]
    print("| image | " + " | ".join(columns) + " | deficit in faint windows |")
    print("|" + "---|" * (len(columns) + 2))
    for name in args.images.split(","):
        data = (DATA / name).read_bytes()
        naive, naive_size = baseline(data, "high")
        reference = ideal(data, service_view(*naive_size, "high", MODEL))
        kept = imaging.prepare_image(data, "high", model=MODEL).data
        candidates = [naive, kept] + [prepared_with(data, JpegEncoding("4:4:4", quality=q)) for q in QUALITIES]
        candidates += [prepared_with(data, JpegEncoding("4:4:4", tables=tables))
                       for tables in (_flat_tables(), _stretched_tables())]
        candidates.append(_half_decode(data))
        cells = [f"{len(c) / 1024:.0f} / {psnr(c, reference):.1f} / {ssim(c, reference):.4f}" for c in candidates]
        print(f"| {name} | " + " | ".join(cells) + f" | {_faint_share(kept, naive, reference):.0%} |", flush=True)


def _flat_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Every step the mean of quality 94's, times 0.6: high frequencies finer, low ones coarser."""
    luma, chroma = ((max(1, round(0.6 * sum(table) / 64)),) * 64 for table in standard_tables(94))
    return luma, chroma


def _stretched_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The naive image's quality-85 steps for its low frequencies, stretched over the view's eight (the view is
    half the naive size: its frequency (u, v) is the naive image's (u/2, v/2)), halved for the amplitude."""
    stretched = tuple((row // 2) * 8 + column // 2 for row in range(8) for column in range(8))
    luma, chroma = (tuple(max(1, round(table[index] / 2)) for index in stretched) for table in standard_tables(85))
    return luma, chroma


def _half_decode(data: bytes) -> bytes:
    """The 1/2-scale decode sent as it is (2000 x 1500 for 12 MP), encoded as the naive image is."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("YCbCr", (image.width // 2, image.height // 2))
        image.load()
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85, subsampling="4:2:0", optimize=True)
    return buffer.getvalue()


def _faint_share(ours: bytes, naive: bytes, reference: Image.Image) -> float:
    """Of the SSIM that ``ours`` loses against ``naive``, the share in windows of faint texture (ideal luma
    standard deviation under ``FAINT``)."""
    ours_map, deviation = ssim_map(ours, reference)
    naive_map, _ = ssim_map(naive, reference)
    deficit = naive_map - ours_map
    return float(deficit[deviation < FAINT].sum() / deficit.sum()) if deficit.sum() > 0 else 0.0


if __name__ == "__main__":
    main()
