"""Image preparation: formats, modes, orientation, sizes, bombs and broken input."""

from __future__ import annotations

import base64
import contextlib
import io
import random
import struct
import warnings
import zlib

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from shared.errors import ImageDecodeError, ImageTooLarge, InvalidParameter, UnsupportedImage, VisionError
from shared.imaging import (
    DEFAULT_JPEG_QUALITY,
    DETAIL_MAX_SIDE,
    DRAFT_TOLERANCE,
    HIGH_DRAFT_HEADROOM,
    VIEW_ENCODING,
    VIEW_MIN_SHRINK,
    JpegEncoding,
    PreparedImage,
    image_size,
    prepare_image,
    resampling,
    select_detail_level,
    to_rgb,
    view_encoding,
)
from shared.imaging.encoding import standard_tables, view_tables
from shared.imaging.formats import sniff_format
from shared.tokens import estimate_image_tokens, load_model_overrides, service_view
from tests.conftest import IMAGES, encode, sensor_grain

RED, GREEN, BLUE, YELLOW, WHITE, BLACK = (
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255), (0, 0, 0),
)  # fmt: skip
CORPUS_IMAGES = [
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "camera.png",
    "page.png", "logo.png", "motorcycle_left.png", "motorcycle_right.png", "no_time_for_that_tiny.gif",
]  # fmt: skip


def naive_size(width: int, height: int, detail: str) -> tuple[int, int]:
    """The benchmark baseline's arithmetic, written out independently."""
    max_side = {"low": 512, "high": 2048, "auto": 1024}[detail]
    if max(width, height) <= max_side:
        return width, height
    ratio = max_side / max(width, height)
    return max(1, int(width * ratio)), max(1, int(height * ratio))


def assert_sends_the_service_view(prepared: PreparedImage, width: int, height: int, detail: str,
                                  model: str = "gpt-4o") -> None:
    """What is sent is what the service will look at: its own shrink of the naive size, or a reduced JPEG
    decode a few percent under that view, or the naive size itself where the service would shrink it less
    than VIEW_MIN_SHRINK or where the view would outweigh the naive image (flat colour); never more tokens
    than the naive size would bill."""
    naive = naive_size(width, height, detail)
    view = service_view(*naive, detail, model)
    assert prepared.estimated_tokens <= estimate_image_tokens(*naive, detail, model)
    if view != naive and max(naive) < VIEW_MIN_SHRINK * max(view):  # a small service shrink is kept: naive size sent
        assert (prepared.width, prepared.height) == naive
    if view != naive and (prepared.width, prepared.height) == naive:
        assert prepared.service_size == view
        assert prepared.estimated_tokens == estimate_image_tokens(*view, detail, model)
        view = naive
    if (prepared.width, prepared.height) != view:
        assert prepared.format == "JPEG"
        for sent, seen in zip((prepared.width, prepared.height), view, strict=True):
            assert (1 - DRAFT_TOLERANCE[detail]) * seen - 1 <= sent <= seen
        assert prepared.estimated_tokens == estimate_image_tokens(*view, detail, model)


def decoded(prepared: PreparedImage) -> Image.Image:
    """The prepared bytes decoded, after checking they are an RGB JPEG of the stated size."""
    im = Image.open(io.BytesIO(prepared.data))
    assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (prepared.width, prepared.height))
    im.load()
    return im


def close(actual, expected, tolerance: int = 24) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def png_header(width: int, height: int, idat: bytes = b"\x00" * 16, colour_type: int = 2) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``; ``idat`` need not match it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def gif_header(width: int, height: int) -> bytes:
    """A GIF whose screen and first frame claim ``width`` x ``height``, with almost no data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


# --- the corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_IMAGES)
@pytest.mark.parametrize("detail", ["low", "auto", "high"])
def test_corpus_images_become_rgb_jpegs_of_the_service_view(corpus, name, detail):
    data = (corpus / name).read_bytes()
    with Image.open(corpus / name) as source:
        width, height = source.size
    prepared = prepare_image(data, detail)
    decoded(prepared)
    assert (prepared.original_width, prepared.original_height) == (width, height)
    assert_sends_the_service_view(prepared, width, height, detail)
    assert prepared.format == {"png": "PNG", "jpg": "JPEG", "gif": "GIF"}[name.rsplit(".", 1)[1]]
    assert prepared.detail == detail
    assert prepared.estimated_tokens == estimate_image_tokens(prepared.width, prepared.height, detail)
    assert image_size(data) == (width, height, prepared.format)


def test_multipage_tiff_pillow_cannot_read_is_refused_cleanly(corpus):
    data = (corpus / "multipage_rgb.tif").read_bytes()
    assert sniff_format(data) == "TIFF"
    for call in (lambda: prepare_image(data), lambda: image_size(data)):
        with pytest.raises(ImageDecodeError) as info:
            call()
        assert info.value.status == 422
        assert info.value.to_problem()["format"] == "TIFF"


def test_animated_gif_uses_the_first_frame(corpus):
    data = (corpus / "no_time_for_that_tiny.gif").read_bytes()
    with Image.open(corpus / "no_time_for_that_tiny.gif") as gif:
        assert gif.n_frames == 24
        first = gif.convert("RGB")
    prepared = prepare_image(data, "high")
    assert (prepared.width, prepared.height) == (14, 25)
    # Same pixels in, same JPEG out: the first frame and nothing else.
    assert prepared.data == prepare_image(encode(first, "PNG"), "high").data


@pytest.mark.parametrize(("fmt", "params"), [("GIF", {}), ("PNG", {}), ("WEBP", {"lossless": True})])
def test_animations_in_every_format_use_the_first_frame(fmt, params):
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, BLUE, GREEN)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params)
    assert close(decoded(prepare_image(data)).getpixel((16, 16)), RED)


# --- modes -----------------------------------------------------------------------------


def two_tone(mode: str, left, right, size=(32, 16)) -> Image.Image:
    """Left half one value, right half another: halves align with JPEG's 16px blocks."""
    im = Image.new(mode, size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


def palette_image(transparent: bool) -> Image.Image:
    im = two_tone("P", 0, 1)
    im.putpalette([*RED, *BLUE])
    if transparent:
        im.info["transparency"] = 0
    return im


def i16(left: int, right: int, mode: str = "I;16") -> Image.Image:
    """A 16-bit two-tone image built from raw samples (Pillow's I;16 -> I;16B convert clips)."""
    order = {"I;16": "<", "I;16L": "<", "I;16B": ">", "I;16N": "="}[mode]
    row = [left] * 16 + [right] * 16
    return Image.frombytes(mode, (32, 16), struct.pack(f"{order}{32 * 16}H", *(row * 16)))


def ycbcr(colour) -> tuple[int, int, int]:
    return Image.new("RGB", (1, 1), colour).convert("YCbCr").getpixel((0, 0))


def lab(colour) -> tuple[int, int, int]:
    return Image.new("RGB", (1, 1), colour).convert("LAB").getpixel((0, 0))


MODE_CASES = {
    # id: (image, format, save params, expected left, expected right)
    "1-png": (lambda: two_tone("1", 0, 1), "PNG", {}, BLACK, WHITE),
    "1-tiff": (lambda: two_tone("1", 0, 1), "TIFF", {}, BLACK, WHITE),
    "L-png": (lambda: two_tone("L", 50, 200), "PNG", {}, (50,) * 3, (200,) * 3),
    "L-key-png": (lambda: two_tone("L", 50, 200), "PNG", {"transparency": 50}, WHITE, (200,) * 3),
    "LA-png": (lambda: two_tone("LA", (0, 0), (0, 255)), "PNG", {}, WHITE, BLACK),
    "LA-tiff": (lambda: two_tone("LA", (0, 0), (0, 255)), "TIFF", {}, WHITE, BLACK),
    "P-png": (lambda: palette_image(False), "PNG", {}, RED, BLUE),
    "P-gif": (lambda: palette_image(False), "GIF", {}, RED, BLUE),
    "P-bmp": (lambda: palette_image(False), "BMP", {}, RED, BLUE),
    "P-transparent-png": (lambda: palette_image(True), "PNG", {"transparency": 0}, WHITE, BLUE),
    "P-transparent-gif": (lambda: palette_image(True), "GIF", {"transparency": 0}, WHITE, BLUE),
    "RGB-key-png": (lambda: two_tone("RGB", RED, BLUE), "PNG", {"transparency": RED}, WHITE, BLUE),
    "RGB-bmp": (lambda: two_tone("RGB", RED, BLUE), "BMP", {}, RED, BLUE),
    "RGB-webp": (lambda: two_tone("RGB", RED, BLUE), "WEBP", {"lossless": True}, RED, BLUE),
    "RGB-tiff-lzw": (lambda: two_tone("RGB", RED, BLUE), "TIFF", {"compression": "tiff_lzw"}, RED, BLUE),
    # Transparent red must not bleed through; half-transparent red is pink on white.
    "RGBA-png": (lambda: two_tone("RGBA", (*RED, 0), (*RED, 128)), "PNG", {}, WHITE, (255, 127, 127)),
    "RGBA-webp": (lambda: two_tone("RGBA", (*RED, 0), (*RED, 128)), "WEBP", {"lossless": True}, WHITE, (255, 127, 127)),
    "RGBA-tiff": (lambda: two_tone("RGBA", (*RED, 0), (*RED, 128)), "TIFF", {}, WHITE, (255, 127, 127)),
    "CMYK-jpeg": (lambda: two_tone("CMYK", (0, 255, 255, 0), (0, 0, 0, 255)), "JPEG", {}, RED, BLACK),
    "CMYK-tiff": (lambda: two_tone("CMYK", (0, 255, 255, 0), (0, 0, 0, 255)), "TIFF", {}, RED, BLACK),
    "YCbCr-tiff": (lambda: two_tone("YCbCr", ycbcr(RED), ycbcr(BLUE)), "TIFF", {}, RED, BLUE),
    "LAB-tiff": (lambda: two_tone("LAB", lab(RED), lab(GREEN)), "TIFF", {}, RED, GREEN),
    # 16-bit: mid-grey must stay mid-grey, not clip to white.
    "I;16-png": (lambda: i16(32896, 65535), "PNG", {}, (128,) * 3, WHITE),
    "I;16-tiff": (lambda: i16(0, 32896), "TIFF", {}, BLACK, (128,) * 3),
    "I-tiff-16bit-range": (lambda: two_tone("I", 1028, 60000), "TIFF", {}, (4,) * 3, (233,) * 3),
    "I-tiff-8bit-range": (lambda: two_tone("I", 10, 200), "TIFF", {}, (10,) * 3, (200,) * 3),
    "I-tiff-signed": (lambda: two_tone("I", -5000, 5000), "TIFF", {}, BLACK, WHITE),
    "F-tiff-unit": (lambda: two_tone("F", 0.25, 1.0), "TIFF", {}, (64,) * 3, WHITE),
    "F-tiff-wide": (lambda: two_tone("F", -1.0, 3.0), "TIFF", {}, BLACK, WHITE),
}


@pytest.mark.parametrize("case", MODE_CASES, ids=list(MODE_CASES))
def test_every_mode_and_format_becomes_correct_rgb(case):
    make, fmt, params, left, right = MODE_CASES[case]
    source = make()
    data = encode(source, fmt, **params)
    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.mode == source.mode
    im = decoded(prepare_image(data))
    assert im.size == (32, 16)
    assert close(im.getpixel((4, 8)), left), im.getpixel((4, 8))
    assert close(im.getpixel((27, 8)), right), im.getpixel((27, 8))


@pytest.mark.parametrize(
    ("make", "left", "right", "tolerance"),
    [
        (lambda: two_tone("RGB", RED, BLUE).convert("RGBX"), RED, BLUE, 0),
        (lambda: two_tone("RGB", RED, BLUE).convert("HSV"), RED, BLUE, 4),
        (lambda: two_tone("RGB", RED, BLUE).convert("YCbCr"), RED, BLUE, 4),
        # 8-bit LAB quantises: sRGB green comes back as (13, 254, 14), blue is further off.
        (lambda: two_tone("RGB", RED, GREEN).convert("LAB"), RED, GREEN, 16),
        (lambda: two_tone("RGB", RED, BLUE).convert("CMYK"), RED, BLUE, 4),
        (lambda: two_tone("RGBA", (*RED, 0), (*BLUE, 255)).convert("RGBa"), WHITE, BLUE, 4),
        (lambda: two_tone("LA", (0, 0), (0, 255)).convert("La"), WHITE, BLACK, 4),
        (lambda: palette_image(False).convert("PA"), RED, BLUE, 4),
        (lambda: i16(32896, 65535, "I;16B"), (128,) * 3, WHITE, 4),
        (lambda: i16(32896, 65535, "I;16L"), (128,) * 3, WHITE, 4),
        (lambda: i16(0, 32896, "I;16N"), BLACK, (128,) * 3, 4),
        (lambda: two_tone("I", 7, 7), (7,) * 3, (7,) * 3, 0),
        (lambda: two_tone("I", 70000, 70000), (128,) * 3, (128,) * 3, 0),  # flat and out of range
    ],
)
def test_to_rgb_handles_in_memory_modes(make, left, right, tolerance):
    im = to_rgb(make())
    assert im.mode == "RGB"
    assert close(im.getpixel((4, 8)), left, tolerance) and close(im.getpixel((27, 8)), right, tolerance)


# --- orientation -----------------------------------------------------------------------

QUADRANTS = (RED, GREEN, BLUE, YELLOW)  # top-left, top-right, bottom-left, bottom-right
# How the *stored* pixels relate to the displayed image for each EXIF orientation
# (EXIF 2.3, tag 0x0112): the inverse of what a viewer must do to display them.
STORED_FROM_DISPLAYED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,  # mirrored
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,  # mirrored along the main diagonal
    6: Image.Transpose.ROTATE_90,  # viewer rotates 90 degrees clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # viewer rotates 90 degrees counter-clockwise
}


def quadrant_image(width: int, height: int) -> Image.Image:
    im = Image.new("RGB", (width, height))
    for index, colour in enumerate(QUADRANTS):
        x, y = (index % 2) * width // 2, (index // 2) * height // 2
        im.paste(colour, (x, y, x + width // 2, y + height // 2))
    return im


def with_orientation(displayed: Image.Image, orientation: int, fmt: str = "JPEG", **params) -> bytes:
    op = STORED_FROM_DISPLAYED[orientation]
    stored = displayed.transpose(op) if op is not None else displayed
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif.tobytes(), **params)


def assert_quadrants(im: Image.Image) -> None:
    w, h = im.size
    for index, colour in enumerate(QUADRANTS):
        x, y = (index % 2) * w // 2 + w // 4, (index // 2) * h // 2 + h // 4
        assert close(im.getpixel((x, y)), colour), (index, im.getpixel((x, y)))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("fmt", "params"), [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True})])
def test_exif_orientation_is_applied(orientation, fmt, params):
    data = with_orientation(quadrant_image(64, 32), orientation, fmt, **params)
    prepared = prepare_image(data)
    assert (prepared.original_width, prepared.original_height) == (64, 32)
    assert image_size(data)[:2] == (64, 32)
    im = decoded(prepared)
    assert im.size == (64, 32)
    assert_quadrants(im)
    with Image.open(io.BytesIO(data)) as original:  # Pillow's own transpose agrees
        assert_quadrants(ImageOps.exif_transpose(original).convert("RGB"))


@pytest.mark.parametrize("orientation", [6, 8, 5, 3])
@pytest.mark.parametrize(("detail", "size"), [("low", (256, 512)), ("high", (768, 1536))])
def test_orientation_with_a_reduced_jpeg_decode(orientation, detail, size):
    # Stored 2400x1200, displayed 1200x2400: the draft must use the stored axes. At "high" the decode
    # is shrunk by YCbCr planes (shared.imaging.resampling) and rotated afterwards, chroma and all.
    # Flat quadrants outweigh the naive image at the view's tables at "high", so the naive size goes instead
    # (shared.imaging.byte_budget), turned the same way.
    data = with_orientation(quadrant_image(1200, 2400), orientation, quality=90)
    prepared = prepare_image(data, detail)
    assert prepared.service_size == size
    assert (prepared.width, prepared.height) in (size, naive_size(1200, 2400, detail))
    assert_quadrants(decoded(prepared))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_is_ignored():
    data = encode(quadrant_image(64, 32), "JPEG", exif=b"Exif\x00\x00MM\x00*garbage")
    assert decoded(prepare_image(data)).size == (64, 32)


# --- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(4000, 3000), (3001, 2001), (1025, 1024), (2049, 10), (999, 4001), (600, 400)])
@pytest.mark.parametrize("detail", ["low", "auto", "high"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_size_is_the_service_view_and_never_bills_more(size, detail, fmt):
    gradient = Image.radial_gradient("L").resize(size).convert("RGB")
    prepared = prepare_image(encode(gradient, fmt), detail)
    assert_sends_the_service_view(prepared, *size, detail)
    assert max(prepared.width, prepared.height) <= DETAIL_MAX_SIDE[detail]
    decoded(prepared)


def test_high_detail_pixels_match_a_full_decode_lanczos_resize_to_the_view():
    # "high" is for text and tables: no shortcut filter, straight to what the service will look at.
    source = Image.radial_gradient("L").resize((3000, 2000)).convert("RGB")
    view = service_view(*naive_size(3000, 2000, "high"), "high")
    assert view == (1152, 768)  # 3000x2000 -> 2048x1365 (fit) -> 1152x768 (short side 768)
    expected = resampling.resize(source, view, Image.Resampling.LANCZOS)  # fast_image_resize's LANCZOS
    sent = prepare_image(encode(source, "PNG"), "high").data
    encoding = view_encoding(2048 / 1152, DEFAULT_JPEG_QUALITY)  # the service would have shrunk the naive 1.78x
    assert encoding.subsampling == "4:4:4" and encoding.tables == view_tables(0.085, DEFAULT_JPEG_QUALITY)
    assert sent == encode(expected, "JPEG", **encoding.save_options)
    pillow = source.resize(view, Image.Resampling.LANCZOS)
    assert ImageChops.difference(expected, pillow).getextrema() <= ((0, 2),) * 3  # Pillow's, to 2 levels


@pytest.mark.parametrize(
    ("detail", "view", "decode"), [("low", (512, 288), (1000, 563)), ("auto", (1024, 576), (2000, 1125))]
)
def test_a_reduced_decode_with_a_partial_last_row_is_not_taken_under_the_view(detail, view, decode, jpeg_decodes):
    """4000 x 2250 at 1/8 is 500 x 281.25: sent as it is, its last row would be part padding and the image
    stretched; filtered up to the view, it was 0.5-0.8 dB under the naive image. So the decode is the next
    scale, at least the view, filtered down to it."""
    source = Image.radial_gradient("L").resize((4000, 2250)).convert("RGB")
    prepared = prepare_image(encode(source, "JPEG", quality=95), detail)
    assert jpeg_decodes == [decode]
    assert (prepared.width, prepared.height) == view == service_view(*naive_size(4000, 2250, detail), detail)
    ideal = source.resize(view, Image.Resampling.LANCZOS)
    assert max(ImageStat.Stat(ImageChops.difference(decoded(prepared), ideal)).mean) < 1


def test_a_whole_reduced_decode_just_under_the_view_is_sent_as_it_is_at_auto_only(jpeg_decodes):
    """4000 x 3000 at 1/4 is exactly 1000 x 750, 2.3% under the 1024 x 768 view at "auto", same bill: sent as is,
    for the 8x. At "low", 1/8 (500 x 375) is as far under 512 x 384 and would be, but "low" sends the exact view,
    filtered from 1/4 (0.4 dB nearer the naive image's view, at 6.6x instead of 9.8x)."""
    data = encode(Image.radial_gradient("L").resize((4000, 3000)).convert("RGB"), "JPEG", quality=95)
    prepared = prepare_image(data, "auto")
    assert jpeg_decodes == [(1000, 750)] and (prepared.width, prepared.height) == (1000, 750)
    jpeg_decodes.clear()
    prepared = prepare_image(data, "low")
    assert jpeg_decodes == [(1000, 750)] and (prepared.width, prepared.height) == (512, 384)


def test_reading_text_at_high_decodes_a_jpeg_in_full(jpeg_decodes):
    """DCT-scaled decodes are blocky on glyph edges: a caller that will read text gets a full decode (the same
    view and bill) at "high", and at "auto" the exact view filtered from it, not the 1/4 decode as it is."""
    data = encode(Image.radial_gradient("L").resize((4000, 3000)).convert("RGB"), "JPEG", quality=95)
    photo, text = prepare_image(data, "high"), prepare_image(data, "high", reads_text=True)
    assert jpeg_decodes == [(2000, 1500), (4000, 3000)]
    assert (photo.width, photo.height, photo.estimated_tokens) == (text.width, text.height, text.estimated_tokens)
    jpeg_decodes.clear()
    auto = prepare_image(data, "auto", reads_text=True)
    assert jpeg_decodes == [(4000, 3000)] and (auto.width, auto.height) == (1024, 768)
    assert auto.estimated_tokens == prepare_image(data, "auto").estimated_tokens


async def test_text_tasks_and_extraction_prepare_for_reading_text(monkeypatch, make_analyzer, make_settings):
    from shared import analysis
    from shared.extraction import extract

    asked: list[bool] = []
    real = analysis.prepare_image

    def spy(*args, **kwargs):
        asked.append(kwargs["reads_text"])
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "prepare_image", spy)
    analyzer = make_analyzer(make_settings())
    data = encode(Image.new("RGB", (64, 48), "white"), "PNG")
    for task in ("ocr", "table_extraction", "detailed_analysis", None):
        await analyzer.prepare(data, "high", task)
    assert asked == [True, True, False, False]
    asked.clear()
    with contextlib.suppress(VisionError):
        await extract(analyzer, data, "invoice", detail="high")
    assert asked == [True]


def test_the_high_view_is_quantised_finer_the_more_the_service_would_have_shrunk():
    """The service's shrink of the naive image averages its JPEG noise away: the larger it would have been,
    the finer the view we send instead is quantised (VIEW_ENCODING), with full chroma, at any detail (at
    "auto" a square photo's view is 1.33x under its naive 1024 x 1024)."""
    naive = JpegEncoding("4:2:0", quality=85)
    assert view_encoding(1.0, 85) == view_encoding(1.29, 85) == naive  # the naive size itself: as asked
    steps = [sum(map(sum, view_encoding(ratio, 85).tables)) for ratio in (1.3, 1.6, 1.8, 2.0, 2.1, 2.3, 2.4, 2.7)]
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == len(steps)  # ever finer
    assert {view_encoding(ratio, 85).subsampling for ratio in (1.3, 2.0, 4.0)} == {"4:4:4"}
    assert VIEW_ENCODING[0][0] == VIEW_MIN_SHRINK


def test_the_view_tables_are_libjpegs_pulled_towards_their_mean_and_never_coarser_than_the_callers():
    """libjpeg's tables quantise the highest frequencies coarsest; at the view those hold the model's finest
    detail, so the view's tables are flatter: finer there, a little coarser at the lowest frequencies than
    libjpeg's at the quality of the same size. The caller's quality stays a floor, step by step."""
    for quality in (1, 10, 49, 50, 51, 75, 85, 95, 100):  # our copy of libjpeg's scaling is libjpeg's
        probe = encode(Image.new("RGB", (16, 16)), "JPEG", quality=quality)
        with Image.open(io.BytesIO(probe)) as image:
            assert tuple(map(tuple, image.quantization.values())) == standard_tables(quality)
    luma, chroma = view_tables(0.07, 85)
    q94 = standard_tables(94)[0]
    assert luma[-1] < q94[-1] and luma[0] > q94[0]  # finest where libjpeg is coarsest, and the other way round
    assert max(luma) - min(luma) < max(q94) - min(q94)
    coarse = view_tables(0.2, 92)  # a scale coarser than the caller's quality 92 somewhere
    assert all(step <= floor for table, floors in zip(coarse, standard_tables(92), strict=True)
               for step, floor in zip(table, floors, strict=True))
    assert coarse != view_tables(0.2, 85)
    sent = encode(Image.new("RGB", (16, 16)), "JPEG", **JpegEncoding("4:4:4", tables=(luma, chroma)).save_options)
    with Image.open(io.BytesIO(sent)) as image:  # Pillow writes the tables in the order we give them
        assert tuple(map(tuple, image.quantization.values())) == (luma, chroma)


def test_a_small_service_shrink_sends_the_naive_size():
    """4000 x 1875 at "high": the naive 2048 x 960 would be shrunk only 1.25x by the service (to 1638 x 768),
    under VIEW_MIN_SHRINK: it is sent at that size, encoded as the naive image is, at the view's bill. At
    1365 x 1024 (1.33x) the view itself is sent."""
    source = Image.radial_gradient("L").resize((4000, 1875)).convert("RGB")
    prepared = prepare_image(encode(source, "JPEG", quality=95), "high")
    assert (prepared.width, prepared.height) == (2048, 960)
    assert prepared.service_size == service_view(2048, 960, "high") == (1638, 768)
    assert prepared.estimated_tokens == estimate_image_tokens(1638, 768, "high")
    assert decoded(prepared).layer[0][1:3] == (2, 2)  # 4:2:0, as the naive image
    ideal = source.resize((2048, 960), Image.Resampling.LANCZOS)
    assert max(ImageStat.Stat(ImageChops.difference(decoded(prepared), ideal)).mean) < 2
    with Image.open(IMAGES / "coffee.png") as photo:  # a photo: a flat gradient would outweigh the naive image
        shown = prepare_image(encode(ImageOps.fit(photo.convert("RGB"), (1365, 1024)), "PNG"), "high")
    assert (shown.width, shown.height) == service_view(1365, 1024, "high") == (1023, 768)


@pytest.mark.parametrize("grain", [0, 10])
@pytest.mark.parametrize(("size", "model"), [((4000, 1875), "gpt-4o"), ((4000, 2250), "gpt-4.1-mini")])
def test_the_naive_size_sent_is_the_naive_image(size, model, grain, monkeypatch):
    """Sent at the naive size, ours is the naive image made faster: made as the naive image is, from an RGB
    decode. From the YCbCr planes (full-size chroma the encoder averages) a clean photo came out 0.05-0.1% smaller
    than the naive image, but a grainy one 0.5-0.7% larger."""
    with Image.open(IMAGES / "coffee.png") as source:
        photo = ImageOps.fit(source.convert("RGB"), size, Image.Resampling.LANCZOS)
    if grain:
        photo = ImageChops.add(photo, sensor_grain(size, grain), scale=1.0, offset=-128)
    data = encode(photo, "JPEG", quality=90)
    planes: list[str] = []
    real_shrink_planes = resampling.shrink_planes

    def spy(frame, size, resample, *, box=None, subsampling="4:2:0"):
        planes.append(subsampling)
        return real_shrink_planes(frame, size, resample, box=box, subsampling=subsampling)

    monkeypatch.setattr(resampling, "shrink_planes", spy)
    prepared = prepare_image(data, "high", model=model)
    naive = Image.open(io.BytesIO(data)).convert("RGB").resize(naive_size(*size, "high"), Image.Resampling.LANCZOS)
    assert (prepared.width, prepared.height) == naive.size != prepared.service_size
    assert planes == [] and decoded(prepared).layer[0][1:3] == (2, 2)  # from RGB, sent 4:2:0
    assert len(prepared.data) == pytest.approx(len(encode(naive, "JPEG", quality=85, optimize=True)), rel=0.001)


def test_high_never_decodes_below_the_headroom_over_the_view(jpeg_decodes):
    """libjpeg's DCT scaling is a blocky shrink for text: at "high" LANCZOS always does the last 1.4x or more.
    4000 x 3200 -> view 960 x 768: decoded at 1/2 (2000 x 1600), not at 1/4 (1000 x 800, just over it)."""
    source = Image.radial_gradient("L").resize((4000, 3200)).convert("RGB")
    prepared = prepare_image(encode(source, "JPEG", quality=95), "high")
    assert (prepared.width, prepared.height) == (960, 768)
    assert jpeg_decodes == [(2000, 1600)]
    assert min(side / sent for side, sent in zip(jpeg_decodes[0], (960, 768), strict=True)) >= HIGH_DRAFT_HEADROOM


def test_a_12_mp_jpeg_at_auto_is_sent_as_its_reduced_decode_and_low_and_high_are_not(monkeypatch):
    """libjpeg's DCT scaling lands 2.3% under the view (1000 x 750 for 1024 x 768): at "auto" that is sent as it
    is (same bill, no resize), faithful to the ideal at its own size; "low" (no speed target) and "high" (text
    and tables) go to the exact view with LANCZOS (fast_image_resize's, which Pillow's resize does not see)."""
    resized: list[tuple[int, int]] = []
    real_resize = Image.Image.resize

    def resize(self, size, resample=None, *args, **kwargs):
        if resample != Image.Resampling.NEAREST:  # NEAREST: shared.imaging.content picking rows to look at
            resized.append(tuple(size))
        return real_resize(self, size, resample, *args, **kwargs)

    source = Image.radial_gradient("L").resize((4000, 3000)).convert("RGB")
    data = encode(source, "JPEG", quality=95)
    monkeypatch.setattr(Image.Image, "resize", resize)
    auto, low = prepare_image(data, "auto"), prepare_image(data, "low")
    assert resized == []  # "auto" not resized, "low" by fast_image_resize only
    high = prepare_image(data, "high")
    monkeypatch.undo()

    assert (auto.width, auto.height) == (1000, 750) and (low.width, low.height) == (512, 384)
    assert (high.width, high.height) == (1024, 768)
    assert auto.estimated_tokens == high.estimated_tokens == estimate_image_tokens(1024, 768, "auto")
    assert low.estimated_tokens == estimate_image_tokens(512, 384, "low")
    for prepared in (auto, low, high):
        ideal = source.resize((prepared.width, prepared.height), Image.Resampling.LANCZOS)
        assert max(ImageStat.Stat(ImageChops.difference(decoded(prepared), ideal)).mean) < 2
    # The offline engine reads every pixel itself: it gets the detail's size, never a shortcut under it.
    engine = prepare_image(data, "auto", to_service_view=False)
    assert (engine.width, engine.height) == (1024, 768)


@pytest.mark.parametrize("detail", ["low", "auto", "high"])
def test_a_png_is_filtered_from_full_size_at_every_detail(monkeypatch, detail):
    """PNG has no reduced decode: every detail runs LANCZOS (fast_image_resize's) from the full image, no
    box pre-reduction, no other filter; "low" and "auto" encoded as before, "high" at the view's encoding."""
    reduced: list[object] = []
    monkeypatch.setattr(Image.Image, "reduce", lambda self, *args, **kwargs: reduced.append(args))
    source = Image.radial_gradient("L").resize((4000, 3000)).convert("RGB")
    prepared = prepare_image(encode(source, "PNG"), detail)
    assert reduced == []
    view = (prepared.width, prepared.height)
    assert view == {"low": (512, 384), "auto": (1024, 768), "high": (1024, 768)}[detail]
    encoding = view_encoding(2.0 if detail == "high" else 1.0, DEFAULT_JPEG_QUALITY)
    expected = resampling.resize(source, view, Image.Resampling.LANCZOS)
    optimize = detail != "high"  # sent at the naive image's size: Huffman tables fitted, as the naive path does
    assert prepared.data == encode(expected, "JPEG", **encoding.save_options, optimize=optimize)


@pytest.mark.parametrize("size", [(1, 1), (14, 25), (1, 5000), (5000, 1), (2, 3000)])
@pytest.mark.parametrize("detail", ["low", "auto", "high"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_tiny_and_extreme_aspect_images(size, detail, fmt):
    prepared = prepare_image(encode(Image.new("RGB", size, GREEN), fmt), detail)
    assert_sends_the_service_view(prepared, *size, detail)
    assert min(prepared.width, prepared.height) >= 1
    assert close(decoded(prepared).getpixel((0, 0)), GREEN, 40)


def test_estimated_tokens_follow_the_model_and_overrides():
    data = encode(Image.new("RGB", (1800, 2400), BLUE), "JPEG")
    mini = prepare_image(data, "high", model="gpt-4.1-mini")
    assert mini.estimated_tokens == estimate_image_tokens(1536, 2048, "high", "gpt-4.1-mini")
    overrides = load_model_overrides(
        '{"cheap": {"kind": "tile", "base_tokens": 1, "tile_tokens": 2,'
        ' "input_price_per_1m": 1, "output_price_per_1m": 1}}'
    )
    custom = prepare_image(data, "auto", model="cheap", model_overrides=overrides)
    assert custom.estimated_tokens == 1 + 2 * 4  # 768x1024 -> 2x2 tiles
    assert prepare_image(data, "low").estimated_tokens == 85


# --- output --------------------------------------------------------------------------------


def test_metadata_is_stripped():
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 1
    source = quadrant_image(64, 32)
    icc = b"\x00" * 128  # opaque bytes are enough: they must not be copied
    data = encode(source, "JPEG", exif=exif.tobytes(), icc_profile=icc, comment=b"secret")
    out = decoded(prepare_image(data))
    assert not {"exif", "icc_profile", "comment"} & set(out.info)
    assert b"SpyCam" not in prepare_image(data).data and b"secret" not in prepare_image(data).data


def test_quality_parameter_and_data_url():
    data = encode(Image.radial_gradient("L").resize((400, 300)), "PNG")
    low, high = prepare_image(data, jpeg_quality=20), prepare_image(data, jpeg_quality=95)
    assert len(low.data) < len(high.data)
    assert high.mime_type == "image/jpeg"
    assert high.data_url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(high.data_url.split(",", 1)[1]) == high.data


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"detail": "medium"}, "detail"),
        ({"detail": ""}, "detail"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
        ({"max_pixels": 0}, "max_pixels"),
    ],
)
def test_bad_parameters_are_invalid_parameter(kwargs, parameter):
    with pytest.raises(InvalidParameter) as info:
        prepare_image(encode(Image.new("RGB", (4, 4)), "PNG"), **kwargs)
    assert info.value.parameter == parameter and info.value.status == 400


def test_detail_is_normalised():
    assert prepare_image(encode(Image.new("RGB", (4, 4)), "PNG"), " HIGH ").detail == "high"


# --- formats and non-images ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_sniffing_reads_magic_bytes(fmt):
    assert sniff_format(encode(Image.new("RGB", (8, 8)), fmt)) == fmt


def test_sniffing_ignores_what_a_file_is_called(corpus, tmp_path):
    # A JPEG saved as ".png" is a JPEG: only the bytes are looked at.
    misnamed = tmp_path / "photo.png"
    misnamed.write_bytes((corpus / "rocket.jpg").read_bytes())
    assert sniff_format(misnamed.read_bytes()) == "JPEG"
    assert prepare_image(misnamed.read_bytes()).format == "JPEG"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"", None),
        (b"hello, this is plain text\n", None),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"PK\x03\x04" + b"\x00" * 40, "ZIP"),
        (b"BM is how this text starts, not a bitmap", None),
        (b"\x00\x00\x00\x1cftypheic" + b"\x00" * 32, "HEIC/AVIF"),
        (b"\x00\x00\x00\x1cftypisom" + b"\x00" * 32, None),  # an MP4 is not worth naming
        (random.Random(1).randbytes(4096), None),
        (b"\xff\xd8", None),  # two bytes are not a JPEG signature
    ],
)
def test_non_images_are_unsupported(data, detected):
    for call in (prepare_image, image_size):
        with pytest.raises(UnsupportedImage) as info:
            call(data)
        assert info.value.status == 415
        assert info.value.context.get("detected") == detected


def test_non_bytes_input_is_a_programming_error():
    with pytest.raises(TypeError):
        prepare_image("not bytes")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted():
    data = encode(Image.new("RGB", (4, 4)), "PNG")
    assert prepare_image(bytearray(data)).width == prepare_image(memoryview(data)).width == 4


# --- bombs -----------------------------------------------------------------------------------


def test_header_claiming_ten_gigapixels_is_too_large():
    data = png_header(100_000, 100_000)
    for call in (prepare_image, image_size):
        with pytest.raises(ImageTooLarge) as info:
            call(data)
        assert info.value.status == 422
        assert info.value.pixels == 10_000_000_000


@pytest.mark.parametrize("data", [png_header(10_000, 6_000), gif_header(10_000, 6_000)], ids=["png", "gif"])
def test_sixty_megapixels_is_refused_from_the_header_without_decoding(data):
    # The pixel data is garbage: decoding would raise ImageDecodeError, so
    # ImageTooLarge proves the limit was checked first.
    with pytest.raises(ImageTooLarge) as info:
        prepare_image(data)
    assert (info.value.pixels, info.value.limit_pixels) == (60_000_000, 50_000_000)
    assert image_size(data)[:2] == (10_000, 6_000)  # the header alone is fine to read
    with pytest.raises(ImageTooLarge):
        image_size(data, max_pixels=50_000_000)


@pytest.mark.parametrize("make", [png_header, gif_header], ids=["png", "gif"])
def test_the_limit_is_checked_before_decoding(make):
    # The same garbage at a small size is a decode error; one pixel over the
    # limit it must be ImageTooLarge instead, so nothing was decoded.
    data = make(1000, 600)
    with pytest.raises(ImageDecodeError) as info:
        prepare_image(data)
    assert type(info.value) is ImageDecodeError
    with pytest.raises(ImageTooLarge):
        prepare_image(data, max_pixels=599_999)


def test_a_real_highly_compressible_sixty_megapixel_png_is_refused():
    width, height = 10_000, 6_000
    squeeze = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * width  # filter byte + one grey row
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    data = png_header(width, height, idat, colour_type=0)  # 8-bit greyscale, all black
    assert len(data) < 200_000
    with pytest.raises(ImageTooLarge):
        prepare_image(data)


def test_jpeg_frame_header_claiming_huge_size_is_too_large():
    data = bytearray(encode(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    with pytest.raises(ImageTooLarge) as info:
        prepare_image(bytes(data))
    assert info.value.pixels == 3_600_000_000


def test_between_pillows_warning_and_error_limits_we_still_refuse():
    data = png_header(10_000, 10_000)  # 100 MP: Pillow only warns
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLarge):
        prepare_image(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deployment running with -W error
        with pytest.raises(ImageTooLarge):
            prepare_image(data)


def test_max_pixels_is_the_callers_limit():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLarge) as info:
        prepare_image(data, max_pixels=9_999)
    assert (info.value.pixels, info.value.limit_pixels) == (10_000, 9_999)
    assert prepare_image(data, max_pixels=10_000).width == 100


# --- broken files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rocket.jpg", "hubble_deep_field.jpg", "astronaut.png", "logo.png"])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.9])
def test_truncated_corpus_files_are_decode_errors(corpus, name, fraction):
    data = (corpus / name).read_bytes()
    with pytest.raises(ImageDecodeError) as info:
        prepare_image(data[: int(len(data) * fraction)])
    assert type(info.value) is ImageDecodeError and info.value.status == 422


def test_gif_cut_after_its_first_frame_still_has_every_pixel_we_use(corpus):
    data = (corpus / "no_time_for_that_tiny.gif").read_bytes()
    assert prepare_image(data[: len(data) // 2]).data == prepare_image(data).data
    with pytest.raises(ImageDecodeError):
        prepare_image(data[:120])  # inside the first frame


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_truncated_files_of_every_format_are_decode_errors(fmt):
    data = encode(Image.radial_gradient("L").resize((300, 200)).convert("RGB"), fmt)
    with pytest.raises(ImageDecodeError):
        prepare_image(data[: len(data) // 2])


def test_jpeg_missing_only_its_end_marker_is_refused_but_png_missing_iend_is_not():
    # Refusing truncation is a rule about pixels: a PNG without IEND has them all.
    jpeg = encode(Image.radial_gradient("L").convert("RGB"), "JPEG")
    with pytest.raises(ImageDecodeError):
        prepare_image(jpeg[:-2])
    png = encode(Image.radial_gradient("L"), "PNG")
    assert prepare_image(png[:-12]).width == 256


def test_mutated_files_never_raise_raw_exceptions():
    """Random corruption of valid files: every outcome is an image or a VisionError.

    The seed is fixed, so the split between decoded and refused is exact: a change in it means a
    change in what we accept, which should be a decision, not an accident.
    """
    rng = random.Random(20240601)
    base = Image.radial_gradient("L").resize((48, 32)).convert("RGB")
    seeds = [encode(base, fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")]
    seeds += [encode(base.convert("RGBA"), "PNG"), encode(base, "TIFF", compression="tiff_lzw")]
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randint(1, 16)]
        detail = rng.choice(["low", "auto", "high"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = "refused"
            with contextlib.suppress(VisionError):  # anything else fails the test
                decoded(prepare_image(bytes(data), detail))
                outcome = "decoded"
        outcomes[outcome] += 1
    assert outcomes == {"decoded": 110, "refused": 290}


# --- detail selection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "size", "expected"),
    [
        ("ocr", (100, 100), "high"),
        ("table_extraction", (300, 200), "high"),
        ("detailed_analysis", (5000, 5000), "high"),
        (" OCR ", (100, 100), "high"),
        ("classification", (4000, 3000), "low"),
        ("object_detection", (4000, 3000), "low"),
        ("quick_summary", (4000, 3000), "low"),
        (None, (767, 767), "low"),
        ("caption", (767, 500), "low"),
        (None, (768, 500), "auto"),
        (None, (2048, 2048), "auto"),
        (None, (2049, 100), "high"),
        ("", (100, 3000), "high"),
    ],
)
def test_select_detail_level(task, size, expected):
    assert select_detail_level(task, *size) == expected


def test_same_input_same_output_and_faithful_pixels():
    data = encode(quadrant_image(300, 200), "PNG")
    assert prepare_image(data) == prepare_image(data)
    difference = ImageChops.difference(decoded(prepare_image(data)), quadrant_image(300, 200))
    assert max(ImageStat.Stat(difference).mean) < 3
