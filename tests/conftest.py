"""Shared fixtures and helpers: a private Azurite, the Azure OpenAI test double, settings, an API client,
images and pages drawn for the tests.

Test modules import helpers from here (or from the support modules ``aoai_double``, ``azurite``,
``quota_double``), never from one another, so each test file can be read, run and changed alone.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import signal
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps, ImageStat

from shared.config import Settings
from shared.http.app import create_app
from tests.azurite import Azurite

FIXTURES = Path(__file__).parent / "fixtures"
IMAGES = FIXTURES / "images"
#: Modules whose every test runs ``scripts/dev``, which starts its own Azurite in a subprocess.
RUN_SCRIPTS_DEV = {"test_dev_server.py"}


def pytest_collection_modifyitems(config, items):
    """Mark ``azurite`` every test that starts Azurite, so ``scripts/test -m "not azurite"`` is a fast unit run.

    Decided here rather than by hand: a test needs the emulator when the ``azurite`` fixture is in its
    fixture closure (``storage_connection_string``, ``cache_settings``... depend on it), or when its module
    runs ``scripts/dev``. A test starting an ``Azurite()`` itself carries the marker in its file;
    :func:`_azurite_only_when_marked` fails it if it does not.
    """
    for item in items:
        if "azurite" in getattr(item, "fixturenames", ()) or item.path.name in RUN_SCRIPTS_DEV:
            item.add_marker(pytest.mark.azurite)


@pytest.fixture(autouse=True)
def _azurite_only_when_marked(request, monkeypatch):
    """An unmarked test that starts Azurite fails, so ``-m "not azurite"`` can never start one unseen."""
    if request.node.get_closest_marker("azurite") is None:
        def refuse(self):
            raise RuntimeError(f"{request.node.nodeid} starts Azurite: mark it @pytest.mark.azurite")

        monkeypatch.setattr(Azurite, "start", refuse)


@pytest.fixture(scope="session")
def azurite():
    """One Azurite for the session, stopped by PID at the end."""
    emulator = Azurite().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def corpus() -> Path:
    """Folder of the public test images copied from ../shared/corpus."""
    return IMAGES


@pytest.fixture(scope="session")
def aoai_double_server():
    from tests.aoai_double import AzureOpenAIDouble

    with AzureOpenAIDouble() as double:
        yield double


@pytest.fixture
def aoai(aoai_double_server):
    """The double, reset; every request a test made must have been valid against the spec."""
    aoai_double_server.reset()
    yield aoai_double_server
    assert aoai_double_server.validation_errors == []


@pytest.fixture
def make_settings(aoai):
    """Settings pointing at the double, cache off unless a test turns it on."""

    def make(**values: str) -> Settings:
        base = {
            "AZURE_OPENAI_ENDPOINT": aoai.endpoint,
            "AZURE_OPENAI_API_KEY": aoai.api_key,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "VISION_CACHE_ENABLED": "false",
            "VISION_MODEL_TIMEOUT_SECONDS": "5",
            "VISION_MODEL_MAX_RETRIES": "2",
        }
        base.update(values)
        return Settings.from_mapping(base)

    return make


@pytest.fixture
def cache_settings(storage_connection_string) -> dict[str, str]:
    """Settings values turning the cache on, in a table of this test's own."""
    return {
        "VISION_CACHE_ENABLED": "true",
        "AzureWebJobsStorage": storage_connection_string,
        "VISION_CACHE_TABLE": f"t{uuid.uuid4().hex[:16]}",
    }


@pytest.fixture
async def make_client():
    """An httpx client bound to a fresh app built from the given settings."""
    apps = []

    async def make(settings: Settings) -> httpx.AsyncClient:
        app = create_app(settings)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        apps.append((app, client))
        return client

    yield make
    for app, client in apps:
        await client.aclose()
        await app.state.services.aclose()


@pytest.fixture
async def make_analyzer():
    """Analyzers built from the given settings, closed after the test."""
    from shared.services import build_analyzer

    made = []

    def make(settings: Settings):
        made.append(build_analyzer(settings))
        return made[-1]

    yield make
    for analyzer in made:
        await analyzer.aclose()


@pytest.fixture(scope="session")
def prepared():
    """A small prepared image (teal, low detail): what provider tests send."""
    from shared.imaging import prepare_image

    return prepare_image(encode(Image.new("RGB", (640, 480), "teal"), "PNG"), "low")


async def complete(settings: Settings, request):
    """One request through the provider the settings build, closed afterwards."""
    from shared.providers.factory import build_provider

    provider = build_provider(settings)
    try:
        return await provider.complete(request)
    finally:
        await provider.aclose()


def stop_process_group(process: subprocess.Popen, *, grace_seconds: float) -> None:
    """Ctrl-C to a process started in its own session (its whole group), KILL if it outlives ``grace_seconds``."""
    with contextlib.suppress(ProcessLookupError):  # already stopped (by the test itself)
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def corpus_photo(size: tuple[int, int] = (4000, 3000), grain: float = 0, name: str = "coffee.png") -> Image.Image:
    """A corpus photo fitted to ``size`` (a 12 MP phone photo by default), with sensor-like grain of standard
    deviation ``grain`` (:func:`sensor_grain`)."""
    with Image.open(IMAGES / name) as source:
        fitted = ImageOps.fit(source.convert("RGB"), size, Image.Resampling.LANCZOS)
    return ImageChops.add(fitted, sensor_grain(size, grain), scale=1.0, offset=-128) if grain else fitted


def naive_jpeg(data: bytes) -> bytes:
    """The naive image at ``high``: full decode, LANCZOS to 2048 px on the long side, q85, Huffman tables fitted."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    ratio = 2048 / max(rgb.size)
    naive = rgb.resize((int(rgb.width * ratio), int(rgb.height * ratio)), Image.Resampling.LANCZOS)
    return encode(naive, "JPEG", quality=85, optimize=True)


def sensor_grain(size: tuple[int, int], sigma: float, seed: int = 0) -> Image.Image:
    """Gaussian noise around grey 128 (RGB, the same in each channel), like ``Image.effect_noise`` but seeded:
    Pillow draws that from the C library's shared generator, so a grainy image changed with the tests' order."""
    import numpy as np

    noise = np.random.default_rng(seed).normal(128, sigma, (size[1], size[0])).round().clip(0, 255)
    return Image.fromarray(noise.astype(np.uint8)).convert("RGB")


def psnr(actual: Image.Image, expected: Image.Image) -> float:
    """PSNR (dB) of two same-size images, compared as RGB; inf when identical."""
    stat = ImageStat.Stat(ImageChops.difference(actual.convert("RGB"), expected.convert("RGB")))
    mse = sum(stat.sum2) / (3 * expected.width * expected.height)
    return 10 * math.log10(255**2 / mse) if mse else math.inf


@pytest.fixture
def jpeg_decodes(monkeypatch) -> list[tuple[int, int]]:
    """The size each JPEG is decoded at (after Image.draft picks its DCT scale), in order."""
    from PIL import JpegImagePlugin

    decodes: list[tuple[int, int]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def draft(self, mode, size):
        result = real_draft(self, mode, size)
        decodes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    return decodes


@pytest.fixture(scope="session")
def indexed_functions() -> dict:
    """function_app's functions as the host indexes them (the SDK allows get_functions() only once)."""
    import function_app

    return {function.get_function_name(): function for function in function_app.app.get_functions()}


# --- images and blobs -----------------------------------------------------------------------------


def distinct_png(index: int) -> bytes:
    """Small distinct images, so the answer cache cannot merge them."""
    return encode(Image.new("RGB", (64 + index, 48), ((index * 37) % 256, (index * 91) % 256, 120)), "PNG")


@pytest.fixture
def containers() -> dict[str, str]:
    """Pipeline container settings of this test's own, so tests sharing the session Azurite never meet."""
    tag = uuid.uuid4().hex[:10]
    return {
        "VISION_INPUT_CONTAINER": f"in-{tag}",
        "VISION_RESULTS_CONTAINER": f"out-{tag}",
        "VISION_QUARANTINE_CONTAINER": f"bad-{tag}",
        "VISION_SCHEMAS_CONTAINER": f"schemas-{tag}",
    }


def upload(pipeline, name: str, data: bytes, **metadata: str):
    """Put ``data`` in the pipeline's input container as ``name``; the blob client."""
    client = pipeline.inputs.get_blob_client(name)
    client.upload_blob(data, overwrite=True, metadata=metadata or None)
    return client


# --- pages for the offline engine -------------------------------------------------------------------
# Drawn with Pillow (a TrueType font when the machine has one, else Pillow's scalable default font,
# which RapidOCR reads as well), so the expected text is known exactly. OCR may drop a space
# ("Date:2024-03-15"), so compare text through :func:`squeeze`.

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
TABLE = [["Product", "Region", "Units", "Price"], ["Apples", "North", "120", "0.50"],
         ["Pears", "South", "", "0.75"], ["Plums", "East", "310", "1.20"], ["Figs", "West", "45", "2.10"]]


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in FONT_CANDIDATES:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def render_invoice() -> Image.Image:
    """An A4-wide invoice: a larger vendor name, labels with values, a line-item table, totals."""
    image = Image.new("RGB", (1240, 1100), "white")
    draw = ImageDraw.Draw(image)
    draw.text((80, 40), "ACME Widgets Ltd", fill="black", font=font(44))
    body = font(30)
    for x, y, text in [
        (80, 110, "12 Harbour Road, Bristol"), (80, 150, "VAT No: GB123456789"),
        (80, 230, "Invoice No: INV-2024-0042"), (80, 280, "Date: 2024-03-15"), (80, 330, "Due: 15/04/2024"),
        (700, 230, "Bill to:"), (700, 280, "Globex Corporation"), (700, 320, "1 Main Street, Leeds"),
        (80, 430, "Description"), (600, 430, "Qty"), (760, 430, "Unit price"), (1000, 430, "Total"),
        (80, 480, "Blue widget"), (600, 480, "2"), (760, 480, "30.00"), (1000, 480, "60.00"),
        (80, 530, "Red gadget"), (600, 530, "1"), (760, 530, "40.00"), (1000, 530, "40.00"),
        (700, 630, "Subtotal"), (1000, 630, "100.00"), (700, 680, "Tax (20%)"), (1000, 680, "20.00"),
        (700, 730, "Total"), (1000, 730, "120.00"), (700, 780, "Currency: EUR"),
    ]:
        draw.text((x, y), text, fill="black", font=body)
    return image


def render_table() -> Image.Image:
    """A caption, then a 4-column table: header and four rows, one cell deliberately empty."""
    image = Image.new("RGB", (1100, 480), "white")
    draw = ImageDraw.Draw(image)
    draw.text((60, 20), "Quarterly stock report", fill="black", font=font(30))
    for r, row in enumerate(TABLE):
        for x, cell in zip((60, 330, 600, 850), row, strict=True):
            if cell:
                draw.text((x, 100 + r * 70), cell, fill="black", font=font(30))
    return image


def squeeze(text: str) -> str:
    """Text without whitespace, lower case: what OCR output is compared as."""
    return "".join(text.split()).lower()


_OCR_SEEN: dict[bytes, list] = {}


@pytest.fixture
def ocr_once(monkeypatch):
    """The offline engine's OCR, run for real once per distinct image in the session, then remembered.

    For tests of what is built on OCR (the local provider, its wiring): the same rendered invoice is
    read a dozen times, seconds each. OCR itself is tested unremembered in ``test_local_engine.py``.
    """
    from shared.offline import engine

    real = engine.ocr

    def remembered(image):
        if not isinstance(image, bytes):
            return real(image)
        if image not in _OCR_SEEN:
            _OCR_SEEN[image] = real(image)
        return list(_OCR_SEEN[image])

    monkeypatch.setattr(engine, "ocr", remembered)


@pytest.fixture(autouse=True)
def fresh_quota_limiters():
    """Each test starts with no deployment paused, learnt or resting: process limiters and breakers outlive a test."""
    from shared.providers.local import forget_recent_pages
    from shared.quota.breaker import forget_process_breakers
    from shared.quota.limiter import forget_process_limiters

    forget_process_limiters()
    forget_process_breakers()
    forget_recent_pages()
    yield
    forget_process_limiters()
    forget_process_breakers()
    forget_recent_pages()


PROBLEM = "application/problem+json"


@pytest.fixture
def png_bytes(corpus) -> bytes:
    """A small real PNG (the corpus's chelsea.png) for the HTTP tests."""
    return (corpus / "chelsea.png").read_bytes()


def assert_problem(response, status: int, type_: str) -> dict:
    """An RFC 9457 problem document of this status and type, with a title and a detail; the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"] == type_
    assert body["title"] and body["detail"]
    return body
