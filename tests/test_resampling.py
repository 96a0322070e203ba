"""Shrinking decoded images: JPEGs by YCbCr planes, which JPEGs qualify, and what it costs in fidelity."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps

from shared.imaging import prepare_image, resampling
from shared.imaging.resampling import decodes_as_ycbcr, resize, shrink, shrink_planes
from tests.conftest import IMAGES, encode, psnr


def without_segment(data: bytes, marker: int) -> bytes:
    """The JPEG with its first APPn segment ``marker`` (0xE0 JFIF, 0xEE Adobe) cut out."""
    at = data.index(bytes((0xFF, marker)), 2)
    length = int.from_bytes(data[at + 2 : at + 4], "big")
    return data[:at] + data[at + 2 + length :]


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


def text_page(size=(2000, 1500), *, ink: int = 0, paper: int = 255) -> Image.Image:
    """Lines of small text: the hardest edges a resize meets, where filter rounding shows."""
    page = Image.new("L", size, paper)
    draw = ImageDraw.Draw(page)
    for y in range(20, size[1] - 40, 40):
        draw.text((20, y), "Invoice 2025-0117 total 1,234.56 EUR net 1,037.44 " * 3, fill=ink, font_size=30)
    return page


def exact_lanczos(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """LANCZOS in floating point, each band, rounded once: the filter with no 8-bit step between its passes."""
    bands = [band.convert("F").resize(size, Image.Resampling.LANCZOS).point(lambda v: v + 0.5).convert("L")
             for band in image.split()]
    return bands[0] if len(bands) == 1 else Image.merge(image.mode, bands)


# --- resize: LANCZOS by fast_image_resize ------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize(
    ("size", "levels"), [((1000, 750), 2), ((1024, 768), 2), ((333, 251), 2), ((2600, 1900), 4)],
    ids=["2x", "1.95x", "6x", "up"],
)
def test_lanczos_is_pillows_filter(mode, size, levels):
    """Down, up and by odd ratios: Pillow's LANCZOS to within a few levels on a photo-like image (smooth
    gradients, noise), so every fidelity figure measured with Pillow's filter still holds."""
    # Seeded (Pillow's effect_noise draws from the C library's shared generator, so it changed with test order).
    noise = Image.fromarray(np.random.default_rng(7).normal(128, 40, (1500, 2000)).clip(0, 255).astype(np.uint8))
    noise = noise.convert(mode)
    image = ImageChops.blend(Image.radial_gradient("L").resize((2000, 1500)).convert(mode), noise, 0.3)
    ours, pillow = resize(image, size, Image.Resampling.LANCZOS), image.resize(size, Image.Resampling.LANCZOS)
    assert (ours.mode, ours.size) == (mode, size)
    extrema = ImageChops.difference(ours, pillow).getextrema()
    assert all(high <= levels for _, high in ([extrema] if mode == "L" else extrema))


@pytest.mark.parametrize(("ink", "paper"), [(0, 255), (20, 249)], ids=["black-on-white", "grey-on-cream"])
def test_lanczos_on_text_is_as_close_as_pillows_to_the_exact_filter(ink, paper):
    """Text edges are where the two differ, by tens of levels at a few pixels: each rounds and clips its
    first pass to 8 bits, and they run the passes in a different order. Against the exact (floating-point)
    filter neither is consistently closer; they stay within about a dB of each other."""
    page = text_page(ink=ink, paper=paper)
    exact = exact_lanczos(page, (1024, 768))
    ours_db = psnr(resize(page, (1024, 768), Image.Resampling.LANCZOS), exact)
    pillow_db = psnr(page.resize((1024, 768), Image.Resampling.LANCZOS), exact)
    assert abs(ours_db - pillow_db) < 1.5
    assert ours_db > 40


def test_lanczos_honours_the_box_of_a_reduced_decode():
    """A reduced decode rounds its size up: the box says which part is the image (here 1999.5 x 1499.5)."""
    image = colour_scene((2000, 1500))
    box = (0, 0, 1999.5, 1499.5)
    ours = resize(image, (1024, 768), Image.Resampling.LANCZOS, box=box)
    pillow = image.resize((1024, 768), Image.Resampling.LANCZOS, box=box)
    assert psnr(ours, pillow) > 45
    shifted = resize(image, (1024, 768), Image.Resampling.LANCZOS, box=(500, 0, 1999.5, 1499.5))
    assert psnr(shifted, image.resize((1024, 768), Image.Resampling.LANCZOS, box=(500, 0, 1999.5, 1499.5))) > 45


@pytest.mark.parametrize(
    ("mode", "resample"),
    [("RGB", Image.Resampling.HAMMING), ("L", Image.Resampling.BICUBIC), ("LA", Image.Resampling.LANCZOS),
     ("YCbCr", Image.Resampling.LANCZOS), ("F", Image.Resampling.LANCZOS)],
)
def test_other_filters_and_modes_are_pillows_own(mode, resample):
    """fast_image_resize is used for LANCZOS on L, RGB and RGBA only: every other filter or mode is Pillow's
    resize itself."""
    image = colour_scene((900, 600)).convert(mode)
    assert resize(image, (300, 200), resample).tobytes() == image.resize((300, 200), resample).tobytes()


def test_rgba_is_premultiplied_as_pillow_does():
    """Transparent pixels' colour must not bleed into their neighbours: after flattening on white (what
    prepare_image does next) within a few levels of Pillow's premultiplied LANCZOS."""
    image = colour_scene((900, 600)).convert("RGBA")
    image.putalpha(Image.radial_gradient("L").resize((900, 600)))
    image.paste((255, 0, 0, 0), (0, 0, 450, 600))  # fully transparent red: must stay invisible
    ours = flattened(resize(image, (300, 200), Image.Resampling.LANCZOS))
    pillow = flattened(image.resize((300, 200), Image.Resampling.LANCZOS))
    assert all(high <= 3 for _, high in ImageChops.difference(ours, pillow).getextrema())


def flattened(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    background.alpha_composite(image)
    return background.convert("RGB")


def test_lanczos_on_l_and_rgb_is_not_pillows_resize(monkeypatch):
    """The speed rests on this: LANCZOS on planes and RGB never goes through Pillow's resize."""
    calls: list[str] = []
    real_resize = Image.Image.resize

    def recording(self, *args, **kwargs):
        calls.append(self.mode)
        return real_resize(self, *args, **kwargs)

    scene = colour_scene((900, 600))
    monkeypatch.setattr(Image.Image, "resize", recording)
    for mode in ("L", "RGB"):
        assert resize(scene.convert(mode), (300, 200), Image.Resampling.LANCZOS).size == (300, 200)
    assert calls == []
    resize(scene, (300, 200), Image.Resampling.HAMMING)
    assert calls == ["RGB"]


def test_the_same_size_is_a_copy():
    image = colour_scene((64, 48))
    same = resize(image, (64, 48), Image.Resampling.LANCZOS)
    assert same is not image and same.tobytes() == image.tobytes()


def test_lanczos_is_safe_from_many_threads_at_once():
    """Requests prepare images in worker threads: concurrent resizes must each get their own right answer."""
    from concurrent.futures import ThreadPoolExecutor

    images = [colour_scene((800, 600)).rotate(angle) for angle in (0, 90, 180, 270)]
    expected = [resize(image, (400, 300), Image.Resampling.LANCZOS).tobytes() for image in images]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: resize(images[i % 4], (400, 300), Image.Resampling.LANCZOS), range(32)))
    assert [result.tobytes() for result in results] == [expected[i % 4] for i in range(32)]


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


@pytest.mark.parametrize("size", [(1024, 768), (2, 2), (4, 700)])
def test_planes_chroma_is_what_4_2_0_keeps(size):
    """Luma at full size, chroma repeated 2x2 from its half-size plane, so the encoder's 4:2:0 average
    stores exactly that plane."""
    frame = colour_scene((2000, 1500)).convert("YCbCr")
    shrunk = shrink_planes(frame, size, Image.Resampling.LANCZOS)
    assert (shrunk.mode, shrunk.size) == ("YCbCr", size)
    assert shrunk.getchannel(0).tobytes() == resize(frame.getchannel(0), size, Image.Resampling.LANCZOS).tobytes()
    for band in (1, 2):
        plane = shrunk.getchannel(band)
        width, height = plane.size
        pixels = plane.load()
        assert all(pixels[x, y] == pixels[x - x % 2, y - y % 2] for x in range(width) for y in range(height))
        half = resize(frame.getchannel(band), (width // 2, height // 2), Image.Resampling.LANCZOS)
        assert plane.resize(half.size, Image.Resampling.NEAREST).tobytes() == half.tobytes()


@pytest.mark.parametrize("size", [(1023, 767), (1024, 767), (1023, 768), (1, 1), (3, 700)])
def test_planes_of_odd_sizes_keep_full_chroma_for_the_encoder_to_average(size):
    """An odd side ends in half a chroma sample of padding, which a half-size plane cannot place: chroma
    stays at full size, and the encoder's 2x2 average makes the half-size plane, as for the naive image."""
    frame = colour_scene((2000, 1500)).convert("YCbCr")
    shrunk = shrink_planes(frame, size, Image.Resampling.LANCZOS)
    assert (shrunk.mode, shrunk.size) == ("YCbCr", size)
    for band in range(3):
        expected = resize(frame.getchannel(band), size, Image.Resampling.LANCZOS)
        assert shrunk.getchannel(band).tobytes() == expected.tobytes()


@pytest.mark.parametrize("detail", ["low", "auto"])
def test_odd_sizes_keep_colour_edges_where_the_naive_image_has_them(detail):
    """A 3:2 photo at "low" is 512 x 341: a half-size chroma plane, stretched over the half sample of padding,
    put colour edges up to a pixel off (36.0 dB against the naive image's 36.5 on a 4000 x 2667 photo).
    Colour blocks at 4:2:0, against the ideal: at least as close as the naive image (full decode, LANCZOS)."""
    scene = colour_scene((2400, 1601))
    data = encode(scene, "JPEG", quality=95, subsampling="4:4:4")
    prepared = prepare_image(data, detail)
    assert prepared.height % 2 == 1
    ideal = scene.resize((prepared.width, prepared.height), Image.Resampling.LANCZOS)
    naive = encode(opened(data).resize((prepared.width, prepared.height), Image.Resampling.LANCZOS), "JPEG",
                   quality=85)
    assert psnr(opened(prepared.data), ideal) >= psnr(opened(naive), ideal) - 0.05


def test_shrink_dispatches_on_mode_with_the_filter(monkeypatch):
    frame = colour_scene((800, 600))
    monkeypatch.setattr(resampling, "FILTER", Image.Resampling.NEAREST)
    assert shrink(frame, (200, 150)).tobytes() == frame.resize((200, 150), Image.Resampling.NEAREST).tobytes()
    assert shrink(frame.convert("YCbCr"), (200, 150)).mode == "YCbCr"


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
    image's view instead, below.)"""
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


def test_full_chroma_planes_are_filtered_to_full_size():
    frame = colour_scene((2000, 1500)).convert("YCbCr")
    for size in ((1023, 767), (1500, 1100)):
        shrunk = shrink_planes(frame, size, Image.Resampling.LANCZOS, subsampling="4:4:4")
        assert (shrunk.mode, shrunk.size) == ("YCbCr", size)
        for band in (0, 1, 2):  # every plane LANCZOS from full size
            expected = resize(frame.getchannel(band), size, Image.Resampling.LANCZOS)
            assert shrunk.getchannel(band).tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="subsampling"):
        shrink_planes(frame, (10, 10), Image.Resampling.LANCZOS, subsampling="4:1:1")


def naive_view(data: bytes, view: tuple[int, int]) -> Image.Image:
    """What the service looks at when sent the naive image: full decode, LANCZOS to 2048 px, q85, shrunk by it."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        ratio = 2048 / max(image.size)
        naive = image.resize((int(image.width * ratio), int(image.height * ratio)), Image.Resampling.LANCZOS)
    return opened(encode(naive, "JPEG", quality=85)).convert("RGB").resize(view, Image.Resampling.LANCZOS)


@pytest.mark.parametrize(("model", "view"), [("gpt-4o", (1024, 768)), ("gpt-4.1-mini", (1408, 1056))])
@pytest.mark.parametrize("scene", ["colour", "photo"])
@pytest.mark.parametrize("size", [(4000, 3000), (2400, 1800)])
def test_at_high_the_model_sees_at_least_what_the_naive_image_gives_it(size, scene, model, view):
    """Sent at the service's view, ours must stay as good as the naive image after the service's own shrink
    (which averages its JPEG noise away and restores full chroma): PSNR against the ideal view, on saturated
    colour blocks and coloured text, where chroma resolution shows most, and on a photo; in fewer bytes. For
    both families: tile models shrink the naive 2048 x 1536 2x, patch models only 1.45x (to 1,536 patches)."""
    if scene == "colour":
        source = colour_scene(size)
    else:
        with Image.open(IMAGES / "coffee.png") as photo:
            source = ImageOps.fit(photo.convert("RGB"), size, Image.Resampling.LANCZOS)
    data = encode(source, "JPEG", quality=95)
    prepared = prepare_image(data, "high", model=model)
    assert prepared.service_size == view  # both sizes: the naive image is 2048 px wide
    # The view itself, or, where even the caller's quality at full chroma outweighs the naive image (saturated
    # colour blocks, 1.45x for patch models), the naive size, for the service to shrink as it does the naive one.
    expected = view if scene == "photo" or model == "gpt-4o" else (2048, 1536)
    assert (prepared.width, prepared.height) == expected
    seen = opened(prepared.data).convert("RGB").resize(view, Image.Resampling.LANCZOS)
    ideal = source.resize(view, Image.Resampling.LANCZOS)
    assert psnr(seen, ideal) >= psnr(naive_view(data, view), ideal) - 0.01
    naive = opened(data).convert("RGB").resize((2048, 1536), Image.Resampling.LANCZOS)
    naive_bytes = len(encode(naive, "JPEG", quality=85, optimize=True))
    if expected == view:
        assert len(prepared.data) < naive_bytes  # and in fewer bytes
    else:  # the naive image itself, made by our filter: its rounding is not Pillow's
        assert len(prepared.data) <= 1.002 * naive_bytes


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
