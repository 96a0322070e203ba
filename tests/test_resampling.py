"""Shrinking decoded images: JPEGs by YCbCr planes, which JPEGs qualify, and what it costs in fidelity."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from shared.imaging import HIGH_VIEW_SUBSAMPLING, prepare_image, resampling
from shared.imaging.resampling import decodes_as_ycbcr, shrink, shrink_planes
from tests.conftest import encode


def without_segment(data: bytes, marker: int) -> bytes:
    """The JPEG with its first APPn segment ``marker`` (0xE0 JFIF, 0xEE Adobe) cut out."""
    at = data.index(bytes((0xFF, marker)), 2)
    length = int.from_bytes(data[at + 2 : at + 4], "big")
    return data[:at] + data[at + 2 + length :]


def psnr(actual: Image.Image, expected: Image.Image) -> float:
    stat = ImageStat.Stat(ImageChops.difference(actual.convert("RGB"), expected.convert("RGB")))
    mse = sum(stat.sum2) / (3 * expected.width * expected.height)
    return 10 * math.log10(255**2 / mse) if mse else math.inf


def colour_scene(size=(2400, 1800)) -> Image.Image:
    """Saturated colour blocks, coloured text and a gradient: chroma edges as well as luma ones."""
    scene = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(scene)
    colours = [(220, 30, 30), (30, 160, 40), (30, 60, 220), (240, 200, 20)]
    for i, colour in enumerate(colours):
        draw.rectangle((100 + i * 550, 100, 500 + i * 550, 700), fill=colour)
        draw.text((120 + i * 550, 900), "Total 1,234.56 EUR", fill=colour, font_size=60)
    return scene


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_jfif_jpegs_decode_as_ycbcr():
    assert decodes_as_ycbcr(opened(encode(colour_scene((64, 48)), "JPEG")))


def test_camera_jpegs_without_jfif_decode_as_ycbcr_by_their_component_ids():
    """Phone photos carry Exif and no JFIF marker; libjpeg reads components 1, 2, 3 as YCbCr."""
    data = without_segment(encode(colour_scene((64, 48)), "JPEG"), 0xE0)
    image = opened(data)
    assert "jfif" not in image.info and [c[0] for c in image.layer] == [1, 2, 3]
    assert decodes_as_ycbcr(image)


@pytest.mark.parametrize("strip_adobe", [False, True], ids=["adobe-transform-0", "component-ids-RGB"])
def test_jpegs_stored_as_rgb_stay_rgb_and_still_prepare(strip_adobe):
    """libjpeg refuses YCbCr output from a JPEG stored as RGB: those keep the RGB path, colours intact."""
    scene = colour_scene()
    data = encode(scene, "JPEG", keep_rgb=True, quality=95)
    if strip_adobe:
        data = without_segment(data, 0xEE)
    assert not decodes_as_ycbcr(opened(data))
    prepared = prepare_image(data, "high")
    ideal = scene.resize((prepared.width, prepared.height), Image.Resampling.LANCZOS)
    assert psnr(opened(prepared.data), ideal) > 30


@pytest.mark.parametrize(("mode", "fmt"), [("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG")])
def test_other_images_do_not_decode_as_ycbcr(mode, fmt):
    assert not decodes_as_ycbcr(opened(encode(Image.new(mode, (16, 16)), fmt)))


@pytest.mark.parametrize("size", [(1024, 768), (1023, 767), (1, 1), (3, 700)])
def test_planes_chroma_is_what_4_2_0_keeps(size):
    """Luma at full size, chroma repeated 2x2 from its half-size plane, so the encoder's 4:2:0 average
    stores exactly that plane; odd sizes crop the last half block."""
    frame = colour_scene((2000, 1500)).convert("YCbCr")
    shrunk = shrink_planes(frame, size, Image.Resampling.LANCZOS)
    assert (shrunk.mode, shrunk.size) == ("YCbCr", size)
    assert shrunk.getchannel(0).tobytes() == frame.getchannel(0).resize(size, Image.Resampling.LANCZOS).tobytes()
    for band in (1, 2):
        plane = shrunk.getchannel(band)
        width, height = plane.size
        pixels = plane.load()
        assert all(pixels[x, y] == pixels[x - x % 2, y - y % 2] for x in range(width) for y in range(height))


def test_shrink_dispatches_on_mode_with_the_details_filter(monkeypatch):
    frame = colour_scene((800, 600))
    monkeypatch.setitem(resampling.RESAMPLE, "auto", Image.Resampling.NEAREST)
    assert shrink(frame, (200, 150), "auto").tobytes() == frame.resize((200, 150), Image.Resampling.NEAREST).tobytes()
    assert shrink(frame.convert("YCbCr"), (200, 150), "auto").mode == "YCbCr"


def test_high_decodes_and_encodes_ycbcr_without_a_colour_conversion(monkeypatch):
    """Most JPEGs: libjpeg hands over YCbCr, luma and chroma are shrunk apart, YCbCr goes back to the encoder."""
    data = encode(colour_scene(), "JPEG", quality=95)
    converted: list[str] = []
    real_convert = Image.Image.convert

    def convert(self, mode=None, *args, **kwargs):
        converted.append(mode)
        return real_convert(self, mode, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", convert)
    prepared = prepare_image(data, "high")
    monkeypatch.undo()
    assert converted == []
    assert opened(prepared.data).mode == "RGB"  # a plain JFIF YCbCr JPEG, read back as RGB


@pytest.mark.parametrize("detail", ["low", "auto"])
def test_planes_cost_little_against_shrinking_rgb(monkeypatch, detail):
    """Fidelity against the ideal (full decode, LANCZOS, no encoding) at 4:2:0: by planes as faithful as the
    RGB path (within 0.25 dB) on saturated colour blocks and coloured text. ("high" is held to the naive
    image's view instead, below: its full-size chroma is box-reduced first, on purpose.)"""
    scene = colour_scene()
    data = encode(scene, "JPEG", quality=95)
    by_planes = prepare_image(data, detail)
    monkeypatch.setattr("shared.imaging.prepare.decodes_as_ycbcr", lambda image: False)
    as_rgb = prepare_image(data, detail)
    assert (by_planes.width, by_planes.height) == (as_rgb.width, as_rgb.height)
    ideal = scene.resize((by_planes.width, by_planes.height), Image.Resampling.LANCZOS)
    planes_db, rgb_db = psnr(opened(by_planes.data), ideal), psnr(opened(as_rgb.data), ideal)
    assert planes_db > rgb_db - 0.25
    assert planes_db > 30


@pytest.mark.parametrize(
    ("detail", "sampling"),
    [("low", [(2, 2), (1, 1), (1, 1)]), ("auto", [(2, 2), (1, 1), (1, 1)]), ("high", [(1, 1), (1, 1), (1, 1)])],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_chroma_is_half_size_except_at_the_high_view(detail, sampling, fmt):
    """4:2:0 where the naive image is itself the service's view; full chroma (4:4:4) where we send the view
    at "high" instead of an image the service would shrink, and so give the model full chroma, itself."""
    image = opened(prepare_image(encode(colour_scene((2400, 1800)), fmt), detail).data)
    assert [(h, v) for _, h, v, _ in image.layer] == sampling
    assert HIGH_VIEW_SUBSAMPLING == "4:4:4"


def test_full_chroma_planes_are_filtered_to_full_size():
    frame = colour_scene((2000, 1500)).convert("YCbCr")
    shrunk = shrink_planes(frame, (1023, 767), Image.Resampling.LANCZOS, subsampling="4:4:4")
    assert (shrunk.mode, shrunk.size) == ("YCbCr", (1023, 767))
    for band in (1, 2):  # 1.96x: box-reduced 2x to 1000 x 750, 2.2% under, then LANCZOS up to the size
        expected = frame.getchannel(band).reduce(2).resize((1023, 767), Image.Resampling.LANCZOS)
        assert shrunk.getchannel(band).tobytes() == expected.tobytes()
    assert shrink_planes(frame, (1500, 1100), Image.Resampling.LANCZOS, subsampling="4:4:4").getchannel(
        1
    ).tobytes() == (frame.getchannel(1).resize((1500, 1100), Image.Resampling.LANCZOS).tobytes())  # 1.33x: no reduction
    with pytest.raises(ValueError, match="subsampling"):
        shrink_planes(frame, (10, 10), Image.Resampling.LANCZOS, subsampling="4:1:1")


def naive_view(data: bytes, view: tuple[int, int]) -> Image.Image:
    """What the service looks at when sent the naive image: full decode, LANCZOS to 2048 px, q85, shrunk by it."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        ratio = 2048 / max(image.size)
        naive = image.resize((int(image.width * ratio), int(image.height * ratio)), Image.Resampling.LANCZOS)
    return opened(encode(naive, "JPEG", quality=85)).convert("RGB").resize(view, Image.Resampling.LANCZOS)


@pytest.mark.parametrize("size", [(4000, 3000), (2400, 1800)])
def test_at_high_the_model_sees_at_least_what_the_naive_image_gives_it(size):
    """Sent at the service's view, ours must stay as good as the naive image after the service's own shrink
    (which averages its JPEG noise away and restores full chroma): PSNR against the ideal view, on saturated
    colour blocks and coloured text, where chroma resolution shows most."""
    scene = colour_scene(size)
    data = encode(scene, "JPEG", quality=95)
    prepared = prepare_image(data, "high")
    view = (prepared.width, prepared.height)
    assert view == (1024, 768)  # both sizes: 2048 px wide for the naive image, 1024 x 768 for the service
    ideal = scene.resize(view, Image.Resampling.LANCZOS)
    assert psnr(opened(prepared.data), ideal) >= psnr(naive_view(data, view), ideal) - 0.5


@pytest.mark.parametrize(
    "params",
    [{"progressive": True}, {"subsampling": "4:4:4"}, {"subsampling": "4:2:2"}, {"quality": 20}],
    ids=["progressive", "source-4:4:4", "source-4:2:2", "quality-20"],
)
@pytest.mark.parametrize("detail", ["low", "auto", "high"])
def test_jpegs_of_every_kind_go_by_planes_faithfully(params, detail):
    """Progressive files and every chroma subsampling decode by planes (odd sizes too) and stay close to the
    ideal view; a quality-20 source is held only to what its own blocks allow."""
    scene = colour_scene((3001, 2001))
    data = encode(scene, "JPEG", **params)
    assert decodes_as_ycbcr(opened(data))
    prepared = prepare_image(data, detail)
    ideal = scene.resize((prepared.width, prepared.height), Image.Resampling.LANCZOS)
    assert psnr(opened(prepared.data), ideal) > (30 if "quality" in params else 33)
