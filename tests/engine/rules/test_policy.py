"""Operator policy: validating overrides, parent defaults, and editing blocklists."""

from __future__ import annotations

from typing import Any

import pytest

from engine.requests.params import DEFAULT_FIELDS, Limits, ParamError, ParamRequest
from engine.requests.sizes import SDXL_SIZES, parse_size_list
from engine.rules.policy import GLOBAL, parse_words, validate_overrides
from engine.service import Engine
from tests.engine.helpers import GatedLoader

LIMITS = Limits(sizes=parse_size_list(SDXL_SIZES), max_steps=60, max_guidance=20.0, max_count=4)


@pytest.mark.parametrize(("raw", "clean"), [
    ({"size": "16:9"}, {"size": "1344x768"}),
    ({"steps": "30"}, {"steps": 30}),
    ({"guidance": "7.25"}, {"guidance": 7.25}),
    ({"fast": "yes", "count": 2}, {"fast": True, "count": 2}),
    ({"negative_prompt": " ugly\x00 "}, {"negative_prompt": "ugly"}),
    ({"nsfw_policy": "block", "scheduler": "dpmpp_2m"}, {"nsfw_policy": "block", "scheduler": "dpmpp_2m"}),
    ({"nsfw_threshold": "0.75"}, {"nsfw_threshold": 0.75}),
    ({"steps": None}, {}),
])
def test_validate_overrides_normalises_values(raw: dict[str, Any], clean: dict[str, Any]) -> None:
    """Valid overrides come back normalised; None means "no override"."""
    assert validate_overrides(raw, LIMITS) == clean


@pytest.mark.parametrize(("raw", "message"), [
    ({"colour": "red"}, "unknown setting 'colour'; known: " + ", ".join(DEFAULT_FIELDS)),
    ({"steps": 0}, "steps must be from 1 to 60"),
    ({"max_steps": 61}, "max_steps must be from 1 to 60"),
    ({"count": 9}, "count must be from 1 to 4"),
    ({"guidance": 21}, "guidance must be from 0 to 20"),
    ({"per_user_cap": 0}, "per_user_cap must be from 1 to 1000"),
    ({"size": "512x512"}, "size: size 512x512 is not offered here"),
    ({"scheduler": "plms"}, "scheduler 'plms' is unknown; use one of euler"),
    ({"nsfw_policy": "maybe"}, "nsfw_policy 'maybe' is unknown; use one of allow, spoiler, block"),
    ({"fast": "sometimes"}, "fast must be true or false"),
    ({"nsfw_threshold": 0}, "nsfw_threshold is an NSFW score: above 0 and at most 1 (got 0)"),
    ({"nsfw_threshold": 1.5}, "nsfw_threshold is an NSFW score: above 0 and at most 1 (got 1.5)"),
])
def test_validate_overrides_rejects_with_range(raw: dict[str, Any], message: str) -> None:
    """A wrong override raises ParamError naming the setting and what is allowed."""
    with pytest.raises(ParamError) as info:
        validate_overrides(raw, LIMITS)
    assert message in str(info.value)


def test_parse_words_splits_on_commas_and_new_lines() -> None:
    """The one word parser: commas and new lines separate entries; blanks are dropped."""
    assert parse_words(" gore, spider\n\n big  cat ,") == ["gore", "spider", "big  cat"]


async def test_edit_blocklist_adds_and_removes_normalised_words(engine: Engine) -> None:
    """block/unblock text goes through the same parser and normalisation as the panel's list."""
    assert await engine.policy.edit_blocklist("g1", block="Spider, GORE") == ["gore", "spider"]
    assert await engine.policy.edit_blocklist("g1", block="clown", unblock="SPIDER") == ["clown", "gore"]


async def test_parent_defaults_are_env_for_global_and_global_for_a_guild(engine: Engine) -> None:
    """A guild falls back to the global defaults; the global scope to the environment."""
    await engine.policy.set_defaults(GLOBAL, {"steps": 3})
    assert engine.policy.parent_defaults("g1").steps == 3
    assert engine.policy.parent_defaults(GLOBAL).steps == engine.settings.default_steps


def test_lone_surrogate_in_a_saved_negative_prompt_is_refused() -> None:
    """The operator's default negative prompt goes through the same check (it would break the Defaults tab)."""
    with pytest.raises(ParamError, match="lone UTF-16 surrogate"):
        validate_overrides({"negative_prompt": "ugly \ud83d"}, LIMITS)


# --- defaults ------------------------------------------------------------------------------------


async def test_defaults_layer_guild_over_global_over_environment(make_engine) -> None:
    """Guild overrides win over global overrides, which win over the environment defaults."""
    eng = await make_engine(loader=GatedLoader(), default_steps=2, default_guidance=9.0)
    await eng.policy.set_defaults(GLOBAL, {"steps": 3, "count": 2})
    await eng.policy.set_defaults("g1", {"steps": 4, "guidance": 2.5})
    assert (eng.policy.defaults().steps, eng.policy.defaults().count, eng.policy.defaults().guidance) == (3, 2, 9.0)
    assert (eng.policy.defaults("g1").steps, eng.policy.defaults("g1").count, eng.policy.defaults("g1").guidance) == (4, 2, 2.5)
    assert eng.policy.defaults("g2").steps == 3


async def test_resolve_uses_the_guilds_defaults(make_engine) -> None:
    """A request without values gets its guild's defaults."""
    eng = await make_engine(loader=GatedLoader())
    await eng.policy.set_defaults("g1", {"size": "96x64", "steps": 5})
    p = eng.resolve(ParamRequest("a fox"), "g1")
    assert (p.width, p.height, p.steps) == (96, 64, 5)


async def test_none_removes_an_override(make_engine) -> None:
    """Setting a field to None drops that override and the next level shows through."""
    eng = await make_engine(loader=GatedLoader(), default_steps=2)
    await eng.policy.set_defaults(GLOBAL, {"steps": 7})
    await eng.policy.set_defaults(GLOBAL, {"steps": None})
    assert eng.policy.defaults().steps == 2 and eng.policy.overrides(GLOBAL) == {}


async def test_reset_defaults_removes_a_scope(make_engine) -> None:
    """reset_defaults forgets every override of a scope."""
    eng = await make_engine(loader=GatedLoader())
    await eng.policy.set_defaults("g1", {"steps": 7})
    await eng.policy.reset_defaults("g1")
    assert eng.policy.override_scopes() == [] and eng.policy.defaults("g1") == eng.policy.defaults()


async def test_invalid_override_is_refused_and_not_stored(make_engine) -> None:
    """An override outside its bounds raises ParamError and changes nothing."""
    eng = await make_engine(loader=GatedLoader())
    with pytest.raises(ParamError, match="steps must be from 1 to 60"):
        await eng.policy.set_defaults(GLOBAL, {"steps": 100})
    assert eng.policy.overrides(GLOBAL) == {} and eng.store.get_overrides(GLOBAL) == {}


async def test_overrides_survive_a_restart(make_engine, make_settings) -> None:
    """Run-time defaults are stored and come back on the next start on the same DATA_DIR."""
    settings = make_settings()
    first = await make_engine(settings=settings)
    await first.policy.set_defaults("g1", {"steps": 6})
    await first.stop()
    again = await make_engine(loader=GatedLoader(), settings=settings)
    assert again.policy.defaults("g1").steps == 6


# --- moderation through the engine ---------------------------------------------------------------


async def test_blocklists_combine_environment_global_and_guild(make_engine) -> None:
    """BLOCKLIST words apply everywhere, a guild's words only in that guild, after normalisation."""
    eng = await make_engine(loader=GatedLoader(), blocklist=("Gore",))
    assert await eng.policy.set_blocklist("g1", ["  Ｓｐｉｄｅｒ ", "spider"]) == ["spider"]
    assert eng.policy.blocked_words("a SPIDER and gore", "g1") == ["gore", "spider"]
    assert eng.policy.blocked_words("a spider", "g2") == []
    assert eng.policy.blocked_words("a cat", "g1") == []
