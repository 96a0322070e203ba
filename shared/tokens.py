"""How many tokens an image or a prompt will cost, and what that costs in USD.

Why estimate at all: the service prepares an image *before* it calls the model,
so it can tell a caller (and its own budget guard) what a request will cost
without spending anything. The numbers follow OpenAI's published accounting for
image inputs, which Azure OpenAI bills the same way:

    OpenAI, "Images and vision" guide, section "Calculating costs"
    https://platform.openai.com/docs/guides/images-vision#calculating-costs

Two schemes are documented there, and each model uses exactly one:

* **Tiles** (gpt-4o, gpt-4.1, gpt-4.5, o1, o3, gpt-5 ...). ``detail="low"`` costs
  a flat ``base`` whatever the size. ``detail="high"``: scale the image to fit in
  2048x2048 (keeping the aspect ratio, never enlarging), then, if the shortest
  side is over 768px, scale it so the shortest side is 768px; count the 512px
  tiles needed to cover it; cost = ``base + tile * tiles``. Documented examples:
  1024x1024 high = 765 and 2048x4096 high = 1105 on gpt-4o; low = 85. The
  base/tile pair differs by model: 85/170 for gpt-4o, gpt-4.1 and gpt-4.5,
  2833/5667 for gpt-4o-mini (so at 1/16 of gpt-4o's token price an image still
  costs about twice as many dollars), 75/150 for o1, o1-pro and o3, 70/140 for
  gpt-5.
* **Patches** (gpt-4.1-mini, gpt-4.1-nano, o4-mini, gpt-5-mini, gpt-5-nano).
  Count the 32x32px patches that cover the image. If that is over 1536, shrink
  the image: ``r = sqrt(32**2 * 1536 / (w * h))``, then shrink ``r`` a little
  more so that one side is a whole number of patches
  (``r *= min(floor(w*r/32) / (w*r/32), floor(h*r/32) / (h*r/32))``), and count
  again; the count is capped at 1536. The count is then multiplied by a
  per-model factor: 1.62 for gpt-4.1-mini and gpt-5-mini, 2.46 for gpt-4.1-nano
  and gpt-5-nano, 1.72 for o4-mini. Documented examples: 1024x1024 = 1024
  patches; 1800x2400 shrinks to 1056x1408 = 33 x 44 = 1452 patches. The
  documented formula has no ``detail`` term, so for these models ``detail``
  changes nothing here; it still matters upstream, because ``prepare_image``
  shrinks the image to the detail's maximum side before it is counted.

Choices made where the documentation is silent:

* ``detail="auto"`` is estimated as ``high``: the service decides, and ``high``
  is the most it may bill for the image we send. Estimates are for budgeting, so
  they err high.
* Patch counts times a fractional multiplier are rounded *up*.
* Images are never enlarged by the tile rule (a 100x100 image is one tile).
* Unknown model names are estimated as **gpt-4o** (Azure deployment names are
  free text); add them to ``VISION_MODEL_TABLE`` to be exact.

Prices are OpenAI's standard-tier *list* prices in USD per million tokens, for
orientation only: Azure regional / data-zone deployments, batch, cached input and
negotiated rates all differ. Override them with the ``VISION_MODEL_TABLE``
setting (a JSON object, see :func:`load_model_overrides`).

Everything here is pure arithmetic: no I/O, no globals mutated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from shared.errors import ConfigError, InvalidParameter
from shared.tasks import DETAILS

OVERRIDES_SETTING = "VISION_MODEL_TABLE"
DEFAULT_MODEL = "gpt-4o"

TILE_SIZE = 512
TILE_FIT_SIDE = 2048
TILE_SHORT_SIDE = 768
PATCH_SIZE = 32
PATCH_CAP = 1536

# Chat framing overhead, from OpenAI's cookbook "How to count tokens with
# tiktoken": every message costs 3 tokens of framing, and every reply is primed
# with 3 more (``<|start|>assistant<|message|>``).
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
ASCII_CHARS_PER_TOKEN = 4

Kind = Literal["tile", "patch"]


@dataclass(frozen=True)
class ModelSpec:
    """How one model bills images, and its price per million tokens (USD).

    ``kind`` picks the scheme: ``tile`` uses ``base_tokens``/``tile_tokens``,
    ``patch`` uses ``patch_multiplier``/``max_patches``. The fields of the other
    scheme are ignored.
    """

    name: str
    kind: Kind
    input_price_per_1m: float
    output_price_per_1m: float
    base_tokens: int = 0
    tile_tokens: int = 0
    patch_multiplier: float = 1.0
    max_patches: int = PATCH_CAP


def _tile(name: str, base: int, tile: int, price_in: float, price_out: float) -> ModelSpec:
    return ModelSpec(name, "tile", price_in, price_out, base_tokens=base, tile_tokens=tile)


def _patch(name: str, multiplier: float, price_in: float, price_out: float) -> ModelSpec:
    return ModelSpec(name, "patch", price_in, price_out, patch_multiplier=multiplier)


# List prices (USD / 1M tokens, standard tier) as published by OpenAI; override
# them per deployment. Dated snapshots resolve by prefix (see get_model_spec);
# an exact entry wins, which is how gpt-4o-2024-05-13 keeps its older price.
MODELS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _tile("gpt-4o", 85, 170, 2.50, 10.00),
        _tile("gpt-4o-2024-05-13", 85, 170, 5.00, 15.00),
        _tile("gpt-4o-mini", 2833, 5667, 0.15, 0.60),
        _tile("gpt-4.1", 85, 170, 2.00, 8.00),
        _tile("gpt-4.5-preview", 85, 170, 75.00, 150.00),
        _tile("o1", 75, 150, 15.00, 60.00),
        _tile("o1-pro", 75, 150, 150.00, 600.00),
        _tile("o3", 75, 150, 2.00, 8.00),
        _tile("gpt-5", 70, 140, 1.25, 10.00),
        _patch("gpt-4.1-mini", 1.62, 0.40, 1.60),
        _patch("gpt-4.1-nano", 2.46, 0.10, 0.40),
        _patch("o4-mini", 1.72, 1.10, 4.40),
        _patch("gpt-5-mini", 1.62, 0.25, 2.00),
        _patch("gpt-5-nano", 2.46, 0.05, 0.40),
    )
}


def _match(name: str, table: Mapping[str, ModelSpec]) -> ModelSpec | None:
    """Exact name, else the longest table key that prefixes ``name`` at a ``-``.

    The ``-`` boundary keeps ``gpt-4o`` from claiming ``gpt-4ox``; "longest wins"
    sends ``gpt-4o-mini-2024-07-18`` to gpt-4o-mini rather than gpt-4o.
    """
    key = name.strip().lower()
    if key in table:
        return table[key]
    candidates = [k for k in table if key.startswith(k + "-")]
    return table[max(candidates, key=len)] if candidates else None


def known_model(name: str, overrides: Mapping[str, ModelSpec] | None = None) -> str | None:
    """The table's name for ``name`` if it is (a version of) a model we know, else None."""
    spec = _match(name, {**MODELS, **(overrides or {})})
    return spec.name if spec else None


def get_model_spec(name: str | None, overrides: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    """The spec for a model or deployment name; unknown names get gpt-4o's.

    ``overrides`` (from :func:`load_model_overrides`) replace or extend
    :data:`MODELS` before matching, so overriding ``gpt-4o`` also changes the
    fallback. Falling back instead of failing is deliberate: an estimate must
    never stop a request, and gpt-4o's numbers are the common case.
    """
    table = {**MODELS, **(overrides or {})}
    return _match(name or "", table) or table[DEFAULT_MODEL]


def _ceil_div(length: float, step: int) -> int:
    """How many ``step``-sized cells cover ``length``, tolerant of float noise.

    Scaling by ratios produces values like 1536.0000000002; counting that as an
    extra tile would overstate the bill, so a nano-pixel of slack is allowed.
    """
    return max(1, math.ceil(length / step - 1e-9))


def _tile_count(width: float, height: float) -> int:
    longest = max(width, height)
    if longest > TILE_FIT_SIDE:
        width, height = width * TILE_FIT_SIDE / longest, height * TILE_FIT_SIDE / longest
    shortest = min(width, height)
    if shortest > TILE_SHORT_SIDE:
        width, height = width * TILE_SHORT_SIDE / shortest, height * TILE_SHORT_SIDE / shortest
    return _ceil_div(width, TILE_SIZE) * _ceil_div(height, TILE_SIZE)


def patch_count(width: int, height: int, cap: int = PATCH_CAP) -> int:
    """32px patches billed for a ``width`` x ``height`` image (before the multiplier).

    Follows the documented shrink: scale by ``sqrt(32^2 * cap / (w*h))``, then
    by the smaller of the two "fit a whole number of patches" corrections. The
    ``max(1, ...)`` guards a side thinner than one patch after scaling (e.g.
    1x100000), where the documented formula would divide by zero; the final
    ``min(..., cap)`` is the documented cap.
    """
    patches = _ceil_div(width, PATCH_SIZE) * _ceil_div(height, PATCH_SIZE)
    if patches <= cap:
        return patches
    ratio = math.sqrt(PATCH_SIZE**2 * cap / (width * height))
    fit_w = width * ratio / PATCH_SIZE
    fit_h = height * ratio / PATCH_SIZE
    ratio *= min(max(1, math.floor(fit_w)) / fit_w, max(1, math.floor(fit_h)) / fit_h)
    patches = _ceil_div(width * ratio, PATCH_SIZE) * _ceil_div(height * ratio, PATCH_SIZE)
    return min(patches, cap)


LOW_DETAIL_SIDE = 512  # tile models at detail=low see a version that fits 512 x 512


def service_view(width: int, height: int, detail: str, model: str | None = DEFAULT_MODEL,
                 overrides: Mapping[str, ModelSpec] | None = None) -> tuple[int, int]:
    """The size the service itself shrinks an image of ``width`` x ``height`` to before the model sees it.

    Tile models: at ``low`` a version that fits 512 x 512; at ``high`` (and ``auto``, estimated as
    ``high``) fit into 2048 x 2048, then the short side down to 768. Patch models: the documented shrink
    to at most ``max_patches`` 32 px patches. Never enlarged. Sides are truncated, so sending exactly
    this size can only bill the same tiles or patches as sending the larger original, never more.
    """
    detail = _check_detail(detail)
    spec = get_model_spec(model, overrides)
    w, h = float(width), float(height)
    if spec.kind == "patch":
        if _ceil_div(w, PATCH_SIZE) * _ceil_div(h, PATCH_SIZE) > spec.max_patches:
            ratio = math.sqrt(PATCH_SIZE**2 * spec.max_patches / (w * h))
            fit_w, fit_h = w * ratio / PATCH_SIZE, h * ratio / PATCH_SIZE
            ratio *= min(max(1, math.floor(fit_w)) / fit_w, max(1, math.floor(fit_h)) / fit_h)
            w, h = w * ratio, h * ratio
    elif detail == "low":
        if max(w, h) > LOW_DETAIL_SIDE:
            w, h = w * LOW_DETAIL_SIDE / max(w, h), h * LOW_DETAIL_SIDE / max(w, h)
    else:
        if max(w, h) > TILE_FIT_SIDE:
            w, h = w * TILE_FIT_SIDE / max(w, h), h * TILE_FIT_SIDE / max(w, h)
        if min(w, h) > TILE_SHORT_SIDE:
            w, h = w * TILE_SHORT_SIDE / min(w, h), h * TILE_SHORT_SIDE / min(w, h)
    return max(1, math.floor(w + 1e-6)), max(1, math.floor(h + 1e-6))


def _check_detail(detail: str) -> str:
    value = detail.strip().lower() if isinstance(detail, str) else detail
    if value not in DETAILS:
        raise InvalidParameter("detail", f"must be one of {', '.join(DETAILS)}; got {detail!r}")
    return value


def estimate_image_tokens(
    width: int,
    height: int,
    detail: str,
    model: str | None = DEFAULT_MODEL,
    overrides: Mapping[str, ModelSpec] | None = None,
) -> int:
    """Input tokens the model bills for one image of this (prepared) size.

    Pass the size of the image actually sent, not the upload: the service's own
    resize (``prepare_image``) is what keeps the bill down. ``auto`` counts as
    ``high``; see the module docstring for both schemes and their sources.
    """
    detail = _check_detail(detail)
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameter(label, f"must be a positive integer; got {value!r}")
    spec = get_model_spec(model, overrides)
    if spec.kind == "patch":
        raw = patch_count(width, height, spec.max_patches) * spec.patch_multiplier
        # round() first so 100 * 1.62 = 162.00000000000003 stays 162.
        return math.ceil(round(raw, 6))
    if detail == "low":
        return spec.base_tokens
    return spec.base_tokens + spec.tile_tokens * _tile_count(width, height)


def estimate_cost(
    prompt_tokens: int,
    completion_tokens: int,
    model: str | None = DEFAULT_MODEL,
    overrides: Mapping[str, ModelSpec] | None = None,
) -> float:
    """USD for a call, at the model's (list or overridden) per-million prices.

    Not rounded: callers summing many requests should round once at the end.
    """
    for label, value in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameter(label, f"must be a non-negative integer; got {value!r}")
    spec = get_model_spec(model, overrides)
    return (prompt_tokens * spec.input_price_per_1m + completion_tokens * spec.output_price_per_1m) / 1e6


def estimate_text_tokens(text: str, *, messages: int = 1) -> int:
    """A cheap, deliberately high estimate of the tokens in prompt text.

    ``tiktoken`` would be exact, but it downloads its BPE tables at run time,
    which a locked-down Function cannot rely on, and exactness does not matter
    for a budget. English averages about 4 characters per token, so ASCII counts
    as ``ceil(chars / 4)``; each non-ASCII character counts as a whole token,
    which is close for CJK and errs high for accented Latin. Each of
    ``messages`` chat messages adds 3 tokens of framing, and a reply adds 3 of
    priming (OpenAI cookbook); pass ``messages=0`` for bare text.
    """
    if isinstance(messages, bool) or not isinstance(messages, int) or messages < 0:
        raise InvalidParameter("messages", f"must be a non-negative integer; got {messages!r}")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    ascii_chars = len(text) - non_ascii
    framing = messages * TOKENS_PER_MESSAGE + (REPLY_PRIMING_TOKENS if messages else 0)
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + non_ascii + framing


# --- configuration ----------------------------------------------------------

_TILE_FIELDS = ("base_tokens", "tile_tokens")
_PATCH_FIELDS = ("patch_multiplier",)
_PRICE_FIELDS = ("input_price_per_1m", "output_price_per_1m")
_KNOWN_FIELDS = {f.name for f in fields(ModelSpec)} - {"name"}


def _number(name: str, key: str, value: Any, *, integer: bool, minimum: float, strict: bool) -> Any:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        kind = "an integer" if integer else "a number"
        raise ConfigError(OVERRIDES_SETTING, f"model {name!r}: {key} must be {kind}; got {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        raise ConfigError(OVERRIDES_SETTING, f"model {name!r}: {key} must be {bound}; got {value!r}")
    return value


def _parse_entry(name: str, entry: Any) -> ModelSpec:
    if not isinstance(entry, dict):
        raise ConfigError(OVERRIDES_SETTING, f"model {name!r}: expected an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _KNOWN_FIELDS)
    if unknown:
        raise ConfigError(
            OVERRIDES_SETTING,
            f"model {name!r}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN_FIELDS))}",
        )
    # A known model (or dated variant) only needs the fields that change, e.g.
    # {"gpt-4o": {"input_price_per_1m": 2.75}} for a data-zone deployment.
    inherited = _match(name, MODELS)
    kind = entry.get("kind", inherited.kind if inherited else None)
    if kind not in ("tile", "patch"):
        raise ConfigError(OVERRIDES_SETTING, f"model {name!r}: kind must be 'tile' or 'patch'; got {kind!r}")
    same_kind = inherited is not None and inherited.kind == kind
    required = (_TILE_FIELDS if kind == "tile" else _PATCH_FIELDS) if not same_kind else ()
    required += _PRICE_FIELDS if inherited is None else ()
    missing = [key for key in required if key not in entry]
    if missing:
        raise ConfigError(OVERRIDES_SETTING, f"model {name!r}: missing field(s) {', '.join(missing)}")

    values: dict[str, Any] = {"kind": kind}
    for key in ("base_tokens", "tile_tokens", "max_patches"):
        if key in entry:
            values[key] = _number(name, key, entry[key], integer=True, minimum=0, strict=key == "max_patches")
    for key in ("patch_multiplier", *_PRICE_FIELDS):
        if key in entry:
            strict = key == "patch_multiplier"
            values[key] = float(_number(name, key, entry[key], integer=False, minimum=0, strict=strict))
    if inherited is not None:
        return replace(inherited, name=name, **values)
    return ModelSpec(name=name, **values)


def load_model_overrides(json_text: str | None) -> dict[str, ModelSpec]:
    """Parse the ``VISION_MODEL_TABLE`` setting into specs for get_model_spec.

    The setting is a JSON object of model or deployment name to fields, e.g.::

        {"my-model": {"kind": "tile", "base_tokens": 85, "tile_tokens": 170,
                      "input_price_per_1m": 2.5, "output_price_per_1m": 10},
         "gpt-4o": {"input_price_per_1m": 2.75}}

    A name that :data:`MODELS` already knows (exactly or by prefix) inherits the
    fields it leaves out; a new name must give ``kind``, that kind's token
    fields, and both prices. Unknown fields are errors, so a typo cannot
    silently fall back to a default. An empty or blank setting means "no
    overrides". Every problem raises :class:`ConfigError` naming the setting.
    """
    if json_text is None or not json_text.strip():
        return {}
    try:
        raw = json.loads(json_text)
    except json.JSONDecodeError as exc:
        raise ConfigError(OVERRIDES_SETTING, f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(OVERRIDES_SETTING, f"expected a JSON object of model names, got {type(raw).__name__}")
    specs: dict[str, ModelSpec] = {}
    for raw_name, entry in raw.items():
        name = raw_name.strip().lower()
        if not name:
            raise ConfigError(OVERRIDES_SETTING, "model names must not be empty")
        if name in specs:
            raise ConfigError(OVERRIDES_SETTING, f"model {name!r} is given more than once")
        specs[name] = _parse_entry(name, entry)
    return specs
