"""Quotas through Discord: /quota, refusals told privately, bursts from every front door, /settings for quotas."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.service import Engine
from tests.bot.conftest import message_has_result, private_refusal
from tests.bot.test_commands import MANAGE_GUILD, _answer
from tests.bot.test_pictures import png
from tests.support.discord_emulator import FakeDiscord

BURST = 20


async def test_quota_shows_what_is_left_and_when_it_resets(engine, fake: FakeDiscord, start_bot):
    """/quota lists the member's and the server's daily and hourly images left, with reset times."""
    guild = str(fake.default_guild.id)
    await engine.policy.set_defaults(guild, {"quota_member_day": 5, "quota_server_hour": 20})
    async with start_bot(engine):
        text = await _answer(await fake.slash("quota"))
    assert "5 of 5 images left" in text and "20 of 20 images left" in text
    assert "resets <t:" in text and "no limit" in text


async def test_imagine_over_quota_is_refused_privately(engine, fake: FakeDiscord, start_bot):
    """Past the member's daily quota /imagine answers only the member, with the reset, and leaves no public trace."""
    guild = str(fake.default_guild.id)
    await engine.policy.set_defaults(guild, {"quota_member_day": 1})
    async with start_bot(engine):
        first = await fake.slash("imagine", {"prompt": "a fox"})
        await first.wait_original(lambda m: bool(m.get("embeds")), timeout=30)
        text = await private_refusal(await fake.slash("imagine", {"prompt": "another fox"}))
    assert "daily quota on this server: 1 of 1 images used, 0 left" in text and "UTC" in text


async def images_made(engine: Engine) -> int:
    """Images of every job the engine accepted (queued, running or done)."""
    jobs = await engine.history(limit=1000, states=("queued", "running", "done"))
    return sum(job.params.count for job in jobs)


async def refused_count(inters: list[Any]) -> int:
    """How many of ``inters`` were refused over a quota (each told when it resets)."""
    await asyncio.gather(*(i.wait_acked(timeout=5) for i in inters))
    done = await asyncio.gather(*(_outcome(i) for i in inters))
    return sum(1 for text in done if text is not None and "resets at" in text)


async def _outcome(inter: Any) -> str | None:
    """The refusal text of an interaction, or None once it shows a result."""
    def settled() -> bool:
        original = inter.original
        return (original is not None and message_has_result(original)) or any(m["flags"] & 64 for m in inter.followups)

    await inter._fake.wait_until(settled, timeout=60, what=f"outcome of {inter!r}")
    private = [m["content"] for m in inter.followups if m["flags"] & 64]
    return private[0] if private else None


async def _burst_setup(engine: Engine, fake: FakeDiscord, quota: int) -> None:
    guild = str(fake.default_guild.id)
    await engine.policy.set_defaults("global", {"per_user_cap": 100})  # the operator's: a server cannot raise it
    await engine.policy.set_defaults(guild, {"quota_member_day": quota})


async def test_twenty_imagines_at_once_make_exactly_the_quota(engine, fake: FakeDiscord, start_bot):
    """20 /imagine at once against a daily quota of 3 make exactly 3 images; the other 17 are told when it resets."""
    await _burst_setup(engine, fake, 3)
    async with start_bot(engine):
        inters = await asyncio.gather(*(fake.slash("imagine", {"prompt": f"fox {n}"}) for n in range(BURST)))
        assert await refused_count(inters) == BURST - 3
    assert await images_made(engine) == 3


async def test_a_burst_with_count_counts_images_not_jobs(engine, fake: FakeDiscord, start_bot):
    """With count:3 and a quota of 3, one job of the 20 runs."""
    await _burst_setup(engine, fake, 3)
    async with start_bot(engine):
        inters = await asyncio.gather(*(fake.slash("imagine", {"prompt": f"fox {n}", "count": 3})
                                        for n in range(BURST)))
        assert await refused_count(inters) == BURST - 1
    assert await images_made(engine) == 3


async def test_a_burst_of_pictures_makes_exactly_the_quota(engine, fake: FakeDiscord, start_bot):
    """/imagine image: sent 8 times at once against a quota of 1 makes one job from a picture."""
    await _burst_setup(engine, fake, 1)
    async with start_bot(engine):
        pictures = [fake.upload_attachment(f"fox{n}.png", png(150, 100, (n * 20, 40, 40))) for n in range(8)]
        inters = await asyncio.gather(*(fake.slash("imagine", {"prompt": "a red fox", "image": p}) for p in pictures))
        assert await refused_count(inters) == 7
    assert await images_made(engine) == 1


async def test_a_burst_of_reroll_clicks_makes_exactly_the_quota(engine, fake: FakeDiscord, start_bot):
    """After one image of a quota of 3, ten Reroll clicks at once make exactly two more."""
    await _burst_setup(engine, fake, 3)
    async with start_bot(engine):
        msg = await (await fake.slash("imagine", {"prompt": "a red fox"})).wait_original(message_has_result, timeout=30)
        reroll = next(c["custom_id"] for row in msg["components"] for c in row["components"]
                      if c.get("custom_id", "").startswith("imagine:reroll:"))
        inters = await asyncio.gather(*(fake.click(reroll, int(msg["id"])) for _ in range(10)))
        assert await refused_count(inters) == 8
    assert await images_made(engine) == 3


async def test_a_burst_of_edit_forms_makes_exactly_the_quota(engine, fake: FakeDiscord, start_bot):
    """Ten Edit forms submitted at once, after one image of a quota of 2, make exactly one more."""
    await _burst_setup(engine, fake, 2)
    async with start_bot(engine):
        msg = await (await fake.slash("imagine", {"prompt": "a red fox"})).wait_original(message_has_result, timeout=30)
        click = await fake.click("imagine:edit:1", int(msg["id"]))
        await click.wait_acked(timeout=3)
        form = click.modal["custom_id"]
        inters = await asyncio.gather(*(fake.submit_modal(form, {"prompt": f"a blue fox {n}", "negative": ""},
                                                          message_id=int(msg["id"])) for n in range(10)))
        assert await refused_count(inters) == 9
    assert await images_made(engine) == 2


async def test_settings_sets_quotas_and_shows_them(engine, fake: FakeDiscord, start_bot):
    """/settings member_daily and server_hourly store the server's quotas and show them."""
    guild = str(fake.default_guild.id)
    async with start_bot(engine):
        text = await _answer(await fake.slash("settings quota", {"member_daily": 10, "server_hourly": 50},
                                              permissions=MANAGE_GUILD))
    assert "member 10/day" in text and "server 0/day, 50/hour" in text
    assert engine.policy.overrides(guild) == {"quota_member_day": 10, "quota_server_hour": 50}
