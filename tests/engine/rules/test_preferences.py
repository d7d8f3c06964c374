"""A member's own defaults (/prefer): what they fill, what wins over them, and what a place does not allow."""

from __future__ import annotations

import pytest

from engine.requests.params import ParamError, ParamRequest, Style
from engine.service import Engine


async def test_preferences_fill_what_the_request_leaves_open(engine: Engine) -> None:
    """A preferred size, steps and negative prompt apply; a value the request gives wins."""
    await engine.preferences.set("u1", {"size": "96x64", "steps": 3, "negative_prompt": "blurry"})
    params, notes = await engine.resolve_for(ParamRequest(prompt="a fox", steps=2), None, "u1")
    assert (params.width, params.height, params.steps, params.negative_prompt) == (96, 64, 2, "blurry")
    assert notes == ()


async def test_another_members_requests_keep_the_server_defaults(engine: Engine) -> None:
    """Preferences are the member's own."""
    await engine.preferences.set("u1", {"size": "96x64"})
    params, _ = await engine.resolve_for(ParamRequest(prompt="a fox"), None, "u2")
    assert (params.width, params.height) == (64, 64)


async def test_a_preference_above_the_servers_limit_is_left_out_with_a_note(engine: Engine) -> None:
    """Steps above this server's maximum are not used there, and the member is told; other servers still use them."""
    await engine.policy.set_defaults("g1", {"max_steps": 2})
    await engine.preferences.set("u1", {"steps": 5})
    params, notes = await engine.resolve_for(ParamRequest(prompt="a fox"), "g1", "u1")
    assert params.steps == 2 and "above this server's maximum of 2" in str(notes[0]) and "/prefer" in str(notes[0])
    elsewhere, _ = await engine.resolve_for(ParamRequest(prompt="a fox"), "g2", "u1")
    assert elsewhere.steps == 5


async def test_a_deleted_preferred_style_is_left_out_with_a_note(engine: Engine) -> None:
    """A style the operator removed since does not make every request of the member fail."""
    await engine.styles.save(Style("noir", "{prompt}, film noir"))
    await engine.preferences.set("u1", {"style": "noir"})
    styled, _ = await engine.resolve_for(ParamRequest(prompt="a fox"), None, "u1")
    await engine.styles.delete("noir")
    plain, notes = await engine.resolve_for(ParamRequest(prompt="a fox"), None, "u1")
    assert styled.prompt == "a fox, film noir" and plain.prompt == "a fox"
    assert "style 'noir' no longer exists" in str(notes[0])


async def test_preferences_are_checked_when_set(engine: Engine) -> None:
    """A size the deployment does not offer, or a setting that is not a preference, is refused with the reason."""
    with pytest.raises(ParamError, match="size"):
        await engine.preferences.set("u1", {"size": "4000x4000"})
    with pytest.raises(ParamError, match="no preference named max_steps"):
        await engine.preferences.set("u1", {"max_steps": 3})
    assert await engine.preferences.get("u1") == {}


async def test_preferences_outlive_a_restart(make_settings) -> None:
    """They are kept in the job store."""
    settings = make_settings()
    async with Engine(settings) as first:
        await first.preferences.set("u1", {"count": 2, "fast": False})
    async with Engine(settings) as second:
        assert await second.preferences.get("u1") == {"count": 2, "fast": False}


async def test_one_preference_or_all_can_be_forgotten(engine: Engine) -> None:
    """None removes one preference; reset removes them all."""
    await engine.preferences.set("u1", {"count": 2, "steps": 3})
    assert await engine.preferences.set("u1", {"count": None}) == {"steps": 3}
    await engine.preferences.reset("u1")
    assert await engine.preferences.get("u1") == {}


async def test_fast_mode_keeps_its_own_steps_and_guidance(engine: Engine) -> None:
    """A member's quality-mode steps and guidance do not turn a fast job into a slow one with the fast LoRA."""
    await engine.preferences.set("u1", {"steps": 7, "guidance": 6.0})
    quality, _ = await engine.resolve_for(ParamRequest(prompt="a fox"), None, "u1")
    fast, _ = await engine.resolve_for(ParamRequest(prompt="a fox", fast=True), None, "u1")
    assert (quality.steps, quality.guidance) == (7, 6.0)
    assert (fast.steps, fast.guidance) == (engine.settings.fast_steps, 1.0)


async def test_a_fast_preference_where_fast_mode_is_missing_keeps_the_quality_preferences(make_engine) -> None:
    """Without the fast LoRA the preferred fast mode is left out (with a note) and the job runs in quality mode
    with the member's steps."""
    eng = await make_engine(fast_lora_id="")
    assert await eng.wait_ready(60)
    await eng.preferences.set("u1", {"fast": True, "steps": 3})
    params, notes = await eng.resolve_for(ParamRequest(prompt="a fox"), None, "u1")
    assert (params.fast, params.steps) == (False, 3) and "fast mode is not offered here" in str(notes[0])
