"""Per-guild NSFW policy, and odd text that must come through intact but harmless."""

from __future__ import annotations

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def test_spoiler_policy_spoilers_images_outside_nsfw_channels(engine, fake: FakeDiscord, start_bot):
    """With policy 'spoiler', results in an ordinary channel are spoilered and not shown in the embed."""
    await engine.policy.set_defaults(str(fake.default_guild.id), {"nsfw_policy": "spoiler"})
    async with start_bot(engine):
        msg = await (await fake.slash("imagine", {"prompt": "a fox"})).wait_original(message_has_result, timeout=30)
    assert msg["attachments"][0]["filename"].startswith("SPOILER_")
    assert "image" not in msg["embeds"][0]


async def test_spoiler_policy_leaves_nsfw_channels_alone(engine, fake: FakeDiscord, start_bot):
    """In a channel marked NSFW, the same policy posts images normally."""
    nsfw = fake.add_channel(fake.default_guild, "after-dark", nsfw=True)
    await engine.policy.set_defaults(str(fake.default_guild.id), {"nsfw_policy": "spoiler"})
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"}, channel_id=nsfw.id)
        msg = await inter.wait_original(message_has_result, timeout=30)
    assert not msg["attachments"][0]["filename"].startswith("SPOILER_")


async def test_block_policy_refuses_outside_nsfw_channels(engine, fake: FakeDiscord, start_bot):
    """With policy 'block', /imagine outside NSFW channels is refused ephemerally with the reason."""
    await engine.policy.set_defaults(str(fake.default_guild.id), {"nsfw_policy": "block"})
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"})
        assert await inter.wait_acked(timeout=3) == 4
    assert "marked NSFW" in inter.callbacks[0].json["data"]["content"]


async def test_zalgo_and_bidi_overrides_are_tamed(engine, fake: FakeDiscord, start_bot):
    """Stacked combining marks are trimmed and bidi override characters removed; Arabic text survives."""
    zalgo = ("f" + "\u0301\u0302\u0303\u0304\u0305\u0306\u0307" * 5
             + "ox \u202eevil\u202c \u0645\u0631\u062d\u0628\u0627")
    async with start_bot(engine):
        await (await fake.slash("imagine", {"prompt": zalgo})).wait_original(message_has_result, timeout=30)
    prompt = (await engine.get_job(1)).params.prompt
    assert "\u202e" not in prompt and "\u202c" not in prompt
    assert "\u0645\u0631\u062d\u0628\u0627" in prompt
    assert len(prompt) < 20


async def test_internal_error_reaches_discord_without_details(engine, fake: FakeDiscord, start_bot):
    """A crash inside generation tells the user it failed, with no exception text or traceback."""
    def explode(jobs):
        raise RuntimeError("secret internal detail /home/op/.cache")

    engine.before_batch = explode
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"})
        msg = await inter.wait_original(lambda m: "failed" in m["content"], timeout=30)
    assert "secret internal detail" not in msg["content"] and "Traceback" not in msg["content"]
    assert "RuntimeError" not in msg["content"]
    assert (await engine.get_job(1)).state == "failed"


async def test_spoiler_policy_spoilers_progress_previews(make_settings, fake: FakeDiscord, start_bot):
    """The preview of a running job is as sensitive as its result: under 'spoiler' it is spoilered too."""
    from engine.service import Engine

    engine = Engine(make_settings(sizes="512x512", default_size="512x512", preview_interval=0.3))
    await engine.start()
    try:
        await engine.policy.set_defaults(str(fake.default_guild.id), {"nsfw_policy": "spoiler"})
        async with start_bot(engine):
            inter = await fake.slash("imagine", {"prompt": "a castle", "steps": 40})
            await inter.wait_original(message_has_result, timeout=90)
    finally:
        await engine.stop()
    previews = {f.filename for r in inter.requests for f in r.files if f.filename.endswith("preview.jpg")}
    assert previews == {"SPOILER_preview.jpg"}
