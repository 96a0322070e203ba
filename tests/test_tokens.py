"""Token and cost estimation against OpenAI's documented examples and hand-worked cases."""

from __future__ import annotations

import json

import pytest

from shared.errors import ConfigError, InvalidParameter
from shared.tokens import (
    MODELS,
    ModelSpec,
    estimate_cost,
    estimate_image_tokens,
    estimate_text_tokens,
    get_model_spec,
    load_model_overrides,
    patch_count,
    service_view,
)

# --- tile models: the documented worked examples ------------------------------


def test_documented_1024_square_high_on_gpt4o_is_765():
    # Fits in 2048; shortest side 1024 > 768 -> 768x768; 2x2 tiles: 85 + 4*170.
    assert estimate_image_tokens(1024, 1024, "high", "gpt-4o") == 765


def test_documented_2048x4096_high_on_gpt4o_is_1105():
    # Fit in 2048 -> 1024x2048; shortest 1024 -> 768x1536; 2x3 tiles: 85 + 6*170.
    assert estimate_image_tokens(2048, 4096, "high", "gpt-4o") == 1105


@pytest.mark.parametrize("size", [(1, 1), (512, 512), (4096, 4096), (1, 10000), (10000, 1)])
def test_low_detail_is_the_base_whatever_the_size(size):
    assert estimate_image_tokens(*size, "low", "gpt-4o") == 85


def test_auto_is_estimated_as_high():
    assert estimate_image_tokens(1024, 1024, "auto") == estimate_image_tokens(1024, 1024, "high")


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1, 1), 85 + 170),  # never enlarged: one tile
        ((512, 512), 85 + 170),
        ((513, 512), 85 + 2 * 170),  # one pixel over a tile edge costs a tile
        # 1x10000 -> fit: 0.2048x2048; shortest side tiny, so 1 x 4 tiles.
        ((1, 10000), 85 + 4 * 170),
        ((10000, 1), 85 + 4 * 170),
        # 1000x872: shortest 872 > 768 -> 880.7x768 -> 2x2 tiles.
        ((1000, 872), 85 + 4 * 170),
        # 4000x3000: fit -> 2048x1536; shortest -> 1024x768 -> 2x2 tiles.
        ((4000, 3000), 85 + 4 * 170),
        # 1536x768: already 768 short side -> 3x2 tiles.
        ((1536, 768), 85 + 6 * 170),
    ],
)
def test_tile_rule_hand_worked(size, expected):
    assert estimate_image_tokens(*size, "high", "gpt-4o") == expected


def test_gpt4o_mini_uses_its_own_base_and_tile():
    assert estimate_image_tokens(1024, 1024, "low", "gpt-4o-mini") == 2833
    assert estimate_image_tokens(1024, 1024, "high", "gpt-4o-mini") == 2833 + 4 * 5667
    assert estimate_image_tokens(2048, 4096, "high", "gpt-4o-mini") == 2833 + 6 * 5667


def test_o_series_tile_numbers_are_the_documented_75_150():
    assert estimate_image_tokens(1024, 1024, "high", "o3") == 75 + 4 * 150
    assert estimate_image_tokens(1024, 1024, "low", "o1") == 75


def test_gpt41_bills_like_gpt4o():
    assert estimate_image_tokens(2048, 4096, "high", "gpt-4.1") == 1105


# --- patch models -------------------------------------------------------------


def test_documented_patch_examples():
    # 1024x1024: 32 x 32 patches = 1024, under the 1536 cap.
    assert patch_count(1024, 1024) == 1024
    # 1800x2400: 57 x 75 = 4275 > 1536. r = sqrt(32^2*1536/(1800*2400)) = 0.6034;
    # 1086.1 / 32 = 33.94 and 1448.2 / 32 = 45.25 patches; fit the width to 33:
    # r *= 33/33.94 -> 1056x1408 -> 33 x 44 = 1452.
    assert patch_count(1800, 2400) == 1452


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4.1-mini", 1659),  # 1024 * 1.62 = 1658.88 -> rounded up
        ("gpt-4.1-nano", 2520),  # 1024 * 2.46 = 2519.04 -> 2520
        ("o4-mini", 1762),  # 1024 * 1.72 = 1761.28 -> 1762
    ],
)
def test_patch_multipliers_on_1024_square(model, expected):
    assert estimate_image_tokens(1024, 1024, "high", model) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4.1-mini", 2353),  # 1452 * 1.62 = 2352.24
        ("gpt-4.1-nano", 3572),  # 1452 * 2.46 = 3571.92
        ("o4-mini", 2498),  # 1452 * 1.72 = 2497.44
    ],
)
def test_patch_multipliers_on_documented_1800x2400(model, expected):
    assert estimate_image_tokens(1800, 2400, "high", model) == expected


def test_patch_models_ignore_detail():
    # The documented patch formula has no detail term.
    for detail in ("low", "high", "auto"):
        assert estimate_image_tokens(1024, 1024, detail, "gpt-4.1-mini") == 1659


def test_patch_multiplier_rounding_does_not_overshoot_exact_products():
    # 10x10 patches * 1.62 = 162 exactly in decimal; float says 162.00000000000003.
    assert estimate_image_tokens(320, 320, "high", "gpt-4.1-mini") == 162


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1, 1), 1),
        ((33, 1), 2),  # 2 x 1 patches
        ((1, 10000), 313),  # 1 x ceil(10000/32) = 313, under the cap
        ((10000, 1), 313),
        ((1, 100000), 1536),  # a sliver over the cap: capped, and no division by zero
        ((8000, 8000), 1521),  # square: r -> 1254.1px = 39.19 patches -> fit to 39 x 39
        ((4000, 3000), 1452),  # 4:3 like 2400x1800
    ],
)
def test_patch_count_edges(size, expected):
    assert patch_count(*size) == expected


def test_patch_count_never_exceeds_the_cap():
    for w in (1, 7, 31, 32, 33, 640, 1023, 1537, 2048, 3000, 4097, 9999, 20000):
        for h in (1, 5, 32, 100, 768, 1536, 2049, 5000, 30000):
            assert 1 <= patch_count(w, h) <= 1536


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize("detail", ["medium", "", "HIGHEST", None])
def test_unknown_detail_is_invalid_parameter(detail):
    with pytest.raises(InvalidParameter) as info:
        estimate_image_tokens(10, 10, detail)
    assert info.value.parameter == "detail"


def test_detail_is_case_insensitive():
    assert estimate_image_tokens(1024, 1024, "HIGH") == 765


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-1, 5), (1.5, 2), (True, 3)])
def test_bad_sizes_are_invalid_parameter(size):
    with pytest.raises(InvalidParameter):
        estimate_image_tokens(*size, "high")


# --- model lookup -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # exact entry beats the prefix
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # longest prefix wins
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o3-2025-04-16", "o3"),
        ("o1-pro-2025-03-19", "o1-pro"),
        ("GPT-4o", "gpt-4o"),
        ("  o4-mini ", "o4-mini"),
    ],
)
def test_prefix_matching(name, expected):
    assert get_model_spec(name).name == expected


@pytest.mark.parametrize("name", ["my-vision-deployment", "gpt-4ox", "", None, "claude-3"])
def test_unknown_names_fall_back_to_gpt4o(name):
    assert get_model_spec(name) is MODELS["gpt-4o"]


def test_dated_gpt4o_mini_is_billed_as_mini():
    assert estimate_image_tokens(1024, 1024, "low", "gpt-4o-mini-2024-07-18") == 2833


def test_models_table_is_consistent():
    for key, spec in MODELS.items():
        assert key == spec.name
        assert spec.kind in ("tile", "patch")
        assert spec.input_price_per_1m > 0 and spec.output_price_per_1m > 0
        if spec.kind == "tile":
            assert spec.base_tokens > 0 and spec.tile_tokens > 0
        else:
            assert spec.patch_multiplier > 0 and spec.max_patches == 1536


# --- overrides --------------------------------------------------------------------


def test_overrides_add_a_new_model():
    text = json.dumps(
        {
            "my-model": {
                "kind": "tile",
                "base_tokens": 85,
                "tile_tokens": 170,
                "input_price_per_1m": 2.5,
                "output_price_per_1m": 10,
            }
        }
    )
    overrides = load_model_overrides(text)
    assert overrides == {"my-model": ModelSpec("my-model", "tile", 2.5, 10.0, base_tokens=85, tile_tokens=170)}
    assert get_model_spec("my-model", overrides).name == "my-model"
    assert get_model_spec("my-model-2025-01-01", overrides).name == "my-model"
    assert estimate_image_tokens(1024, 1024, "high", "my-model", overrides) == 765


def test_overrides_of_a_known_model_inherit_missing_fields():
    overrides = load_model_overrides('{"gpt-4o": {"input_price_per_1m": 2.75}}')
    spec = get_model_spec("gpt-4o-2024-11-20", overrides)
    assert (spec.input_price_per_1m, spec.output_price_per_1m, spec.base_tokens) == (2.75, 10.0, 85)
    # Overriding gpt-4o also moves the fallback for unknown names.
    assert get_model_spec("some-deployment", overrides).input_price_per_1m == 2.75


def test_patch_override_and_custom_cap():
    text = '{"tiny-vision": {"kind": "patch", "patch_multiplier": 2, "max_patches": 100,'
    text += ' "input_price_per_1m": 0.1, "output_price_per_1m": 0.4}}'
    overrides = load_model_overrides(text)
    assert estimate_image_tokens(1024, 1024, "high", "tiny-vision", overrides) <= 200


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_setting_means_no_overrides(text):
    assert load_model_overrides(text) == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"m": 3}', "expected an object"),
        ('{"m": {"kind": "tiles"}}', "kind"),
        ('{"m": {"kind": "tile", "base_tokens": 85}}', "missing"),
        ('{"m": {"kind": "patch", "input_price_per_1m": 1, "output_price_per_1m": 1}}', "patch_multiplier"),
        ('{"gpt-4o": {"base_tokens": -1}}', "at least 0"),
        ('{"gpt-4o": {"base_tokens": 8.5}}', "integer"),
        ('{"gpt-4o": {"input_price_per_1m": "cheap"}}', "number"),
        ('{"gpt-4o": {"input_price_per_1m": true}}', "number"),
        ('{"gpt-4.1-mini": {"patch_multiplier": 0}}', "greater than 0"),
        ('{"gpt-4o": {"input_price": 2}}', "unknown field"),
        ('{" ": {}}', "empty"),
        ('{"GPT-4o": {}, "gpt-4o": {}}', "more than once"),
        ('{"gpt-4o": {"kind": "patch"}}', "patch_multiplier"),  # switching kind needs that kind's fields
    ],
)
def test_bad_overrides_raise_config_error_naming_the_setting(text, fragment):
    with pytest.raises(ConfigError) as info:
        load_model_overrides(text)
    assert info.value.setting == "VISION_MODEL_TABLE"
    assert fragment in str(info.value)
    assert info.value.to_problem()["status"] == 500


# --- cost -------------------------------------------------------------------------


def test_cost_math_at_list_prices():
    # gpt-4o: $2.50 in, $10.00 out per million.
    assert estimate_cost(1_000_000, 0, "gpt-4o") == pytest.approx(2.50)
    assert estimate_cost(0, 1_000_000, "gpt-4o") == pytest.approx(10.00)
    # 765 image + 235 text tokens in, 500 out: 1000*2.5e-6 + 500*10e-6 = 0.0075.
    assert estimate_cost(1000, 500, "gpt-4o") == pytest.approx(0.0075)
    assert estimate_cost(1000, 500, "gpt-4.1-nano") == pytest.approx(1000 * 0.1e-6 + 500 * 0.4e-6)
    assert estimate_cost(0, 0, "o3") == 0


def test_cost_uses_overrides_and_dated_names():
    overrides = load_model_overrides('{"gpt-4o-mini": {"input_price_per_1m": 1, "output_price_per_1m": 2}}')
    assert estimate_cost(500_000, 250_000, "gpt-4o-mini-2024-07-18", overrides) == pytest.approx(1.0)


@pytest.mark.parametrize("tokens", [(-1, 0), (0, -5), (1.5, 0), (None, 0)])
def test_cost_rejects_bad_token_counts(tokens):
    with pytest.raises(InvalidParameter):
        estimate_cost(*tokens, "gpt-4o")


# --- text --------------------------------------------------------------------------


def test_text_estimate_heuristic():
    assert estimate_text_tokens("", messages=0) == 0
    assert estimate_text_tokens("abcd", messages=0) == 1
    assert estimate_text_tokens("abcde", messages=0) == 2  # rounded up
    # One message: 3 framing + 3 reply priming.
    assert estimate_text_tokens("Describe this image.") == 5 + 6
    assert estimate_text_tokens("x" * 400, messages=2) == 100 + 2 * 3 + 3


def test_text_estimate_counts_non_ascii_characters_as_tokens():
    assert estimate_text_tokens("日本語のテキスト", messages=0) == 8
    assert estimate_text_tokens("café", messages=0) == 1 + 1  # "caf" -> 1, "é" -> 1


def test_text_estimate_rejects_negative_messages():
    with pytest.raises(InvalidParameter):
        estimate_text_tokens("hi", messages=-1)


# --- what the service itself looks at ---------------------------------------------------------------


@pytest.mark.parametrize(("size", "detail", "model", "view"), [
    ((2048, 4096), "high", "gpt-4o", (768, 1536)),  # the documented example: fit 1024x2048, short side 768
    ((1024, 1024), "high", "gpt-4o", (768, 768)),
    ((1024, 1024), "auto", "gpt-4o", (768, 768)),  # auto is estimated (and so prepared) as high
    ((4000, 3000), "low", "gpt-4o", (512, 384)),
    ((700, 500), "high", "gpt-4o", (700, 500)),  # never enlarged
    ((1800, 2400), "high", "gpt-4.1-mini", (1056, 1408)),  # the documented patch shrink
    ((1024, 1024), "low", "gpt-4.1-mini", (1024, 1024)),  # 1,024 patches: under the cap, kept
])
def test_service_view_follows_the_documented_shrinks(size, detail, model, view):
    assert service_view(*size, detail, model) == view


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "o4-mini"])
@pytest.mark.parametrize("detail", ["low", "auto", "high"])
def test_sending_the_service_view_never_bills_more(model, detail):
    for width in (1, 31, 512, 513, 767, 769, 1023, 1025, 1536, 2047, 2049, 3000, 4000, 9000):
        for height in (1, 100, 511, 768, 1000, 2048, 3001):
            view = service_view(width, height, detail, model)
            assert view[0] <= width and view[1] <= height
            assert estimate_image_tokens(*view, detail, model) <= estimate_image_tokens(width, height, detail, model)
            assert service_view(*view, detail, model) == view  # the service leaves its own view alone
