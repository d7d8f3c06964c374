"""Quotas through Discord: /quota, the instant refusal of /imagine, and /settings for quotas."""

from __future__ import annotations

from tests.bot.test_commands import MANAGE_GUILD, _answer
from tests.support.discord_emulator import FakeDiscord


async def test_quota_shows_what_is_left_and_when_it_resets(engine, fake: FakeDiscord, start_bot):
    """/quota lists the member's and the server's daily and hourly images left, with reset times."""
    guild = str(fake.default_guild.id)
    await engine.policy.set_defaults(guild, {"quota_member_day": 5, "quota_server_hour": 20})
    async with start_bot(engine):
        text = await _answer(await fake.slash("quota"))
    assert "5 of 5 images left" in text and "20 of 20 images left" in text
    assert "resets <t:" in text and "no limit" in text


async def test_imagine_over_quota_is_refused_at_once(engine, fake: FakeDiscord, start_bot):
    """Past the member's daily quota /imagine answers privately, before any acknowledgement, with the reset."""
    guild = str(fake.default_guild.id)
    await engine.policy.set_defaults(guild, {"quota_member_day": 1})
    async with start_bot(engine):
        first = await fake.slash("imagine", {"prompt": "a fox"})
        await first.wait_original(lambda m: bool(m.get("embeds")), timeout=30)
        text = await _answer(await fake.slash("imagine", {"prompt": "another fox"}))
    assert "daily quota on this server: 1 of 1 images used, 0 left" in text and "UTC" in text


async def test_settings_sets_quotas_and_shows_them(engine, fake: FakeDiscord, start_bot):
    """/settings member_daily and server_hourly store the server's quotas and show them."""
    guild = str(fake.default_guild.id)
    async with start_bot(engine):
        text = await _answer(await fake.slash("settings", {"member_daily": 10, "server_hourly": 50},
                                              permissions=MANAGE_GUILD))
    assert "member 10/day" in text and "server 0/day, 50/hour" in text
    assert engine.policy.overrides(guild) == {"quota_member_day": 10, "quota_server_hour": 50}
