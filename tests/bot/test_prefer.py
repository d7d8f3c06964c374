"""/prefer through discord.py against the emulator: a member's own defaults, shown, used by /imagine, reset."""

from __future__ import annotations

from engine.service import Engine
from tests.bot.conftest import message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import FakeDiscord


async def _made(engine: Engine, fake: FakeDiscord, options: dict) -> object:
    inter = await fake.slash("imagine", {"prompt": "a red fox", **options})
    await inter.wait_original(message_has_result, timeout=60)
    [job] = await engine.history(limit=1)
    return job


async def test_imagine_uses_the_members_preferences(engine, fake: FakeDiscord, start_bot):
    """After /prefer set, /imagine without those options uses the member's size and negative prompt."""
    async with start_bot(engine):
        saved = await _answer(await fake.slash("prefer set", {"size": "96x64", "negative_prompt": "blurry"}))
        job = await _made(engine, fake, {})
    assert saved.startswith("\u2705 Saved.") and "Size 96x64" in saved and "Negative blurry" in saved
    assert (job.params.width, job.params.height, job.params.negative_prompt) == (96, 64, "blurry")


async def test_an_option_typed_in_the_request_wins_over_a_preference(engine, fake: FakeDiscord, start_bot):
    """The size option given with /imagine beats the preferred one."""
    async with start_bot(engine):
        await _answer(await fake.slash("prefer set", {"size": "96x64"}))
        job = await _made(engine, fake, {"size": "64x96"})
    assert (job.params.width, job.params.height) == (64, 96)


async def test_prefer_show_and_reset(engine, fake: FakeDiscord, start_bot):
    """show lists the preferences; reset with a choice forgets that one, without one forgets all."""
    async with start_bot(engine):
        await _answer(await fake.slash("prefer set", {"steps": 3, "fast": False}))
        shown = await _answer(await fake.slash("prefer show"))
        one = await _answer(await fake.slash("prefer reset", {"which": "steps"}))
        everything = await _answer(await fake.slash("prefer reset"))
    assert "Steps 3" in shown and "Fast mode off" in shown
    assert "Steps" not in one and "Fast mode off" in one
    assert "You have no preferences" in everything
