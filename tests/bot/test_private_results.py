"""Private results through discord.py against the emulator: only the member sees them, buttons included, and a
late result goes by DM, never to the channel."""

from __future__ import annotations

from tests.bot.conftest import button_ids, message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import FakeDiscord


def _public_images(fake: FakeDiscord) -> list:
    """Messages with images that everyone in the default channel sees (ephemeral ones are the member's alone)."""
    return [m for m in fake.channel_messages(fake.default_channel.id)
            if m.get("attachments") and not m.get("flags", 0) & 64]


def _ephemeral_ack(inter) -> bool:
    return bool(inter.callbacks[0].json.get("data", {}).get("flags", 0) & 64)


async def test_a_private_imagine_is_answered_only_to_the_member(engine, fake: FakeDiscord, start_bot):
    """private:True acknowledges privately, and the result with its buttons arrives on that private message."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox", "private": True})
        message = await inter.wait_original(message_has_result, timeout=60)
    assert _ephemeral_ack(inter) and message["flags"] & 64
    assert any(i.startswith("imagine:reroll:") for i in button_ids(message))
    assert not _public_images(fake)


async def test_the_private_preference_makes_results_private(engine, fake: FakeDiscord, start_bot):
    """/prefer set private:True: later /imagine results reach only the member; private:False overrides it."""
    async with start_bot(engine):
        await _answer(await fake.slash("prefer set", {"private": True}))
        hidden = await fake.slash("imagine", {"prompt": "a red fox"})
        await hidden.wait_original(message_has_result, timeout=60)
        shown = await fake.slash("imagine", {"prompt": "a blue fox", "private": False})
        await shown.wait_original(message_has_result, timeout=60)
    assert _ephemeral_ack(hidden) and not _ephemeral_ack(shown)


async def test_reroll_of_a_private_result_stays_private(engine, fake: FakeDiscord, start_bot):
    """A button on a private result makes a private job too."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox", "private": True})
        message = await inter.wait_original(message_has_result, timeout=60)
        reroll = next(i for i in button_ids(message) if i.startswith("imagine:reroll:"))
        click = await fake.click(reroll, int(message["id"]))
        await click.wait_original(message_has_result, timeout=60)
    assert _ephemeral_ack(click)


async def test_a_late_private_result_goes_by_dm_not_to_the_channel(gated_engine, fake: FakeDiscord, start_bot):
    """Past the interaction's 15 minutes a private result is sent to the member by DM; the channel gets nothing."""
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox", "private": True})
        await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)
        fake.clock.advance(15 * 60 + 5)
        release()
        dm = fake.dm_channel(fake.default_user)
        await fake.wait_until(lambda: any(m.get("attachments") for m in fake.channel_messages(dm.id)),
                              timeout=30, what="DM with the private result")
    assert not _public_images(fake)
    assert (await engine.get_job(1)).delivered_at is not None


async def test_u_on_a_private_result_shows_the_image_privately(engine, fake: FakeDiscord, start_bot):
    """The single image of a private grid reaches only the member too."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox", "private": True})
        message = await inter.wait_original(message_has_result, timeout=60)
        click = await fake.click("imagine:select:1:0", int(message["id"]))
        single = await click.wait_original(message_has_result, timeout=30)
    assert _ephemeral_ack(click) and single["flags"] & 64
