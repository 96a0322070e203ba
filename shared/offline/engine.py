"""The offline engine: OCR with RapidOCR (ONNX Runtime) and image facts from Pillow, no cloud account.

Why this exists: a fresh clone must do its main job without any model service. Everything here is
deterministic and honest: each box is what the recogniser read, each fact comes from the pixels.
Reading invoices, tables and schemas out of the boxes is :mod:`shared.offline.documents`.

Decisions, and why:

* **Models ship in the wheel**: ``rapidocr-onnxruntime`` carries its three PP-OCRv4/v2 ONNX models in
  ``site-packages/rapidocr_onnxruntime/models``; nothing is downloaded at run time (a test asserts it
  with the network blocked). :func:`model_files` names the files the engine actually loaded.
* **One engine per process, built lazily** (~0.2-0.5 s, three ONNX sessions): nothing happens at import.
  Calls are serialised by a lock: ONNX Runtime already spreads one call over every core, so concurrent
  calls would only oversubscribe the CPU and multiply memory.
* **Detection threshold 0.3** (library default 0.5): on the corpus's scanned page the default drops two
  of seven lines; recognition still filters at score 0.5, and on the corpus's photos the lower
  threshold finds no extra text.
* **Memory**: one full page peaks at ~650-770 MiB (mostly detection); see ``benchmarks/README.md``.
* **Spaces**: the PP-OCRv4 recogniser (trained mostly on Chinese) often runs English words together
  ("VATNo:GB123"), more so on JPEG-compressed input; re-spacing from character positions split words
  ("sm all") as often as it fixed them, so the text is kept as recognised (the label patterns of
  :mod:`shared.offline.documents` accept missing spaces).
* **Geometry, not language**: lines are boxes that overlap vertically (:func:`group_lines`).
"""

from __future__ import annotations

import colorsys
import io
import statistics
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from PIL import Image, ImageOps

from shared.errors import ModelNotConfigured
from shared.imaging import to_rgb
from shared.imaging.pillow_errors import pillow_errors

ENGINE_PACKAGE = "rapidocr-onnxruntime"
DETECTION_BOX_THRESHOLD = 0.3
_engine: Any = None
_engine_lock = threading.Lock()
_run_lock = threading.Lock()


@dataclass(frozen=True)
class TextBox:
    """One recognised piece of text: what it says, how sure the engine is, and where (4 corner points)."""

    text: str
    confidence: float
    box: tuple[tuple[float, float], ...]

    @property
    def left(self) -> float:
        return min(x for x, _ in self.box)

    @property
    def right(self) -> float:
        return max(x for x, _ in self.box)

    @property
    def top(self) -> float:
        return min(y for _, y in self.box)

    @property
    def bottom(self) -> float:
        return max(y for _, y in self.box)

    @property
    def height(self) -> float:
        return max(self.bottom - self.top, 1.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)

    def as_provenance(self) -> dict[str, Any]:
        """Where a value came from, as JSON: the box's text, confidence and corner points."""
        return {"text": self.text, "confidence": round(self.confidence, 4),
                "box": [[round(x, 1), round(y, 1)] for x, y in self.box]}


# --- the OCR engine ---------------------------------------------------------------------------------


def get_engine() -> Any:
    """The process's RapidOCR engine, built on first use (thread-safe; the constructor is slowish)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:
                    raise ModelNotConfigured(
                        f"the local engine needs the {ENGINE_PACKAGE} package (pip install -r requirements.txt); "
                        "or set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT, or OPENAI_BASE_URL and OPENAI_MODEL"
                    ) from exc
                _engine = RapidOCR(det_box_thresh=DETECTION_BOX_THRESHOLD)
    return _engine


def engine_version() -> str:
    """The installed RapidOCR version, without loading the engine."""
    try:
        return metadata.version(ENGINE_PACKAGE)
    except metadata.PackageNotFoundError:
        return "not installed"


def model_files() -> list[str]:
    """The ONNX files the loaded engine read (detection, angle classifier, recognition); [] if not loaded."""
    if _engine is None:
        return []
    parts = (getattr(_engine, name, None) for name in ("text_det", "text_cls", "text_rec"))
    wrappers = (getattr(part, "infer", None) or getattr(part, "session", None) for part in parts)
    sessions = (getattr(wrapper, "session", None) for wrapper in wrappers)
    return [str(path) for session in sessions if (path := getattr(session, "_model_path", None))]


def load_image(image: bytes | Image.Image) -> Image.Image:
    """Bytes or a Pillow image as displayed (EXIF orientation applied), 8-bit RGB."""
    with pillow_errors():
        if isinstance(image, Image.Image):
            return to_rgb(ImageOps.exif_transpose(image))
        with Image.open(io.BytesIO(image)) as opened:
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened))


def ocr(image: bytes | Image.Image) -> list[TextBox]:
    """Every text box RapidOCR recognises (score >= 0.5), in the engine's rough top-left order."""
    import numpy as np  # with the engine's dependencies: image facts and the parsers work without them

    rgb = load_image(image)
    # RapidOCR takes a numpy array as an OpenCV image, i.e. BGR: reverse the channels.
    pixels = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    engine = get_engine()
    with _run_lock:
        result, _ = engine(pixels)
    boxes = []
    for points, text, score in result or []:
        if str(text).strip():
            corners = tuple((float(x), float(y)) for x, y in points)
            boxes.append(TextBox(str(text).strip(), float(score), corners))
    return boxes


# --- layout -----------------------------------------------------------------------------------------


def group_lines(boxes: list[TextBox]) -> list[list[TextBox]]:
    """Boxes grouped into lines (vertical overlap >= half the smaller height), top to bottom, left to right."""
    lines: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: b.center[1]):
        best, best_ratio = None, 0.5
        for line in lines:
            top = statistics.fmean(b.top for b in line)
            bottom = statistics.fmean(b.bottom for b in line)
            overlap = min(box.bottom, bottom) - max(box.top, top)
            ratio = overlap / max(min(box.height, bottom - top), 1.0)
            if ratio >= best_ratio:
                best, best_ratio = line, ratio
        if best is None:
            lines.append([box])
        else:
            best.append(box)
    lines.sort(key=lambda line: statistics.fmean(b.center[1] for b in line))
    return [sorted(line, key=lambda b: b.left) for line in lines]


def reading_order(boxes: list[TextBox]) -> list[str]:
    """The text as lines: words of a line joined by single spaces (one column; no multi-column layout)."""
    return [" ".join(" ".join(b.text.split()) for b in line) for line in group_lines(boxes)]


# --- image facts ------------------------------------------------------------------------------------

_EXIF_TAGS = {0x0112: "orientation", 0x010F: "make", 0x0110: "model", 0x0132: "datetime"}
_EXIF_IFD, _DATETIME_ORIGINAL = 0x8769, 0x9003
_HUES = ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"), (255, "blue"),
         (290, "purple"), (335, "pink"), (361, "red"))


def colour_name(rgb: tuple[int, int, int]) -> str:
    """A rough English name: greys by lightness, otherwise a hue bucket, 'dark'/'light' when far off."""
    hue, lightness, saturation = colorsys.rgb_to_hls(*(c / 255 for c in rgb))
    if saturation < 0.15 or lightness < 0.08 or lightness > 0.95:
        for limit, name in ((0.12, "black"), (0.35, "dark grey"), (0.65, "grey"), (0.9, "light grey")):
            if lightness < limit:
                return name
        return "white"
    name = next(name for limit, name in _HUES if hue * 360 < limit)
    if name == "orange" and lightness < 0.35:
        name = "brown"
    return f"dark {name}" if lightness < 0.25 else f"light {name}" if lightness > 0.75 else name


def dominant_colours(image: Image.Image, count: int = 5) -> list[dict[str, Any]]:
    """The ``count`` main colours of a 128 px thumbnail (median cut), largest share first."""
    thumb = image.copy()
    thumb.thumbnail((128, 128))
    quantized = to_rgb(thumb).quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    counts = sorted(quantized.getcolors() or [], reverse=True)
    total = sum(n for n, _ in counts) or 1
    colours = []
    for n, index in counts:
        rgb = (palette[index * 3], palette[index * 3 + 1], palette[index * 3 + 2])
        colours.append({"hex": "#{:02x}{:02x}{:02x}".format(*rgb), "share": round(n / total, 3),
                        "name": colour_name(rgb)})
    return colours


def image_facts(image: bytes | Image.Image) -> dict[str, Any]:
    """Size (as displayed), mode, format, orientation, a few safe EXIF tags and the dominant colours."""
    if not isinstance(image, Image.Image):
        with pillow_errors():
            opened = Image.open(io.BytesIO(image))
        with opened:
            return image_facts(opened)
    exif = _safe_exif(image)
    displayed = load_image(image)
    width, height = displayed.size
    shape = "square" if abs(width - height) <= 0.02 * max(width, height) else (
        "landscape" if width > height else "portrait")
    return {"width": width, "height": height, "mode": image.mode, "format": image.format,
            "orientation": shape, "exif": exif, "dominant_colours": dominant_colours(displayed)}


def _safe_exif(image: Image.Image) -> dict[str, Any]:
    """Only orientation, camera make/model and date-time: never GPS, serial numbers or maker notes."""
    try:
        exif = image.getexif()
        tags = {name: exif.get(tag) for tag, name in _EXIF_TAGS.items()}
        tags["datetime_original"] = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL)
    except Exception:
        return {}
    facts: dict[str, Any] = {}
    for name, value in tags.items():
        if isinstance(value, bytes):
            value = value.decode("ascii", "ignore")
        if isinstance(value, str) and value.strip("\x00 "):
            facts[name] = value.strip("\x00 ")[:64]
        elif isinstance(value, int) and name == "orientation":
            facts[name] = value
    return facts
