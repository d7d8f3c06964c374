"""Bad options and inline parameters get an ephemeral answer that says what is allowed."""

from __future__ import annotations

import pytest

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


def _content(req) -> str:
    return str((req.json or {}).get("content") or "") if isinstance(req.json, dict) else ""


async def _refusal(fake: FakeDiscord, options: dict) -> str:
    inter = await fake.slash("imagine", options)
    assert await inter.wait_acked(timeout=3) == 4
    data = inter.callbacks[0].json["data"]
    assert data["flags"] & 64, "refusals are ephemeral"
    return data["content"]


@pytest.mark.parametrize(("options", "expected"), [
    ({"prompt": "fox", "steps": 500}, "steps must be from 1 to 60"),
    ({"prompt": "fox", "guidance": 99.0}, "guidance must be from 0 to 20"),
    ({"prompt": "fox", "count": 9}, "count must be from 1 to 4"),
    ({"prompt": "fox --seed -3"}, "seed must be"),
    ({"prompt": "fox --ar banana"}, "unknown size 'banana'"),
    ({"prompt": "fox --size 1024x1024"}, "choose one of: 64x64"),
    ({"prompt": "fox --frobnicate 3"}, "unknown parameter --frobnicate"),
    ({"prompt": "fox --steps"}, "--steps needs a value"),
    ({"prompt": "   "}, "the prompt is empty"),
    ({"prompt": "\x00\x00"}, "the prompt is empty"),
])
async def test_invalid_input_is_refused_ephemerally(engine, fake: FakeDiscord, start_bot, options, expected):
    """Out-of-range values, unknown names and empty prompts are refused with the allowed range."""
    async with start_bot(engine):
        text = await _refusal(fake, options)
    assert expected in text


async def test_inline_parameters_are_applied(engine, fake: FakeDiscord, start_bot):
    """--ar, --seed, --steps, --count, --no and --cfg in the prompt set the job's parameters."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox --ar 3:2 --seed 42 --steps 3 --count 2 --cfg 5 "
                                                       "--no text, watermark"})
        msg = await inter.wait_original(message_has_result, timeout=30)
    p = (await engine.get_job(1)).params
    assert (p.prompt, p.width, p.height, p.seed, p.steps, p.count, p.guidance) == ("a fox", 96, 64, 42, 3, 2, 5.0)
    assert p.negative_prompt == "text, watermark"
    assert len(msg["attachments"]) == 2


async def test_explicit_option_wins_over_inline(engine, fake: FakeDiscord, start_bot):
    """An option given explicitly replaces the inline value, and the user is told."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox --seed 5", "seed": 9})
        await inter.wait_original(message_has_result, timeout=30)
    assert (await engine.get_job(1)).params.seed == 9
    assert any("--seed 5 in the prompt was replaced by the seed option" in _content(r) for r in inter.requests)


async def test_long_prompt_is_accepted_with_a_truncation_note(engine, fake: FakeDiscord, start_bot):
    """A 5000-character prompt runs, and the user is told only the first 77 tokens are read."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "fox " * 1250})
        await inter.wait_original(message_has_result, timeout=30)
    assert any("only the first 77" in _content(r) for r in inter.requests)


async def test_blocklisted_word_is_refused(engine, fake: FakeDiscord, start_bot):
    """A prompt with a blocked word (any case, accents, full-width) is refused ephemerally."""
    await engine.policy.set_blocklist("global", ["gore"])
    async with start_bot(engine):
        text = await _refusal(fake, {"prompt": "lots of ＧÖRE please"})
    assert "blocked" in text and await engine.get_job(1) is None


async def test_fast_flag_uses_the_lcm_recipe(engine, fake: FakeDiscord, start_bot):
    """--fast runs fast mode with FAST_STEPS steps and guidance 1, and the embed says so."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox --fast"})
        msg = await inter.wait_original(message_has_result, timeout=30)
    p = (await engine.get_job(1)).params
    assert p.fast and p.steps == 4 and p.guidance == 1.0
    assert {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}["Sampler"] == "LCM (fast)"
