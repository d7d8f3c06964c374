"""The late-delivery fallback in each context: past the interaction token's life, the bot posts only where it
may (a guild that installed it, its own DM) and sends everything else by DM, also after a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.bot.places import NO_CHANNEL, channel_requests, place, wait_delivered
from tests.support.discord_emulator import FakeDiscord, FakeUser

EXPIRED = 15 * 60 + 5  # seconds to age the emulator's clock: the interaction token is then refused (50027)


async def _queued(fake: FakeDiscord, kwargs: dict[str, Any]) -> None:
    inter = await fake.slash("imagine", {"prompt": "a red fox"}, **kwargs)
    await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)


async def _dm_with(fake: FakeDiscord, user: FakeUser, what: str = "attachments") -> dict[str, Any]:
    dm = fake.dm_channel(user)
    await fake.wait_until(lambda: any(m.get(what) for m in fake.channel_messages(dm.id)), timeout=30,
                          what=f"DM with {what}")
    return [m for m in fake.channel_messages(dm.id) if m.get(what)][-1]


@pytest.mark.parametrize("where", NO_CHANNEL)
async def test_expired_token_sends_the_result_by_dm_without_touching_the_channel(
        gated_engine, fake: FakeDiscord, start_bot, where: str):
    """Where the bot has no channel, the late result goes straight to the requester's DM."""
    engine, release = gated_engine
    user, kwargs = place(fake, where)
    async with start_bot(engine):
        await _queued(fake, kwargs)
        fake.clock.advance(EXPIRED)
        release()
        msg = await _dm_with(fake, user)
        assert await wait_delivered(engine, 1)
    assert msg["embeds"] and msg["components"]
    assert channel_requests(fake, kwargs["channel_id"]) == []


async def test_expired_token_in_the_bots_dm_posts_in_that_dm(gated_engine, fake: FakeDiscord, start_bot):
    """In the bot's own DM the late result is a normal message in that DM, pinging the requester."""
    engine, release = gated_engine
    user, kwargs = place(fake, "bot_dm")
    async with start_bot(engine):
        await _queued(fake, kwargs)
        fake.clock.advance(EXPIRED)
        release()
        msg = await _dm_with(fake, user)
        assert await wait_delivered(engine, 1)
    assert msg.get("webhook_id") is None and msg["content"].startswith(f"<@{user.id}>")


async def test_late_failure_is_told_by_dm_in_a_group_dm(gated_engine, fake: FakeDiscord, start_bot):
    """A job that fails after the token expired is reported by DM too, not in the group DM."""
    engine, release = gated_engine
    user, kwargs = place(fake, "group_dm")

    def explode(jobs):
        raise RuntimeError("boom")

    engine.before_batch = explode
    async with start_bot(engine):
        await _queued(fake, kwargs)
        fake.clock.advance(EXPIRED)
        release()
        msg = await _dm_with(fake, user, what="content")
    assert "failed" in msg["content"].lower()
    assert channel_requests(fake, kwargs["channel_id"]) == []


async def test_refused_dm_leaves_the_job_undelivered_and_the_channel_untouched(
        gated_engine, fake: FakeDiscord, start_bot):
    """If the requester refuses DMs, the result stays undelivered (retried on restart); the channel is left be."""
    engine, release = gated_engine
    user, kwargs = place(fake, "user_install_guild")
    user.accepts_dms = False
    async with start_bot(engine):
        await _queued(fake, kwargs)
        fake.clock.advance(EXPIRED)
        release()
        dm = fake.dm_channel(user)
        await fake.wait_until(lambda: any(r.status == 403 for r in fake.find("POST", f"/channels/{dm.id}/messages")),
                              timeout=30, what="refused DM")
    assert (await engine.get_job(1)).delivered_at is None
    assert channel_requests(fake, kwargs["channel_id"]) == []


async def test_restarted_bot_still_sends_by_dm(gated_engine, fake: FakeDiscord, start_bot):
    """What the job may use is stored with it: a result that finished while the bot was away goes by DM."""
    engine, release = gated_engine
    user, kwargs = place(fake, "user_install_guild")
    async with start_bot(engine):
        await _queued(fake, kwargs)
    release()
    for _ in range(300):  # the job finishes with no bot to deliver it
        if (await engine.get_job(1)).state == "done":
            break
        await asyncio.sleep(0.1)
    fake.clock.advance(EXPIRED)
    async with start_bot(engine):
        await _dm_with(fake, user)
        assert await wait_delivered(engine, 1)
    assert channel_requests(fake, kwargs["channel_id"]) == []
