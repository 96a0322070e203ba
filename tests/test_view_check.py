"""Whether the view holds against the naive image as the service sees it (shared.imaging.view_check), and what
prepare_image does under a small service shrink: grain decoded in full, the view checked, the naive image sent
where the view does not hold."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.imaging import prepare as imaging
from shared.imaging import prepare_image
from shared.imaging import view_check as check
from shared.imaging.content import looks_grainy, quiet_share
from shared.imaging.encoding import view_tables_encoding
from shared.tokens import service_view
from tests.conftest import corpus_photo, encode, naive_jpeg, psnr

PATCH_MODEL = "gpt-4.1-mini"  # a 12 MP photo's naive image (2048 x 1536) is shrunk 1.45x to 1408 x 1056


@pytest.fixture(scope="module")
def grainy_12mp() -> bytes:
    return encode(corpus_photo(grain=10), "JPEG", quality=90)


@pytest.fixture(scope="module")
def clean_12mp() -> bytes:
    return encode(corpus_photo(), "JPEG", quality=90)


def seen(data: bytes, size: tuple[int, int]) -> Image.Image:
    """An encoded image as the service looks at it: decoded, and shrunk to its view."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    return rgb if rgb.size == size else rgb.resize(size, Image.Resampling.LANCZOS)


def no_worse_than_naive(data: bytes, sent: bytes, view: tuple[int, int]) -> None:
    """``sent`` (our preparation of ``data``) in no more bytes than the naive image, and seen by the service at its
    ``view`` at least as faithfully."""
    naive = naive_jpeg(data)
    assert len(sent) <= len(naive)
    with Image.open(io.BytesIO(data)) as source:
        ideal = source.convert("RGB").resize(view, Image.Resampling.LANCZOS)
    assert psnr(seen(sent, view), ideal) >= psnr(seen(naive, view), ideal)


def decodes_of_the_photo(jpeg_decodes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The photo's own decodes, leaving out the check's sample (a few bands, stacked, decoded as planes)."""
    return [size for size in jpeg_decodes if size[1] >= 1000]


def mean_squared(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def round_trip(image: Image.Image, **options) -> Image.Image:
    with Image.open(io.BytesIO(encode(image, "JPEG", **options))) as decoded:
        return decoded.convert(image.mode)


# --- the measure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("grain", [0, 6])
def test_the_sampled_errors_are_those_of_the_whole_images(grain):
    """Both errors, measured on one band in eight, land near those of the whole view and of the whole naive image
    shrunk as the service shrinks it."""
    naive = corpus_photo((2048, 1536), grain=grain)
    view = naive.resize((1408, 1056), Image.Resampling.LANCZOS)
    options = view_tables_encoding(0.13, 85, "4:4:4").save_options
    view_error, naive_error = check.seen_errors(view, options, naive, None, naive.size, 85)
    whole_view = mean_squared(view, round_trip(view, **options))
    naive_encoded = round_trip(naive, quality=85, subsampling="4:2:0")
    whole_naive = mean_squared(view, naive_encoded.resize(view.size, Image.Resampling.LANCZOS))
    assert view_error == pytest.approx(whole_view, rel=0.15)
    assert naive_error == pytest.approx(whole_naive, rel=0.25)
    assert naive_error < mean_squared(naive, naive_encoded)  # the service's shrink averages its JPEG noise


def test_a_finely_encoded_view_holds_and_a_coarse_one_does_not():
    naive = corpus_photo((2048, 1536))
    view = naive.resize((1408, 1056), Image.Resampling.LANCZOS)
    assert check.view_holds(view, view_tables_encoding(0.13, 85, "4:4:4").save_options, naive, None, naive.size, 85)
    assert not check.view_holds(view, {"quality": 40, "subsampling": "4:2:0"}, naive, None, naive.size, 85)


def test_a_reduced_decode_is_measured_through_its_box():
    """A 1/2 decode (2000 x 1500, the naive image a few percent larger) is filtered up to the naive scale."""
    naive = corpus_photo((2048, 1536))
    decoded = naive.resize((2000, 1500), Image.Resampling.LANCZOS)
    view = naive.resize((1408, 1056), Image.Resampling.LANCZOS)
    options = view_tables_encoding(0.13, 85, "4:4:4").save_options
    from_decode = check.seen_errors(view, options, decoded, (0, 0, 2000, 1500), naive.size, 85)
    from_naive = check.seen_errors(view, options, naive, None, naive.size, 85)
    assert from_decode[0] == from_naive[0]  # the view's own error does not depend on the decode
    assert from_decode[1] == pytest.approx(from_naive[1], rel=0.2)


def test_what_cannot_be_sampled_holds():
    short = corpus_photo((2048, 180))
    assert check.seen_errors(short.resize((1408, 124)), {"quality": 85}, short, None, short.size, 85) is None
    rgba = corpus_photo((2048, 1536)).convert("RGBA")
    assert check.seen_errors(rgba.resize((1408, 1056)), {"quality": 85}, rgba, None, rgba.size, 85) is None
    assert check.view_holds(rgba.resize((1408, 1056)), {"quality": 10}, rgba, None, rgba.size, 85)


def test_grain_is_told_from_clean_photos_and_pages(grainy_12mp, clean_12mp):
    """On the 1/2 decode prepare_image looks at: grain leaves few quiet second differences, photos and pages many."""
    def half(data):
        image = Image.open(io.BytesIO(data))
        image.draft("YCbCr", (image.width // 2, image.height // 2))
        image.load()
        return image

    assert looks_grainy(half(grainy_12mp)) and quiet_share(half(grainy_12mp)) < 0.15
    assert not looks_grainy(half(clean_12mp))
    page = Image.new("L", (2000, 1500), 245)
    page.paste(0, (100, 100, 1900, 140))
    assert not looks_grainy(page)
    assert quiet_share(Image.new("L", (2, 50))) == 1.0


# --- what prepare_image does -----------------------------------------------------------------------------


def test_a_grainy_photo_under_a_small_shrink_is_decoded_in_full_and_sent_as_the_naive_image(grainy_12mp,
                                                                                           jpeg_decodes):
    """For patch models the service shrinks a 12 MP photo's naive image only 1.45x: its grain did not fit in the
    view within the naive image's bytes (1.5 dB under its view), and from the 1/2 decode not at any bytes."""
    prepared = prepare_image(grainy_12mp, "high", model=PATCH_MODEL)
    assert decodes_of_the_photo(jpeg_decodes) == [(2000, 1500), (4000, 3000)]  # looked at, decoded again in full
    naive = naive_jpeg(grainy_12mp)
    assert (prepared.width, prepared.height) == (2048, 1536)
    assert len(prepared.data) <= 1.002 * len(naive)
    view = service_view(2048, 1536, "high", PATCH_MODEL)
    with Image.open(io.BytesIO(grainy_12mp)) as source:
        ideal = source.convert("RGB").resize(view, Image.Resampling.LANCZOS)
    assert psnr(seen(prepared.data, view), ideal) >= psnr(seen(naive, view), ideal) - 0.05


def test_a_clean_photo_under_a_small_shrink_keeps_its_reduced_decode_and_its_view(clean_12mp, jpeg_decodes):
    prepared = prepare_image(clean_12mp, "high", model=PATCH_MODEL)
    assert decodes_of_the_photo(jpeg_decodes) == [(2000, 1500)]
    assert (prepared.width, prepared.height) == (1408, 1056)
    naive = naive_jpeg(clean_12mp)
    assert len(prepared.data) < len(naive)
    with Image.open(io.BytesIO(clean_12mp)) as source:
        ideal = source.convert("RGB").resize((1408, 1056), Image.Resampling.LANCZOS)
    assert psnr(seen(prepared.data, (1408, 1056)), ideal) > psnr(seen(naive, (1408, 1056)), ideal)


def test_a_grainy_16_9_photo_for_tile_models_keeps_its_view_from_the_full_decode(jpeg_decodes):
    """Tile models shrink a 16:9 photo's naive image (2048 x 1152) 1.5x: from the full decode its view holds."""
    data = encode(corpus_photo((4000, 2250), grain=10, name="astronaut.png"), "JPEG", quality=90)
    prepared = prepare_image(data, "high")
    assert decodes_of_the_photo(jpeg_decodes) == [(2000, 1125), (4000, 2250)]
    assert (prepared.width, prepared.height) == (1365, 768)
    no_worse_than_naive(data, prepared.data, (1365, 768))


def test_a_view_that_does_not_hold_gives_way_to_the_naive_image_made_from_a_full_rgb_decode(monkeypatch):
    """A grainy 3:2 photo for patch models (1.38x) is decoded in full as planes anyway (its view is within 1.4x of
    the 1/2 decode); made from planes, the naive size came out up to 0.7% over the naive image: it is made from
    a full RGB decode instead, as the naive image is."""
    data = encode(corpus_photo((4000, 2667), grain=10, name="astronaut.png"), "JPEG", quality=90)
    checked, opened = [], []
    monkeypatch.setattr(imaging, "view_holds", lambda *args: checked.append(args[2].mode) or False)
    real_open = imaging.open_image
    monkeypatch.setattr(imaging, "open_image", lambda *args: opened.append(args[1]) or real_open(*args))
    prepared = prepare_image(data, "high", model=PATCH_MODEL)
    assert checked == ["YCbCr"] and opened == ["JPEG", "JPEG"]
    assert (prepared.width, prepared.height) == (2048, 1365)
    assert prepared.estimated_tokens == prepare_image(data, "high", model=PATCH_MODEL,
                                                      to_service_view=False).estimated_tokens
    assert len(prepared.data) == pytest.approx(len(naive_jpeg(data)), rel=0.002)


def test_only_grain_under_a_small_shrink_is_checked(clean_12mp, grainy_12mp, monkeypatch):
    """Clean photos under a small shrink had 0.6-0.93 of the naive image's error, and the check costs ~10 ms;
    at the tile models' 2x shrink every photo measured held, grainy or not."""
    monkeypatch.setattr(imaging, "view_holds", lambda *args: pytest.fail("checked"))
    assert (prepare_image(clean_12mp, "high", model=PATCH_MODEL).width, check.CHECK_BELOW) == (1408, 1.6)
    assert prepare_image(grainy_12mp, "high").width == 1024


def test_grain_at_a_large_shrink_is_decoded_in_full_too(jpeg_decodes):
    """Tile models shrink a 3000 x 3000 photo's naive image 2.67x, which averages its JPEG noise nearly away:
    from the 1/2 decode the view was under the naive image's (47.5 against 47.9 dB on chelsea's grain), from
    the full decode it is over it (50.5). The view is not checked there: no photo measured needed it."""
    data = encode(corpus_photo((3000, 3000), grain=10, name="chelsea.png"), "JPEG", quality=90)
    prepared = prepare_image(data, "high")
    assert jpeg_decodes == [(1500, 1500), (3000, 3000)]
    assert (prepared.width, prepared.height) == (768, 768)
    no_worse_than_naive(data, prepared.data, (768, 768))
