"""Generation parameters: bounds with their messages, seeds, prompt cleaning, defaults and overrides."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import replace
from typing import Any

import pytest

from engine.engine_settings import EngineSettings
from engine.requests.checks import MAX_PROMPT_CHARS, clean_prompt
from engine.requests.params import (
    MAX_SEED,
    Defaults,
    GenerationParams,
    Limits,
    ParamError,
    ParamRequest,
    build_params,
)
from engine.requests.sizes import SDXL_SIZES, Size, parse_size_list

LIMITS = Limits(sizes=parse_size_list(SDXL_SIZES), max_steps=60, max_guidance=20.0, max_count=4)
DEFAULTS = Defaults()


def build(**fields: Any) -> GenerationParams:
    """build_params with the stock defaults and limits."""
    fields.setdefault("prompt", "a red fox")
    return build_params(ParamRequest(**fields), DEFAULTS, LIMITS)


def test_defaults_fill_missing_fields() -> None:
    """Absent fields take the defaults: 1024x1024, 25 steps, CFG 9, one image, euler, quality mode."""
    p = build(seed=5)
    assert (p.width, p.height, p.steps, p.guidance, p.count, p.scheduler, p.fast) == \
        (1024, 1024, 25, 9.0, 1, "euler", False)


@pytest.mark.parametrize(("field", "value"), [
    ("steps", 1), ("steps", 60), ("guidance", 0), ("guidance", 20), ("count", 1), ("count", 4), ("seed", 0),
    ("seed", MAX_SEED),
])
def test_bounds_are_inclusive(field: str, value: Any) -> None:
    """The ends of every range are accepted."""
    assert getattr(build(**{field: value}), field) == value


@pytest.mark.parametrize(("field", "value", "message"), [
    ("steps", 0, "steps must be from 1 to 60 (got 0)"),
    ("steps", 61, "steps must be from 1 to 60 (got 61)"),
    ("steps", 2.5, "steps must be a whole number from 1 to 60"),
    ("guidance", -0.5, "guidance must be from 0 to 20 (got -0.5)"),
    ("guidance", 20.5, "guidance must be from 0 to 20 (got 20.5)"),
    ("guidance", float("nan"), "guidance must be from 0 to 20"),
    ("guidance", "lots", "guidance must be a number from 0 to 20"),
    ("count", 0, "count must be from 1 to 4 (got 0)"),
    ("count", 5, "count must be from 1 to 4 (got 5)"),
    ("seed", -1, "seed must be from 0 to 4294967295 (got -1)"),
    ("seed", 2**32, "seed must be from 0 to 4294967295 (got 4294967296)"),
    ("size", "512x512", "size: size 512x512 is not offered here; choose one of: 1024x1024"),
    ("size", "banana", "size: unknown size 'banana'; use an aspect ratio like 16:9 or one of: 1024x1024"),
    ("scheduler", "plms", "scheduler 'plms' is unknown; use one of euler, euler_a, dpmpp_2m"),
])
def test_out_of_range_value_states_allowed_range(field: str, value: Any, message: str) -> None:
    """A value outside its bounds raises ParamError naming the field and the allowed range."""
    with pytest.raises(ParamError) as info:
        build(**{field: value})
    assert message in str(info.value)


def test_aspect_ratio_request_resolves_to_allowed_size() -> None:
    """A request for 16:9 gets the nearest allowed size."""
    assert build(size="16:9").size == Size(1344, 768)


def test_operator_max_steps_below_deployment_limit_applies() -> None:
    """A scope's lower max_steps caps requests below the deployment's MAX_STEPS."""
    with pytest.raises(ParamError, match="steps must be from 1 to 10"):
        build_params(ParamRequest("a fox", steps=11), Defaults(max_steps=10), LIMITS)


def test_missing_seed_is_drawn_from_the_generator() -> None:
    """Without a seed, one is drawn in 0..2**32-1 from the given random generator."""
    p = build_params(ParamRequest("a fox"), DEFAULTS, LIMITS, rng=random.Random(3))
    assert p.seed == random.Random(3).randint(0, MAX_SEED)


def test_missing_seed_is_random_each_time() -> None:
    """Without a generator, every request draws a fresh seed."""
    seeds = {build().seed for _ in range(5)}
    assert len(seeds) == 5 and all(0 <= s <= MAX_SEED for s in seeds)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t ", "\x00\x00", "\u3000\u00a0"])
def test_empty_prompt_is_refused_with_example(prompt: str) -> None:
    """An empty or whitespace-only prompt is refused with an example of a prompt."""
    with pytest.raises(ParamError, match="the prompt is empty; describe the image you want"):
        build(prompt=prompt)


def test_nul_and_control_characters_are_removed() -> None:
    """NUL and other control characters are taken out of the prompt and the negative prompt."""
    p = build(prompt="a red\x00 fox\x07 in\x1b snow\x00", negative_prompt="blurry\x00")
    assert p.prompt == "a red fox in snow"
    assert p.negative_prompt == "blurry"


def test_whitespace_is_collapsed() -> None:
    """Runs of spaces, tabs and newlines become one space; the ends are trimmed."""
    assert clean_prompt("  a\n\n red \t fox  ") == "a red fox"


def test_zalgo_is_tamed() -> None:
    """Stacks of combining marks are cut to three per character; the letters stay."""
    zalgo = "Z" + "\u0336\u0317\u0353\u0330" * 10 + "algo"
    cleaned = clean_prompt(zalgo)
    assert unicodedata.normalize("NFKD", cleaned).replace("\u0336", "").replace("\u0317", "") \
        .replace("\u0353", "").replace("\u0330", "") == "Zalgo"
    assert sum(unicodedata.combining(c) > 0 for c in cleaned) == 3


def test_ordinary_accents_are_kept() -> None:
    """Vietnamese and decomposed accents (one or two marks) are left alone."""
    text = "Vie\u0323\u0302t cafe\u0301 Việt"
    assert clean_prompt(text) == text


def test_prompt_over_the_limit_is_refused() -> None:
    """A prompt longer than MAX_PROMPT_CHARS is refused with its length and the limit."""
    with pytest.raises(ParamError, match=f"{MAX_PROMPT_CHARS + 1} characters long; the limit is {MAX_PROMPT_CHARS}"):
        build(prompt="x" * (MAX_PROMPT_CHARS + 1))


def test_negative_prompt_defaults_and_can_be_cleared() -> None:
    """The default negative prompt applies when absent; an explicit empty one clears it."""
    defaults = Defaults(negative_prompt="ugly, blurry")
    assert build_params(ParamRequest("a fox"), defaults, LIMITS).negative_prompt == "ugly, blurry"
    assert build_params(ParamRequest("a fox", negative_prompt=""), defaults, LIMITS).negative_prompt == ""


def test_seeds_are_consecutive_and_wrap() -> None:
    """A multi-image job uses seed, seed+1... wrapping past 2**32-1 to 0."""
    assert build(seed=MAX_SEED - 1, count=3).seeds == [MAX_SEED - 1, MAX_SEED, 0]


@pytest.mark.parametrize(("change", "same"), [
    ({"prompt": "another prompt"}, True), ({"seed": 99}, True), ({"count": 3}, True),
    ({"negative_prompt": "ugly"}, True), ({"width": 896, "height": 1152}, False), ({"steps": 30}, False),
    ({"guidance": 7.0}, False), ({"scheduler": "ddim"}, False), ({"fast": True}, False),
    ({"source_job": 3, "strength": 0.6}, False),
])
def test_batch_key_covers_the_scalar_pipeline_arguments(change: dict[str, Any], same: bool) -> None:
    """Jobs differing only in prompt, seed or count share a batch key; size, steps, CFG, sampler, mode split it."""
    base = build(seed=1)
    assert (replace(base, **change).batch_key() == base.batch_key()) is same


def test_variation_of_other_sources_share_a_batch_key() -> None:
    """Variations of different images at one strength can share a pipeline call (one init image each)."""
    base = build(seed=1)
    assert base.variation(3, 0, 0.6, 5).batch_key() == base.variation(4, 1, 0.6, 9).batch_key()


def test_variation_keeps_the_source_settings_with_a_new_seed() -> None:
    """A variation has the source's prompt, size, steps and count, the given seed and strength."""
    base = build(prompt="a fox", seed=1, count=2, steps=20)
    v = base.variation(12, 1, 0.6, 99)
    assert (v.prompt, v.count, v.steps, v.seed) == ("a fox", 2, 20, 99)
    assert (v.source_job, v.source_image, v.strength, v.denoise_steps) == (12, 1, 0.6, 12)


def test_variation_runs_at_least_one_step() -> None:
    """At 1 step and strength 0.3 the steps grow to 4, so one denoising step runs."""
    assert build(steps=1).variation(1, 0, 0.3, 1).denoise_steps == 1


def test_plain_job_runs_all_its_steps() -> None:
    """A job that is not a variation denoises for all of its steps."""
    assert build(steps=20).denoise_steps == 20


def test_params_round_trip_through_dict() -> None:
    """to_dict and from_dict give back equal parameters; unknown keys are ignored."""
    p = build(seed=7, count=2, size="16:9")
    assert GenerationParams.from_dict(dict(p.to_dict(), unknown=1)) == p


def test_describe_names_the_source_of_a_variation() -> None:
    """A variation's summary (the PNG metadata) says which image it varies and how strongly."""
    assert "Variation of: job 12 image 2, strength 0.6" in build(seed=1).variation(12, 1, 0.6, 5).describe()


def test_describe_states_every_parameter() -> None:
    """The human summary carries the prompt, negative prompt, steps, CFG, seed, size and sampler."""
    text = build(prompt="a fox", negative_prompt="ugly", seed=7, steps=20, guidance=6.5).describe()
    assert text.startswith("a fox\nNegative prompt: ugly\n")
    for part in ("Steps: 20", "CFG scale: 6.5", "Seed: 7", "Size: 1024x1024", "Sampler: euler"):
        assert part in text


def test_defaults_from_settings_follow_environment_values() -> None:
    """Deployment defaults come from DEFAULT_* and the MAX_* bounds."""
    s = EngineSettings(_env_file=None, sizes="64x64,96x64", default_size="96x64", default_steps=3,
                       default_guidance=4.0, default_negative_prompt="bad", max_count=2, per_user_cap=3)
    d = Defaults.from_settings(s)
    assert (d.size, d.steps, d.guidance, d.negative_prompt, d.max_count, d.per_user_cap) == \
        ("96x64", 3, 4.0, "bad", 2, 3)


def test_guild_overrides_apply_on_top_of_global_ones() -> None:
    """Merging env defaults, then global overrides, then a guild's: the most specific value wins."""
    env = Defaults(steps=25, guidance=9.0, count=1)
    merged = env.merged({"steps": 30, "guidance": 5.0}).merged({"steps": 12})
    assert (merged.steps, merged.guidance, merged.count) == (12, 5.0, 1)


@pytest.mark.parametrize("text", ["a \ud800 fox", "fox \udfff", "\udc00"])
def test_lone_surrogates_are_refused_with_the_position(text: str) -> None:
    """A lone UTF-16 surrogate is not a character: refused, saying where, instead of failing the job later."""
    with pytest.raises(ParamError, match="invalid character at position .* lone UTF-16 surrogate"):
        clean_prompt(text)


def test_parameters_stored_before_the_rename_keep_their_source() -> None:
    """A job stored with the old names (vary_job, vary_image, vary_strength) still reads as image-to-image."""
    stored = {"prompt": "a fox", "negative_prompt": "", "width": 64, "height": 64, "steps": 10, "guidance": 5.0,
              "seed": 1, "vary_job": 7, "vary_image": 1, "vary_strength": 0.4}
    p = GenerationParams.from_dict(stored)
    assert (p.source_job, p.source_image, p.strength, p.is_image_to_image) == (7, 1, 0.4, True)


def test_a_tiles_variation_is_a_tile_but_its_upscale_and_canvas_edits_are_not() -> None:
    """--tile carries to a variation (it wraps like its source) and a reroll, not to an upscale (refined in tiles of
    its own) or a canvas edit (a zoomed or panned edge cannot wrap)."""
    from engine.requests.canvas_edits import CanvasEdit
    from engine.requests.sizes import Size

    tile = build(prompt="leaves", tile=True, seed=1)
    assert tile.tile and "Tile: seamless" in tile.describe() and tile.batch_key() != build(prompt="x", seed=1).batch_key()
    assert tile.variation(1, 0, 0.5, 2).tile and tile.with_seed(5).tile
    assert not tile.upscaled(1, 0, 0.3).tile
    assert not tile.on_canvas(1, 0, CanvasEdit("zoom", zoom=2.0), Size(1024, 1024), 3).tile
