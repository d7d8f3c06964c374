"""Defaults tab through gradio_client: validation, global defaults, per-server overrides."""

from __future__ import annotations

from engine.requests.params import ParamRequest
from engine.service import GLOBAL

# /save_defaults inputs after the scope, in form order:
# size, steps, guidance, negative_prompt, count, scheduler, fast, max_steps, max_count, per_user_cap


def form(**changes):
    values = dict(size="64x64", steps=2, guidance=9.0, negative_prompt="ugly, blurry, poor quality", count=1,
                  scheduler="euler", fast=False, max_steps=60, max_count=4, per_user_cap=4)
    values.update(changes)
    return list(values.values())


async def test_invalid_defaults_show_the_error_text(call, engine):
    """An out-of-range value is refused inline with the allowed range, and nothing is stored."""
    message, _stored, _scope = await call("/save_defaults", GLOBAL, *form(steps=500))
    assert "Not saved" in message and "steps must be from 1 to 60 (got 500)" in message
    assert engine.policy.defaults().steps == 2
    assert engine.policy.overrides(GLOBAL) == {}


async def test_saving_defaults_applies_to_the_next_request_at_once(call, engine):
    """Saved global defaults are what the engine resolves for the very next request."""
    message, stored, _scope = await call("/save_defaults", GLOBAL,
                                         *form(size="96x64", steps=7, guidance=4.5, scheduler="dpmpp_2m"))
    assert "Saved the global defaults" in message
    assert stored == {"size": "96x64", "steps": 7, "guidance": 4.5, "scheduler": "dpmpp_2m"}
    params = engine.resolve(ParamRequest(prompt="a cat"))
    assert (params.width, params.height, params.steps, params.guidance, params.scheduler) == (96, 64, 7, 4.5,
                                                                                              "dpmpp_2m")


async def test_guild_override_applies_only_to_that_guild(call, engine):
    """A server's override changes that server's defaults; others keep the global ones."""
    message, stored, _scope = await call("/save_defaults", "111", *form(steps=9, negative_prompt="text, watermark"))
    assert "Fox Den (111)" in message
    assert stored == {"steps": 9, "negative_prompt": "text, watermark"}
    assert engine.policy.defaults("111").steps == 9
    assert engine.policy.defaults("111").negative_prompt == "text, watermark"
    assert engine.policy.defaults("222").steps == 2
    assert engine.policy.defaults().steps == 2


async def test_typed_guild_id_is_accepted_and_listed(call, engine):
    """A server id the bot does not list can be typed; it then appears among the scopes."""
    await call("/save_defaults", "999000111", *form(count=2))
    assert engine.policy.defaults("999000111").count == 2
    values = await call("/load_defaults", "999000111")
    assert values[4] == 2  # count


async def test_unknown_scope_text_says_what_to_type(call, engine):
    """Free text that is neither global nor a server id is refused with how to find an id."""
    message, _stored, _scope = await call("/save_defaults", "my server", *form(steps=3))
    assert "is not a server" in message and "Copy Server ID" in message
    assert engine.policy.override_scopes() == []


async def test_reset_returns_a_guild_to_the_global_defaults(call, engine):
    """Reset removes a server's stored values."""
    await engine.policy.set_defaults("111", {"steps": 11})
    values = await call("/reset_defaults", "111")
    assert values[1] == 2  # steps back to the global value
    assert engine.policy.overrides("111") == {}
