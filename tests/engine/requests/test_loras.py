"""The LoRA catalogue (LORAS) and what a request chooses from it (engine/requests/loras.py)."""

from __future__ import annotations

import pytest

from engine.requests.checks import ParamError
from engine.requests.loras import LoraEntry, choose, parse_loras, spec_of, with_triggers
from engine.requests.params import Defaults, Limits, ParamRequest, build_params
from engine.requests.sizes import SDXL_SIZES, parse_size_list

OFFERED = (LoraEntry("pixel", "nerijs/pixel-art-xl", 0.8, "pixel art, 8bit"), LoraEntry("ink", "/m/ink.safetensors"))


def test_loras_are_parsed_with_weights_and_trigger_words() -> None:
    """Entries split at each ``name=``, so trigger words keep their commas; a weight suffix is the default weight."""
    assert parse_loras("pixel=nerijs/pixel-art-xl:0.8|pixel art, 8bit, ink=/m/ink.safetensors") == OFFERED
    assert parse_loras("  ") == ()


@pytest.mark.parametrize(("text", "message"), [
    ("pixel", "needs name=source"),
    ("Pixel Art=x", "must be 1-32 lower-case letters"),
    ("a=x, a=y", "names 'a' twice"),
    ("a=x:9", "the weight must be from -2 to 2"),
])
def test_a_wrong_loras_entry_names_itself(text: str, message: str) -> None:
    """Each mistake in LORAS is refused at start-up, naming the entry and what is allowed."""
    with pytest.raises(ParamError, match=message):
        parse_loras(text)


def test_a_request_chooses_loras_by_name_with_weights() -> None:
    """``pixel:0.5 ink`` picks both, sorted by name, ink at its default weight; ``none`` picks none."""
    assert choose("pixel:0.5 ink", OFFERED, 3) == (("ink", 1.0), ("pixel", 0.5))
    assert choose("PIXEL,ink:-0.25", OFFERED, 3) == (("ink", -0.25), ("pixel", 0.8))
    assert choose("none", OFFERED, 3) == ()
    assert spec_of((("ink", 1.0), ("pixel", 0.5))) == "ink:1 pixel:0.5" and spec_of(()) == "none"


@pytest.mark.parametrize(("spec", "message"), [
    ("sketch", "LoRA 'sketch' is not offered here; choose from: ink, pixel"),
    ("pixel:loud", "'loud' is not a weight"),
    ("pixel:3", "from -2 to 2"),
    ("pixel ink", "2 LoRAs asked for; at most 1 at once"),
])
def test_a_wrong_choice_says_what_is_offered(spec: str, message: str) -> None:
    """An unknown name lists what is offered; a bad weight or too many say the bounds."""
    with pytest.raises(ParamError, match=message):
        choose(spec, OFFERED, 1)


def test_trigger_words_are_added_only_when_missing() -> None:
    """A LoRA's trigger words join the prompt the model gets unless the words already hold them."""
    chosen = (("ink", 1.0), ("pixel", 0.8))
    assert with_triggers("a castle", chosen, OFFERED) == "a castle, pixel art, 8bit"
    assert with_triggers("Pixel Art, 8bit castle", chosen, OFFERED) == "Pixel Art, 8bit castle"


def test_build_params_keeps_the_typed_words_apart_from_the_trigger_words() -> None:
    """The model gets the trigger words; Edit and the /imagine line get what the member typed."""
    limits = Limits(sizes=parse_size_list(SDXL_SIZES), max_steps=60, max_guidance=20.0, max_count=4, loras=OFFERED)
    params = build_params(ParamRequest(prompt="a castle", loras="pixel", seed=1), Defaults(), limits)
    assert params.loras == (("pixel", 0.8),) and params.prompt == "a castle, pixel art, 8bit"
    assert params.typed_prompt == "a castle" and "LoRAs: pixel 0.8" in params.describe()
    assert type(params).from_dict(params.to_dict() | {"loras": [["pixel", 0.8]]}) == params


def test_an_nsfw_mark_after_a_name() -> None:
    """``name[nsfw]=`` marks a LoRA (and a model) NSFW; the name is stored without the mark."""
    from engine.requests.models import parse_models

    [lora] = parse_loras("lewd[NSFW]=/m/l.safetensors:0.7|nude")
    assert (lora.name, lora.nsfw, lora.weight, lora.triggers) == ("lewd", True, 0.7, "nude")
    assert [(m.name, m.nsfw) for m in parse_models("safe=/a, spicy[nsfw]=/b")] == [("safe", False), ("spicy", True)]
