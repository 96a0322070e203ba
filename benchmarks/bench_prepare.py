"""Benchmark ``shared.imaging.prepare_image`` against the naive way to do it.

Why: preparing images is the only CPU-heavy step of a request, and on a
Consumption-plan Function CPU time is both latency and money. The naive way
(full decode, LANCZOS from full size, ``optimize=True``) is what most code
does; this shows what the draft-decode path buys and checks that it never
bills more tokens.

Run from the repository root::

    .venv/bin/python benchmarks/bench_prepare.py [--repeat N] [--no-memory]

Inputs are built once into ``benchmarks/.data/`` (gitignored): 4000x3000
(12 MP) photos upscaled from the test corpus with LANCZOS, saved as JPEG
quality 90 and as PNG; the same JPEGs with Gaussian grain added (an upscale is
unrealistically smooth, about 1 MB per JPEG; grain makes it a camera-like
~4.5 MB, and entropy decoding, which no downscaling trick avoids, grows with
it); a 12 MP page of small text, as an OCR request sends it and with no text
task; the real receipt scans of ``benchmarks/documents`` and four of its invoices
rendered as 300 dpi scans (pages sent with no text task, which ``prepare_image``
must tell from photos: the last column counts those it decoded again in full, with
grainy photos at ``high``); and the corpus's own images. ``--no-page-check`` sends pages as photos, to compare.

Each image is run ``--repeat`` times with ours and the baseline interleaved;
the table shows the mean over a kind's images of each image's median time.
Ours sends what the service will look at (its own shrink of the detail's size,
``shared.tokens.service_view``); the baseline sends the detail's size and lets
the service shrink it. "PSNR" compares what the service will see of each (the
output resized to the service's view) with the ideal view (full decode, LANCZOS
to the view computed in floating point, no JPEG encoding), and "SSIM" does the
same on the luma by structural similarity; the worst over a kind's images is
shown for each. The speed-up is the geometric mean over a kind's images of baseline time / ours. Peak memory is the
growth of peak RSS (it covers Pillow's C allocations, which tracemalloc cannot
see) for one call on the kind's first image in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps, ImageStat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.imaging import encoding, prepare_image, resampling  # noqa: E402 - encoding's settings are patched
from shared.imaging import prepare as imaging  # noqa: E402 - the module itself: its settings are patched
from shared.tokens import estimate_image_tokens, service_view  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "images"
DATA = Path(__file__).resolve().parent / ".data"
DOCUMENTS = Path(__file__).resolve().parent / "documents"  # real scans and invoices (documents/README.md)
BASELINE_MAX_SIDE = {"low": 512, "high": 2048, "auto": 1024}
DETAILS = ("low", "auto", "high")
PHOTO_SOURCES = ("astronaut.png", "coffee.png", "hubble_deep_field.jpg", "chelsea.png")
PHOTO_SIZE = (4000, 3000)
#: Other shapes, each a different shrink of the naive image by the service at "high" (2048 px long side, then
#: the short side to 768): 1.25x (sent at the naive size), 1.5x, 1.78x, 2.67x.
SHAPES = {
    "7.5 MP 2.13:1": (4000, 1875),
    "9 MP 16:9": (4000, 2250),
    "10.7 MP 3:2": (4000, 2667),
    "9 MP 1:1": (3000, 3000),
}
GRAIN_SIGMA = 10  # sensor-like noise: ~4.5 MB per 12 MP JPEG, like a phone camera's
MODEL = "gpt-4o"


def baseline(data: bytes, detail: str, reads_text: bool = False) -> tuple[bytes, tuple[int, int]]:
    """The naive preparation: decode everything, resize from full size, optimise the JPEG."""
    im = Image.open(io.BytesIO(data))
    im.load()
    max_side = BASELINE_MAX_SIDE[detail]
    w, h = im.size
    if max(w, h) > max_side:
        ratio = max_side / max(w, h)
        im = im.resize((max(1, int(w * ratio)), max(1, int(h * ratio))), Image.Resampling.LANCZOS)
    im = im.convert("RGB")
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue(), im.size


def ours(data: bytes, detail: str, reads_text: bool = False) -> tuple[bytes, tuple[int, int]]:
    """``prepare_image`` as the service calls it; ``reads_text`` for an OCR or extraction request."""
    prepared = prepare_image(data, detail, model=MODEL, reads_text=reads_text)
    return prepared.data, (prepared.width, prepared.height)


PIPELINES: dict[str, Callable[[bytes, str, bool], tuple[bytes, tuple[int, int]]]] = {
    "ours": ours,
    "baseline": baseline,
}


def with_grain(photo: Image.Image) -> Image.Image:
    """``photo`` with camera-like Gaussian grain (``GRAIN_SIGMA``), the same in each channel."""
    grain = Image.effect_noise(photo.size, GRAIN_SIGMA).convert("RGB")
    return ImageChops.add(photo, grain, scale=1.0, offset=-128)


def build_inputs() -> dict[str, list[Path]]:
    """The benchmark images by kind, generated on first use."""
    DATA.mkdir(exist_ok=True)
    kinds: dict[str, list[Path]] = {"12 MP JPEG": [], "12 MP JPEG + grain": [], "12 MP PNG": []}
    for name in PHOTO_SOURCES:
        stem = Path(name).stem
        jpeg, grainy, png = (DATA / f"{stem}_12mp{suffix}" for suffix in (".jpg", "_grain.jpg", ".png"))
        if not (jpeg.exists() and grainy.exists() and png.exists()):
            with Image.open(CORPUS / name) as src:
                photo = ImageOps.fit(src.convert("RGB"), PHOTO_SIZE, Image.Resampling.LANCZOS)
            photo.save(jpeg, "JPEG", quality=90)
            photo.save(png, "PNG", compress_level=6)
            with_grain(photo).save(grainy, "JPEG", quality=90)
        kinds["12 MP JPEG"].append(jpeg)
        kinds["12 MP JPEG + grain"].append(grainy)
        kinds["12 MP PNG"].append(png)
    for shape, size in SHAPES.items():
        kind = kinds.setdefault(f"{shape} JPEG", [])
        for name in PHOTO_SOURCES[:2]:
            path = DATA / f"{Path(name).stem}_{size[0]}x{size[1]}.jpg"
            if not path.exists():
                with Image.open(CORPUS / name) as src:
                    ImageOps.fit(src.convert("RGB"), size, Image.Resampling.LANCZOS).save(path, "JPEG", quality=90)
            kind.append(path)
    page = DATA / "text_page_12mp.jpg"
    if not page.exists():
        text_page().save(page, "JPEG", quality=90)
    kinds["12 MP JPEG text page"] = [page]  # as an OCR request (reads_text)
    kinds["12 MP JPEG text page, no text task"] = [page]
    kinds["scanned receipts, no text task"] = sorted(DOCUMENTS.glob("softmatic_*.jpg"))
    invoices = sorted(DOCUMENTS.glob("invoice2data_*.pdf"))[:4]
    kinds["invoices at 300 dpi, no text task"] = [scanned(pdf) for pdf in invoices]
    kinds["corpus PNG/JPEG (<1 MP)"] = sorted(p for p in CORPUS.iterdir() if p.suffix in (".png", ".jpg"))
    return kinds


def scanned(pdf: Path) -> Path:
    """The PDF's first page as a 300 dpi scanner would save it: JPEG quality 90 (2480 x 3508 for A4)."""
    path = DATA / f"{pdf.stem}_300dpi.jpg"
    if not path.exists():
        document = pdfium.PdfDocument(pdf)
        try:
            document[0].render(scale=300 / 72).to_pil().convert("RGB").save(path, "JPEG", quality=90)
        finally:
            document.close()
    return path


def text_page() -> Image.Image:
    """A 4000x3000 scan-like page of 34px text: legible at "high", a stress test at "auto"."""
    rng = random.Random(12)
    words = ["invoice", "total", "amount", "due", "net", "tax", "item", "quantity", "price"]
    words += ["1234.56", "EUR", "07/2025", "account"]
    page = Image.new("RGB", PHOTO_SIZE, (250, 248, 240))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=34)
    for y in range(60, PHOTO_SIZE[1] - 60, 46):
        draw.text((80, y), " ".join(rng.choice(words) for _ in range(24)), fill=(20, 20, 30), font=font)
    return page


def ideal(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The reference: full decode and LANCZOS to ``size`` in floating point, rounded once, not re-encoded.

    Not Pillow's 8-bit LANCZOS: that rounds and clips between its two passes, so at text edges it is one
    implementation's rounding, and it would favour whichever pipeline uses the same one (the baseline's
    text page scored 42.2 dB against it, 40.5 against this)."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    bands = [
        band.convert("F").resize(size, Image.Resampling.LANCZOS).point(lambda v: v + 0.5).convert("L")
        for band in rgb.split()
    ]
    return Image.merge("RGB", bands)


def seen(encoded: bytes, reference: Image.Image) -> Image.Image:
    """An encoded image as the service would look at it: decoded, resized to the reference's size."""
    with Image.open(io.BytesIO(encoded)) as im:
        rgb = im.convert("RGB")
    return rgb if rgb.size == reference.size else rgb.resize(reference.size, Image.Resampling.LANCZOS)


def psnr(encoded: bytes, reference: Image.Image) -> float:
    """PSNR (dB) of an encoded image, as the service would look at it (resized to the reference's size)."""
    stat = ImageStat.Stat(ImageChops.difference(seen(encoded, reference), reference))
    mse = sum(stat.sum2) / (3 * reference.size[0] * reference.size[1])
    return 10 * math.log10(255**2 / mse) if mse else math.inf


def ssim(encoded: bytes, reference: Image.Image) -> float:
    """Mean SSIM (Wang et al. 2004: 11 x 11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of the luma, as the
    service would look at the encoded image. Where PSNR weighs every error by its size, SSIM weighs lost
    structure: faint texture quantised away in a flat area costs it more than a few levels of error at an
    edge, so the two can rank a pair of images differently (benchmarks/README.md)."""
    return float(ssim_map(encoded, reference)[0].mean())


def ssim_map(encoded: bytes, reference: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The SSIM index per pixel (see :func:`ssim`), and the reference's local standard deviation of luma."""
    a, b = (np.asarray(image.convert("L"), dtype=np.float64) for image in (seen(encoded, reference), reference))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mean_a, mean_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mean_a**2, blur(b * b) - mean_b**2, blur(a * b) - mean_a * mean_b
    index = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    return index, np.sqrt(np.maximum(var_b, 0))


def time_kind(
    paths: list[Path], detail: str, repeat: int, reads_text: bool = False
) -> dict[str, dict[str, float]]:
    """Median seconds per image, tokens and bytes for each pipeline, interleaved."""
    blobs = [p.read_bytes() for p in paths]
    per_image: dict[str, list[float]] = {name: [] for name in PIPELINES}
    tokens: dict[str, list[int]] = {name: [] for name in PIPELINES}
    sizes: dict[str, list[int]] = {name: [] for name in PIPELINES}
    similarity: dict[str, list[float]] = {name: [] for name in PIPELINES}
    structure: dict[str, list[float]] = {name: [] for name in PIPELINES}
    ratios: list[float] = []  # baseline time / ours, per image (their geometric mean is the speed-up)
    for blob in blobs:
        for fn in PIPELINES.values():  # warm-up: plugin imports, first-call allocations
            fn(blob, detail, reads_text)
        samples: dict[str, list[float]] = {name: [] for name in PIPELINES}
        results: dict[str, tuple[bytes, tuple[int, int]]] = {}
        for _ in range(repeat):
            for name, fn in PIPELINES.items():
                start = time.perf_counter()
                results[name] = fn(blob, detail, reads_text)
                samples[name].append(time.perf_counter() - start)
        # Fidelity where it matters: what the service will look at. The service shrinks what it is sent to
        # its own view; ours is that view already, or a reduced JPEG decode a few percent under it, which the
        # service looks at as it is. Each is compared with the ideal at the size the service looks at (a full
        # decode LANCZOS-resized to it): scaling ours up to the baseline's view to compare would charge it
        # for the comparison's own resampling (27.9 dB on the text page for a perfect 1000 x 750).
        references: dict[tuple[int, int], Image.Image] = {}
        for name, (out, shape) in results.items():
            view = service_view(*shape, detail, MODEL)
            if view not in references:
                references[view] = ideal(blob, view)
            reference = references[view]
            per_image[name].append(statistics.median(samples[name]))
            tokens[name].append(estimate_image_tokens(*shape, detail, MODEL))
            sizes[name].append(len(out))
            similarity[name].append(psnr(out, reference))
            structure[name].append(ssim(out, reference))
        ratios.append(per_image["baseline"][-1] / per_image["ours"][-1])
    summary = {
        name: {
            "seconds": statistics.mean(per_image[name]),
            "tokens": statistics.mean(tokens[name]),
            "bytes": statistics.mean(sizes[name]),
            "psnr": min(similarity[name]),
            "ssim": min(structure[name]),
        }
        for name in PIPELINES
    }
    summary["ours"]["speedup"] = statistics.geometric_mean(ratios)
    return summary


def decoded_again(paths: list[Path], detail: str) -> int:
    """How many of the images ``prepare_image`` decoded again in full (opened twice): pages it told from photos,
    and grainy photos at ``high``."""
    opened: list[str] = []
    real_open = imaging.open_image

    def spy(*args, **kwargs):
        opened.append(args[1])
        return real_open(*args, **kwargs)

    imaging.open_image = spy
    try:
        found = 0
        for path in paths:
            opened.clear()
            ours(path.read_bytes(), detail)
            found += len(opened) > 1
    finally:
        imaging.open_image = real_open
    return found


def peak_rss_mib(path: Path, detail: str, pipeline: str) -> float:
    """Max-RSS growth (MiB) of one call in a fresh interpreter."""
    probe = subprocess.run(
        [sys.executable, __file__, "--model", MODEL, "--probe", pipeline, str(path), detail],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(probe.stdout)["peak_mib"]


def _peak_rss_kib() -> int:
    """This process's peak RSS in KiB.

    /proc's VmHWM belongs to the address space, which exec replaces, whereas
    ru_maxrss survives fork+exec on Linux and would report the (much larger)
    peak of the benchmark process that spawned the probe.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _probe(pipeline: str, path: str, detail: str) -> None:
    blob = Path(path).read_bytes()
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, "PNG")
    PIPELINES[pipeline](tiny.getvalue(), detail)  # import plugins before measuring
    before = _peak_rss_kib()
    PIPELINES[pipeline](blob, detail)
    print(json.dumps({"peak_mib": (_peak_rss_kib() - before) / 1024}))


def main() -> None:
    global MODEL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per image and pipeline")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--only", metavar="TEXT", help="run only the input kinds whose name contains TEXT")
    parser.add_argument("--model", default=MODEL, help="the model (family) ours prepares for and the views are of")
    parser.add_argument(
        "--resample",
        choices=[f.name for f in Image.Resampling],
        help="try another filter in prepare_image (default LANCZOS, by fast_image_resize; others are Pillow's)",
    )
    parser.add_argument(
        "--rgb-jpeg",
        action="store_true",
        help="decode and shrink JPEGs as RGB instead of by YCbCr planes (shared.imaging.resampling), to compare",
    )
    parser.add_argument(
        "--view-subsampling",
        choices=("4:2:0", "4:4:4"),
        help="chroma subsampling of an image sent at the service's view (default 4:4:4)",
    )
    parser.add_argument(
        "--no-page-check",
        action="store_true",
        help="send a page's reduced JPEG decode as a photo's (no shared.imaging.content look), to compare",
    )
    parser.add_argument("--probe", nargs=3, metavar=("PIPELINE", "PATH", "DETAIL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    MODEL = args.model  # ours and the service's view of both pipelines' outputs
    if args.probe:
        _probe(*args.probe)
        return

    inputs = {kind: paths for kind, paths in build_inputs().items() if (args.only or "") in kind}
    if args.resample:
        resampling.FILTER = Image.Resampling[args.resample]
    if args.view_subsampling:
        encoding.VIEW_ENCODING = tuple(
            (below, scale, args.view_subsampling if scale else subsampling)
            for below, scale, subsampling in encoding.VIEW_ENCODING
        )
    if args.no_page_check:
        real_look = imaging.look
        imaging.look = lambda image: real_look(image)._replace(sharp_edged=False)
        imaging.looks_sharp_edged = lambda image: False
    if args.rgb_jpeg:
        imaging.decodes_as_ycbcr = lambda image: False  # every JPEG decoded and shrunk as RGB
    print(
        f"Python {platform.python_version()}, Pillow {Image.__version__}, {platform.machine()}, model {MODEL}, "
        f"repeat={args.repeat}, filter {args.resample or 'LANCZOS (fast_image_resize)'}, "
        f"JPEGs {'as RGB' if args.rgb_jpeg else 'by planes'}, "
        f"the view {args.view_subsampling or '4:4:4'} with its tables at scale {encoding.VIEW_ENCODING[1][1]}-"
        f"{encoding.VIEW_ENCODING[-1][1]} by the service's shrink, "
        f"pages {'not looked for' if args.no_page_check else 'decoded in full'}\n"
    )
    header = ["input", "detail", "ours ms", "baseline ms", "speed-up", "tokens ours / base", "KB ours / base"]
    header += ["PSNR dB of the service's view, ours / base", "SSIM, ours / base", "decoded again in full"]
    if not args.no_memory:
        header.append("peak RSS MiB ours / base")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for kind, paths in inputs.items():
        for detail in DETAILS:
            reads_text = "text page" in kind and "no text task" not in kind  # as an OCR request
            r = time_kind(paths, detail, args.repeat, reads_text=reads_text)
            o, b = r["ours"], r["baseline"]
            row = [
                f"{kind} (x{len(paths)})",
                detail,
                f"{o['seconds'] * 1e3:.1f}",
                f"{b['seconds'] * 1e3:.1f}",
                f"{o['speedup']:.1f}x",
                f"{o['tokens']:.0f} / {b['tokens']:.0f}",
                f"{o['bytes'] / 1024:.0f} / {b['bytes'] / 1024:.0f}",
                f"{o['psnr']:.1f} / {b['psnr']:.1f}",
                f"{o['ssim']:.4f} / {b['ssim']:.4f}",
                "-" if reads_text else f"{decoded_again(paths, detail)}/{len(paths)}",
            ]
            if not args.no_memory:
                row.append(
                    f"{peak_rss_mib(paths[0], detail, 'ours'):.0f} / {peak_rss_mib(paths[0], detail, 'baseline'):.0f}"
                )
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
