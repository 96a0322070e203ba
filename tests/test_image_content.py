"""Telling pages from photos (shared.imaging.content), and what prepare_image does with a page sent without a
text task: the reduced JPEG decode is blocky on glyphs, so a page is decoded again in full."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw, ImageFont

from shared.imaging import prepare as prepare_module
from shared.imaging import prepare_image
from shared.imaging.content import SHARP_EDGE_SHARE, Look, looks_sharp_edged, sharp_edge_share
from tests.conftest import corpus_photo, encode, psnr

WORDS = ["invoice", "total", "amount", "due", "tax", "item", "quantity", "1234.56", "EUR", "07/2025"]


def text_page(size=(2400, 1800), ink=(20, 20, 30), paper=(250, 248, 240), text_px=24) -> Image.Image:
    """A scan-like page of small text, dense enough that the reduced decode loses its glyphs' edges."""
    rng = random.Random(7)
    page = Image.new("RGB", size, paper)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=text_px)
    for y in range(40, size[1] - 40, text_px * 4 // 3):
        draw.text((50, y), " ".join(rng.choice(WORDS) for _ in range(30)), fill=ink, font=font)
    return page


def reduced_decode(data: bytes, scale: int) -> Image.Image:
    """The JPEG decoded at 1/scale by libjpeg's DCT scaling, as YCbCr planes: what prepare_image looks at."""
    image = Image.open(io.BytesIO(data))
    image.draft("YCbCr", (image.width // scale, image.height // scale))
    image.load()
    return image


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_a_page_is_sharp_edged_at_every_reduced_decode(scale):
    data = encode(text_page(), "JPEG", quality=90)
    assert sharp_edge_share(reduced_decode(data, scale)) >= SHARP_EDGE_SHARE


@pytest.fixture(scope="module")
def twelve_mp_photos() -> dict[tuple[str, int], bytes]:
    """12 MP JPEGs, smooth and grainy, as the benchmark's photos: decoded at 1/8 they are 500 x 375, the
    smallest decode prepare_image makes of them. (Smaller still, the Hubble deep field's stars are points,
    sharp edges indeed: 0.22 at 300 x 225, where a full decode would serve it better too.)"""
    return {
        (name, grain): encode(corpus_photo((4000, 3000), grain, name), "JPEG", quality=90)
        for name in ("astronaut.png", "coffee.png", "chelsea.png", "hubble_deep_field.jpg")
        for grain in (0, 10)
    }


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_photos_are_not_sharp_edged(twelve_mp_photos, scale):
    shares = {key: sharp_edge_share(reduced_decode(data, scale)) for key, data in twelve_mp_photos.items()}
    assert max(shares.values()) < SHARP_EDGE_SHARE, shares


def test_the_luma_of_every_mode_gives_the_same_answer():
    """Y of the JPEG planes, L, and the luma computed from RGB(A) agree on a grey page (Y = L = R = G = B)."""
    page = text_page(ink=(30, 30, 30), paper=(245, 245, 245))
    shares = [sharp_edge_share(page.convert(mode)) for mode in ("L", "RGB", "RGBA", "YCbCr")]
    assert min(shares) >= SHARP_EDGE_SHARE
    assert max(shares) - min(shares) < 0.02


@pytest.mark.parametrize("size", [(1, 1), (2, 300), (300, 1), (64, 64)])
def test_flat_tiny_and_narrow_images_are_not_sharp_edged(size):
    assert sharp_edge_share(Image.new("L", size, 200)) == 0.0
    assert not looks_sharp_edged(Image.new("RGB", size, "white"))


def test_a_single_step_is_sharp_and_a_gentle_ramp_is_not():
    step = Image.new("L", (64, 8), 250)
    step.paste(10, (32, 0, 64, 8))
    assert sharp_edge_share(step) == 1.0
    ramp = Image.linear_gradient("L").rotate(90).resize((64, 8))
    assert sharp_edge_share(ramp) == 0.0


@pytest.mark.parametrize("detail", ["low", "auto", "high"])
def test_a_page_sent_without_a_text_task_is_prepared_as_for_reading_text(jpeg_decodes, detail):
    """The reduced decode is looked at, found to be a page, and the page decoded again in full: the image sent
    is the one an OCR request would send, byte for byte, at the same bill."""
    data = encode(text_page(size=(4000, 3000)), "JPEG", quality=90)
    as_sent = prepare_image(data, detail)
    assert len(jpeg_decodes) == 2 and jpeg_decodes[0] < (4000, 3000) and jpeg_decodes[1] == (4000, 3000)
    jpeg_decodes.clear()
    for_reading = prepare_image(data, detail, reads_text=True)
    assert jpeg_decodes == [(4000, 3000)]  # a caller that says it reads text skips the look
    assert as_sent.data == for_reading.data
    assert as_sent.estimated_tokens == for_reading.estimated_tokens


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_scans_are_caught_too(jpeg_decodes, mode):
    """Scanners often save greyscale, print workflows CMYK: libjpeg decodes those as L and CMYK, not YCbCr."""
    data = encode(text_page(size=(4000, 3000)).convert(mode), "JPEG", quality=90)
    as_sent = prepare_image(data, "auto")
    assert jpeg_decodes == [(1000, 750), (4000, 3000)]
    assert as_sent.data == prepare_image(data, "auto", reads_text=True).data


@pytest.mark.parametrize("detail", ["low", "auto", "high"])
def test_a_photo_keeps_its_reduced_decode_and_grain_at_high_is_decoded_again_in_full(twelve_mp_photos, jpeg_decodes,
                                                                                      detail):
    """At "high" the view is filtered 2x from the 1/2 decode; the DCT scaling's blocks stayed in grain (46.9 dB
    from the ideal before encoding, against 49.7 from the full decode: under the naive image's view)."""
    for (_, grain), data in twelve_mp_photos.items():
        jpeg_decodes.clear()
        prepare_image(data, detail)
        decodes = [size for size in jpeg_decodes if size[1] >= 375]  # the photo's, not the view check's sample
        assert decodes[0] <= (2000, 1500)
        assert decodes[1:] == ([(4000, 3000)] if grain and detail == "high" else [])


def test_the_second_decode_is_what_keeps_a_page_faithful(monkeypatch):
    """At "auto" the view filtered from the page's reduced decode (1/2: 1200 x 900 to 1024 x 768) is far from
    the ideal view; filtered from the full decode it is close to it (measured: 28.7 against 33.5 dB)."""
    source = text_page()
    data = encode(source, "JPEG", quality=90)
    prepared = prepare_image(data, "auto")
    sent = Image.open(io.BytesIO(prepared.data))
    ideal = source.resize(sent.size, Image.Resampling.LANCZOS)
    monkeypatch.setattr(prepare_module, "look", lambda image: Look(sharp_edged=False, grainy=False))
    blocky = Image.open(io.BytesIO(prepare_image(data, "auto").data))
    ideal_blocky = source.resize(blocky.size, Image.Resampling.LANCZOS)
    assert psnr(sent, ideal) > psnr(blocky, ideal_blocky) + 3


def test_the_offline_engine_gets_the_full_decode_of_a_page_too(jpeg_decodes):
    """``to_service_view`` False (the offline engine's OCR) reads every pixel of the detail's size: a page's
    reduced decode, a filter's input there, is replaced by the full one as well."""
    data = encode(text_page(size=(4800, 3600)), "JPEG", quality=90)
    prepared = prepare_image(data, "high", to_service_view=False)
    assert (prepared.width, prepared.height) == (2048, 1536)
    assert jpeg_decodes[-1] == (4800, 3600)
