"""Delivery under Discord faults: rate limits and 5xx on the upload, expired tokens, closed channels."""

from __future__ import annotations

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord

ORIGINAL = "/webhooks/*/*/messages/@original"


async def _queued(fake: FakeDiscord, **kwargs):
    inter = await fake.slash("imagine", {"prompt": "a red fox"}, **kwargs)
    await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)
    return inter


async def test_429_and_500_on_the_final_upload_are_retried(gated_engine, fake: FakeDiscord, start_bot):
    """A rate limit and a server error on the result upload still end with the image delivered."""
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await _queued(fake)
        mark = fake.mark()
        fake.inject("PATCH", ORIGINAL, 429, times=1)
        fake.inject("PATCH", ORIGINAL, 500, times=2)
        release()
        await inter.wait_original(message_has_result, timeout=40)
    statuses = [r.status for r in fake.find("PATCH", ORIGINAL, since=mark)]
    assert 429 in statuses and 500 in statuses and statuses[-1] == 200
    assert (await engine.get_job(1)).delivered_at is not None


async def test_expired_token_falls_back_to_a_channel_message(gated_engine, fake: FakeDiscord, start_bot):
    """Past the token's 15 minutes, the result is posted in the channel, pinging only the requester."""
    engine, release = gated_engine
    async with start_bot(engine):
        await _queued(fake)
        fake.clock.advance(15 * 60 + 5)
        release()
        channel = fake.default_channel.id
        await fake.wait_until(lambda: any(m.get("attachments") for m in fake.channel_messages(channel)
                                          if m.get("webhook_id") is None and m["content"].startswith("<@")),
                              timeout=30, what="fallback message")
        msg = [m for m in fake.channel_messages(channel) if m["content"].startswith("<@")][-1]
    user = fake.default_user.id
    assert msg["content"].startswith(f"<@{user}>")
    assert msg["allowed_mentions"]["users"] == [str(user)] or msg["allowed_mentions"]["users"] == [user]
    assert not msg["allowed_mentions"].get("parse")
    assert msg["embeds"] and msg["components"]
    assert (await engine.get_job(1)).delivered_at is not None


async def test_expired_token_and_closed_channel_fall_back_to_a_dm(gated_engine, fake: FakeDiscord, start_bot):
    """When the bot may not post in the channel either, the requester gets the result by DM."""
    engine, release = gated_engine
    closed = fake.add_channel(fake.default_guild, "read-only", bot_can_post=False)
    async with start_bot(engine):
        await _queued(fake, channel_id=closed.id)
        fake.clock.advance(15 * 60 + 5)
        release()
        dm = fake.dm_channel(fake.default_user)
        await fake.wait_until(lambda: any(m.get("attachments") for m in fake.channel_messages(dm.id)),
                              timeout=30, what="DM with the result")
    assert (await engine.get_job(1)).delivered_at is not None


async def test_undeliverable_result_stays_undelivered(gated_engine, fake: FakeDiscord, start_bot):
    """If neither the token, the channel nor a DM works, the job is not marked delivered."""
    engine, release = gated_engine
    closed = fake.add_channel(fake.default_guild, "read-only", bot_can_post=False)
    loner = fake.add_user("no-dms", accepts_dms=False)
    async with start_bot(engine):
        await _queued(fake, channel_id=closed.id, user=loner)
        fake.clock.advance(15 * 60 + 5)
        release()
        await fake.wait_until(lambda: any(r.status == 403 and "/channels/" in r.path and r.method == "POST"
                                          and fake.channels.get(int(r.path.split("/")[2])) is not None
                                          and fake.channels[int(r.path.split("/")[2])].type == 1
                                          for r in fake.requests), timeout=30, what="refused DM")
    job = await engine.get_job(1)
    assert job.state == "done" and job.delivered_at is None


async def test_token_near_expiry_goes_straight_to_the_channel(gated_engine, fake: FakeDiscord, start_bot):
    """Past TOKEN_SAFE_SECONDS the bot does not try the interaction token at all and posts in the channel."""
    import asyncio

    engine, release = gated_engine
    async with start_bot(engine, token_safe_seconds=2.0):
        inter = await _queued(fake)
        await asyncio.sleep(2.5)
        mark = fake.mark()
        release()
        channel = fake.default_channel.id
        await fake.wait_until(lambda: any(m.get("attachments") for m in fake.channel_messages(channel)
                                          if m["content"].startswith("<@")), timeout=30, what="channel message")
    assert not [r for r in fake.find("PATCH", ORIGINAL, since=mark) if r.files], "no upload through the token"
    assert "Queued" in inter.original["content"]  # the old message was left alone


async def test_finished_job_gets_no_new_tracker(engine, fake: FakeDiscord, start_bot):
    """Once a result is delivered, no late "queued" update can be routed to its message again."""
    async with start_bot(engine) as bot:
        inter = await fake.slash("imagine", {"prompt": "a fox"})
        await inter.wait_original(message_has_result, timeout=30)
        job = await engine.get_job(1)
        assert bot.get_cog("Imagine").delivery.tracker(job) is None
