"""Style presets (engine/requests/styles.py): checked when saved, kept in SQLite, applied in build_params alone."""

from __future__ import annotations

import pytest

from engine.requests.params import Defaults, Limits, ParamError, ParamRequest, Style, build_params
from engine.requests.sizes import parse_size_list
from engine.requests.styles import make_style
from engine.service import Engine

LIMITS = Limits(sizes=parse_size_list("64x64"), max_steps=60, max_guidance=20.0, max_count=4)
CINEMATIC = Style("cinematic", "cinematic still of {prompt}, film grain", "cartoon", guidance=6.5, steps=30)


def test_a_template_needs_the_placeholder_once() -> None:
    """A template without {prompt}, or with it twice, is refused with an example."""
    with pytest.raises(ParamError, match=r"exactly once"):
        make_style("noir", "black and white photo", limits=LIMITS)
    with pytest.raises(ParamError, match=r"exactly once"):
        make_style("noir", "{prompt} and {prompt}", limits=LIMITS)


def test_a_name_is_one_lower_case_word() -> None:
    """Names are folded to lower case; spaces or odd characters are refused (--style takes one word)."""
    assert make_style(" Noir ", "noir photo of {prompt}", limits=LIMITS).name == "noir"
    with pytest.raises(ParamError, match="one word"):
        make_style("film noir", "noir photo of {prompt}", limits=LIMITS)


def test_style_defaults_stay_within_the_deployment_bounds() -> None:
    """A style's steps or guidance beyond the limits is refused naming the range."""
    with pytest.raises(ParamError, match="steps must be from 1 to 60"):
        make_style("slow", "{prompt}", steps=99, limits=LIMITS)


def test_build_params_wraps_the_words_and_keeps_what_the_user_wrote() -> None:
    """The model gets the template around the prompt and both negatives; the user's own words are kept."""
    p = build_params(ParamRequest("a fox", negative_prompt="rain", seed=1), Defaults(size="64x64"), LIMITS,
                     style=CINEMATIC)
    assert (p.prompt, p.negative_prompt) == ("cinematic still of a fox, film grain", "rain, cartoon")
    assert (p.style, p.typed_prompt, p.typed_negative) == ("cinematic", "a fox", "rain")


def test_style_guidance_and_steps_replace_the_defaults_but_not_the_request() -> None:
    """A style's guidance and steps apply when the user sets none; a value the user gives wins."""
    defaults = Defaults(size="64x64", steps=25, guidance=9.0)
    assert (build_params(ParamRequest("a fox"), defaults, LIMITS, style=CINEMATIC).guidance,
            build_params(ParamRequest("a fox"), defaults, LIMITS, style=CINEMATIC).steps) == (6.5, 30)
    mine = build_params(ParamRequest("a fox", guidance=3, steps=5), defaults, LIMITS, style=CINEMATIC)
    assert (mine.guidance, mine.steps) == (3, 5)


def test_fast_mode_keeps_its_recipe_under_a_style() -> None:
    """Fast mode's 4 steps without CFG win over a style's defaults (the LCM recipe needs them)."""
    p = build_params(ParamRequest("a fox", fast=True), Defaults(size="64x64"), LIMITS, style=CINEMATIC)
    assert (p.steps, p.guidance) == (4, 1.0)


def test_the_png_text_names_the_style() -> None:
    """The parameters written into each PNG say which style was used."""
    p = build_params(ParamRequest("a fox", seed=1), Defaults(size="64x64"), LIMITS, style=CINEMATIC)
    assert "Style: cinematic" in p.describe() and p.to_dict()["style"] == "cinematic"


async def test_a_style_applies_to_the_next_request(engine: Engine) -> None:
    """A saved style is used by name at once; 'none' asks for no style."""
    await engine.styles.save(make_style("noir", "noir photo of {prompt}", limits=engine.policy.limits))
    assert engine.resolve(ParamRequest("a fox", style="NOIR")).prompt == "noir photo of a fox"
    assert engine.resolve(ParamRequest("a fox", style="none")).prompt == "a fox"


async def test_an_unknown_style_is_refused_with_the_known_ones(engine: Engine) -> None:
    """A style name that does not exist is refused, listing the styles there are."""
    await engine.styles.save(make_style("noir", "noir photo of {prompt}", limits=engine.policy.limits))
    with pytest.raises(ParamError, match="style 'pastel' is unknown; known styles: noir"):
        engine.resolve(ParamRequest("a fox", style="pastel"))


async def test_a_servers_default_style_applies_unless_the_user_says_none(engine: Engine) -> None:
    """A server's default style wraps requests that name none; --style none opts out."""
    await engine.styles.save(make_style("noir", "noir photo of {prompt}", limits=engine.policy.limits))
    await engine.policy.set_defaults("g1", {"style": "noir"})
    assert engine.resolve(ParamRequest("a fox"), "g1").style == "noir"
    assert engine.resolve(ParamRequest("a fox", style="none"), "g1").style == ""
    assert engine.resolve(ParamRequest("a fox"), "g2").style == ""


async def test_a_default_style_must_exist(engine: Engine) -> None:
    """Choosing a default style that is not defined is refused, naming the known ones."""
    with pytest.raises(ParamError, match="style 'noir' is unknown"):
        await engine.policy.set_defaults("g1", {"style": "noir"})


async def test_a_deleted_default_style_falls_back_to_none(engine: Engine) -> None:
    """Deleting a style that a server uses as its default leaves that server's requests unstyled."""
    await engine.styles.save(make_style("noir", "noir photo of {prompt}", limits=engine.policy.limits))
    await engine.policy.set_defaults("g1", {"style": "noir"})
    assert await engine.styles.delete("noir")
    assert engine.resolve(ParamRequest("a fox"), "g1").prompt == "a fox"


async def test_styles_survive_a_restart(make_settings) -> None:
    """Styles are stored in SQLite and loaded again by the next engine on the same DATA_DIR."""
    settings = make_settings()
    async with Engine(settings) as first:
        await first.styles.save(make_style("noir", "noir photo of {prompt}", "colour", 5.0, 3,
                                           limits=first.policy.limits))
        await first.policy.set_defaults("g1", {"style": "noir"})
    async with Engine(settings) as second:
        assert second.styles.get("noir") == Style("noir", "noir photo of {prompt}", "colour", 5.0, 3)
        assert second.policy.defaults("g1").style == "noir"
