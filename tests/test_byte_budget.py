"""The view's bytes fitted to the naive image's (shared.imaging.byte_budget): the estimate, the refit, the choice,
and what a grainy photo at "high" gets from them."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image, ImageDraw

from shared.imaging import byte_budget as budget
from shared.imaging import prepare as imaging
from shared.imaging import prepare_image
from shared.imaging.encoding import VIEW_ENCODING, view_encoding
from tests.conftest import corpus_photo, encode, naive_jpeg, psnr


@pytest.fixture(scope="module")
def grainy_jpeg() -> bytes:
    return encode(corpus_photo(grain=10), "JPEG", quality=90)


def reduced_decode(data: bytes, scale: int) -> tuple[Image.Image, tuple[float, float, float, float]]:
    image = Image.open(io.BytesIO(data))
    mode_box = image.draft("YCbCr", (image.width // scale, image.height // scale))
    image.load()
    return image, mode_box[1]


# --- the estimate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("grain", [0, 10])
def test_the_estimate_from_a_reduced_decode_is_near_the_naive_images_bytes(grain):
    """A 12 MP photo's 1/2 decode (2000 x 1500) is taken for the naive image (2048 x 1536) itself."""
    data = encode(corpus_photo(grain=grain), "JPEG", quality=90)
    frame, box = reduced_decode(data, 2)
    assert frame.size == (2000, 1500)
    estimate = budget.naive_bytes(frame, box, (2048, 1536), 85)
    assert estimate == pytest.approx(len(naive_jpeg(data)), rel=0.08)


def test_the_estimate_from_a_full_decode_filters_its_bands_to_the_naive_scale():
    """A PNG is decoded in full (4000 x 3000): each band is filtered to the naive scale first."""
    image = corpus_photo(grain=6)
    estimate = budget.naive_bytes(image, None, (2048, 1536), 85)
    assert estimate == pytest.approx(len(naive_jpeg(encode(image, "PNG"))), rel=0.08)
    unfiltered = budget.naive_bytes(image, None, (4000, 3000), 85)  # the same image taken at its own size
    assert unfiltered > 1.5 * estimate


def test_the_estimate_follows_the_callers_quality():
    frame, box = reduced_decode(encode(corpus_photo(grain=4), "JPEG", quality=90), 2)
    assert budget.naive_bytes(frame, box, (2048, 1536), 60) < 0.7 * budget.naive_bytes(frame, box, (2048, 1536), 85)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_the_estimate_takes_every_mode_a_decode_comes_in(mode):
    image = corpus_photo((2048, 1536)).convert(mode)
    assert budget.naive_bytes(image, None, (2048, 1536), 85) > 10_000


def test_no_estimate_for_a_decode_under_the_naive_size_or_too_short_to_sample():
    """Filtered up, a sample of a 1/2 decode under the naive size cost ~8 ms and bought nothing: clean photos
    decoded so are over the naive image's view with the ladder, and grain is decoded in full."""
    assert budget.naive_bytes(corpus_photo((1500, 1500)), None, (2048, 2048), 85) is None
    assert budget.naive_bytes(corpus_photo((4096, 300)), None, (2048, 150), 85) is None  # under two bands


def test_a_decode_at_the_naive_size_is_measured_not_sampled(monkeypatch):
    """A 1920 x 1080 screenshot is its own naive image: its bytes are measured (sampled rows missed flat
    blocks and text by 20-25%), by making the naive image once, which is also what is sent if the view
    outweighs it."""
    image = corpus_photo((1920, 1080))
    made: list[bytes] = []
    real_made = imaging._naive_encoded
    monkeypatch.setattr(imaging, "_naive_encoded", lambda *args: made.append(real_made(*args)) or made[-1])
    monkeypatch.setattr(imaging, "naive_bytes", lambda *args: pytest.fail("a decode at the naive size is not sampled"))
    prepare_image(encode(image, "PNG"), "high")
    assert [len(data) for data in made] == [len(encode(image, "JPEG", quality=85, subsampling="4:2:0", optimize=True))]


# --- the refit and the choice ----------------------------------------------------------------------------


@pytest.mark.parametrize("share", [budget.REFIT_BELOW, 0.9, 1.0])
def test_a_first_encoding_near_the_budget_is_kept(share):
    assert budget.refit_scale(0.085, round(share * 100_000), 100_000) is None


def test_a_view_far_under_the_budget_is_refitted_finer_and_one_over_it_coarser():
    finer = budget.refit_scale(0.085, 56_000, 100_000)  # grain: 56% of the naive image's bytes
    coarser = budget.refit_scale(0.085, 110_000, 100_000)
    assert finer < 0.085 < coarser
    # bytes ~ scale ** -0.6: 0.56 -> 0.9 of the budget wants the scale times (0.56 / 0.9) ** (1 / 0.6)
    assert finer == pytest.approx(0.085 * (0.56 / budget.TARGET) ** (1 / budget.BYTES_EXPONENT), rel=0.05)
    assert len(repr(finer).rstrip("0").split(".")[1].lstrip("0")) <= 2  # two significant digits: cached tables


def test_a_refit_is_kept_within_the_ceiling_and_dropped_past_it_unless_smaller():
    first, inside, past = b"x" * 60, b"x" * 90, b"x" * 99
    assert budget.best_within(first, inside, 100) is inside
    assert budget.best_within(first, past, 100) is first  # a finer refit that overshot
    assert budget.best_within(b"x" * 120, b"x" * 105, 100) == b"x" * 105  # over anyway: the smaller


def test_a_finer_refit_that_overshot_is_tried_once_more_in_between():
    """A full decode's grain: 329 KB at scale 0.07, 517 KB at 0.037 (bytes ~ scale ** -0.71, not -0.6), for a budget
    of 533 KB: the refit aimed at 0.9 of it landed at 0.97, past the ceiling."""
    between = budget.between_scale(0.07, 329_157, 0.037, 517_281, 533_245)
    assert 0.037 < between < 0.07
    exponent = math.log(517_281 / 329_157) / math.log(0.07 / 0.037)
    assert 329_157 * (0.07 / between) ** exponent == pytest.approx(budget.TARGET * 533_245, rel=0.04)
    assert budget.between_scale(0.07, 300, 0.07, 300, 1000) is None
    assert budget.between_scale(0.07, 300, 0.05, 290, 1000) is None  # finer tables, fewer bytes: no slope


def test_the_view_lands_within_the_ceiling_when_the_first_refit_overshoots(grainy_jpeg, monkeypatch):
    estimates, encoded = [], []
    real_estimate, real_encoded = imaging.naive_bytes, budget.encoded
    monkeypatch.setattr(imaging, "naive_bytes", lambda *args: estimates.append(real_estimate(*args)) or estimates[-1])

    def encoding(image, how, **options):
        data = real_encoded(image, how, **options)
        if how.scale is not None:  # the view's refits, not the estimate's sample of the naive image
            encoded.append(data)
        return data

    monkeypatch.setattr(budget, "encoded", encoding)
    monkeypatch.setattr(budget, "BYTES_EXPONENT", 0.35)  # a refit aimed far too fine
    prepared = prepare_image(grainy_jpeg, "high")
    assert len(encoded) == 2 and len(encoded[0]) > budget.CEILING * estimates[0]  # overshot, then in between
    assert prepared.data == encoded[1]
    assert budget.REFIT_BELOW * estimates[0] < len(prepared.data) <= budget.CEILING * estimates[0]


# --- what a photo at "high" gets -------------------------------------------------------------------------


def test_a_grainy_photo_spends_up_to_the_naive_images_bytes_and_sees_at_least_as_much(grainy_jpeg):
    """The ladder alone left grain at 56-64% of the naive image's bytes and 1-3 dB under its view."""
    view = (1024, 768)
    with Image.open(io.BytesIO(grainy_jpeg)) as image:
        ideal = image.convert("RGB").resize(view, Image.Resampling.LANCZOS)
    naive = naive_jpeg(grainy_jpeg)
    with Image.open(io.BytesIO(naive)) as image:
        naive_view = image.convert("RGB").resize(view, Image.Resampling.LANCZOS)
    prepared = prepare_image(grainy_jpeg, "high")
    assert (prepared.width, prepared.height) == view
    assert 0.75 * len(naive) < len(prepared.data) <= len(naive)
    with Image.open(io.BytesIO(prepared.data)) as sent:
        assert psnr(sent, ideal) >= psnr(naive_view, ideal)


def test_the_refit_changes_only_the_tables(grainy_jpeg, monkeypatch):
    """Refitted or not, the same pixels are sent at the same size and bill; the refit is finer, not coarser."""
    refitted = prepare_image(grainy_jpeg, "high")
    monkeypatch.setattr(budget, "REFIT_BELOW", 0.0)
    first = prepare_image(grainy_jpeg, "high")
    assert (first.width, first.height, first.estimated_tokens) == (
        refitted.width, refitted.height, refitted.estimated_tokens
    )
    assert len(refitted.data) > 1.2 * len(first.data)
    step = view_encoding(2, 85)
    assert step.scale == next(scale for below, scale, _ in VIEW_ENCODING if below > 2)
    with Image.open(io.BytesIO(first.data)) as image:
        assert [list(table) for table in image.quantization.values()] == list(map(list, step.tables))
    with Image.open(io.BytesIO(refitted.data)) as image:
        assert sum(image.quantization[0]) < sum(step.tables[0])


def test_a_smooth_photo_near_its_budget_is_encoded_once(monkeypatch):
    """Smooth photos land at 80-95% of the estimate with the ladder's tables: no second encoding."""
    encodings: list[int] = []
    real = Image.Image.save

    def save(self, fp, format=None, **params):
        if "qtables" in params:
            encodings.append(1)
        return real(self, fp, format, **params)

    data = encode(corpus_photo(), "JPEG", quality=90)
    monkeypatch.setattr(Image.Image, "save", save)
    prepare_image(data, "high")
    assert encodings == [1]


def text_page(size: tuple[int, int]) -> Image.Image:
    page = Image.new("RGB", size, (250, 248, 240))
    draw = ImageDraw.Draw(page)
    for y in range(60, size[1] - 60, 46):
        draw.text((80, y), "invoice total 1234.56 EUR due 07/2025 " * 5, fill=(20, 20, 30), font_size=34)
    return page


@pytest.mark.parametrize("reads_text", [False, True])
@pytest.mark.parametrize(("size", "made"), [((4000, 3000), 0), ((2400, 1800), 1)])
def test_a_page_is_fitted_only_downwards(size, made, reads_text, monkeypatch):
    """A text page's view is already over the naive image's at half its bytes (42.9 against 40.5 dB in 432 KB
    against 813): it is not spent up to the naive image's bytes, whether the caller reads text or not. Its naive
    image is made outright where the decode is within EXACT_WITHIN of it (2400 x 1800 for 2048 x 1536), and
    sampled where making it would cost as much again as the whole preparation (a 12 MP page)."""
    calls: dict[str, int] = {"made": 0, "sampled": 0}
    real_made, real_sampled = imaging._naive_encoded, imaging.naive_bytes

    def making(*args):
        calls["made"] += 1
        return real_made(*args)

    def sampling(*args):
        calls["sampled"] += 1
        return real_sampled(*args)

    monkeypatch.setattr(imaging, "_naive_encoded", making)
    monkeypatch.setattr(imaging, "naive_bytes", sampling)
    prepared = prepare_image(encode(text_page(size), "JPEG", quality=90), "high", reads_text=reads_text)
    assert (prepared.width, prepared.height) == (1024, 768)
    assert calls == {"made": made, "sampled": 1 - made}
    with Image.open(io.BytesIO(prepared.data)) as sent:  # the ladder's tables, not finer ones
        shrink = 2048 / 1024
        assert [list(t) for t in sent.quantization.values()] == list(map(list, view_encoding(shrink, 85).tables))


@pytest.mark.parametrize(("share", "made"), [(0.55, 0), (0.7, 1)])
def test_a_sampled_page_near_its_estimate_is_checked_against_its_naive_image_made_outright(share, made,
                                                                                          monkeypatch):
    """A page's sample was off its naive image's bytes by up to SAMPLE_ERROR (1.6x): a view over 1 / 1.6 of the
    estimate could outweigh the naive image, so the naive image is made to compare; a text page's view, at about
    half the estimate, pays nothing."""
    data = encode(text_page((4000, 3000)), "JPEG", quality=90)
    monkeypatch.setattr(imaging, "naive_bytes", lambda *args: 10**9)  # no refit: the ladder's encoding
    view_bytes = len(prepare_image(data, "high").data)
    calls: list[int] = []
    real_made = imaging._naive_encoded
    monkeypatch.setattr(imaging, "_naive_encoded", lambda *args: calls.append(1) or real_made(*args))
    monkeypatch.setattr(imaging, "naive_bytes", lambda *args: view_bytes / share)
    prepared = prepare_image(data, "high")
    assert len(calls) == made
    assert (prepared.width, prepared.height, len(prepared.data)) == (1024, 768, view_bytes)  # under the naive image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_screen_the_view_would_outweigh_is_sent_at_the_naive_size(fmt):
    """Saturated flat colour and coloured text (a 1920 x 1080 screen): at the view's tables, even at the
    caller's quality, full-size chroma weighed 1.2-1.4x the naive image, and half-size chroma at the view lost
    3-5 dB. The naive size goes instead, made as the naive image is, at the view's bill."""
    screen = Image.new("RGB", (1920, 1080), (250, 250, 250))
    draw = ImageDraw.Draw(screen)
    colours = [(220, 30, 30), (30, 160, 40), (30, 60, 220), (240, 200, 20)]
    for index, colour in enumerate(colours):
        draw.rectangle((60 + index * 460, 80, 420 + index * 460, 500), fill=colour)
        draw.text((80 + index * 460, 600), "Total 1,234.56 EUR", fill=colour, font_size=48)
    data = encode(screen, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    prepared = prepare_image(data, "high")
    assert (prepared.width, prepared.height) == (1920, 1080)
    assert prepared.service_size == (1365, 768)
    screenshot = encode(corpus_photo((1920, 1080)), "PNG")
    assert prepared.estimated_tokens == prepare_image(screenshot, "high").estimated_tokens
    with Image.open(io.BytesIO(data)) as image:
        naive = encode(image.convert("RGB"), "JPEG", quality=85, optimize=True)
    assert len(prepared.data) <= 1.002 * len(naive)


def test_a_rotated_photo_is_estimated_in_its_stored_orientation(grainy_jpeg, monkeypatch):
    """EXIF orientation 6: stored 4000 x 3000, shown 3000 x 4000. The decode is in stored orientation, so the
    naive size it is measured against must be too (2048 x 1536), or the sample would be filtered to the wrong
    shape."""
    with Image.open(io.BytesIO(grainy_jpeg)) as image:
        exif = Image.Exif()
        exif[0x0112] = 6
        rotated = encode(image, "JPEG", quality=90, exif=exif.tobytes())
    calls: list[tuple[tuple[int, int], float | None]] = []
    real = budget.naive_bytes

    def spy(frame, box, naive_size, quality):
        calls.append((naive_size, real(frame, box, naive_size, quality)))
        return calls[-1][1]

    monkeypatch.setattr("shared.imaging.prepare.naive_bytes", spy)
    prepared = prepare_image(rotated, "high")
    assert (prepared.width, prepared.height) == (768, 1024)
    [(naive_size, estimate)] = calls
    assert naive_size == (2048, 1536)
    assert estimate == pytest.approx(len(naive_jpeg(grainy_jpeg)), rel=0.08)
    assert len(prepared.data) <= len(naive_jpeg(grainy_jpeg))


def test_the_estimate_from_a_full_ycbcr_decode_filters_its_planes_alike():
    """A 2400 x 1800 JPEG at "high" is decoded in full, as YCbCr planes (under 1.4x the view at 1/2): its
    bands go through the filter as if they were RGB, each plane alike."""
    data = encode(corpus_photo((2400, 1800), grain=8), "JPEG", quality=90)
    frame, box = reduced_decode(data, 1)
    assert (frame.mode, frame.size) == ("YCbCr", (2400, 1800))
    estimate = budget.naive_bytes(frame, box, (2048, 1536), 85)
    assert estimate == pytest.approx(len(naive_jpeg(data)), rel=0.08)
