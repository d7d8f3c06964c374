"""U<n> posts one image alone with its own buttons; under it Upscale (Subtle) and (Creative) make it 2x and Vary
(Subtle) and (Strong) vary it, through the queue for whoever clicks; also after a restart."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def _result(fake: FakeDiscord, prompt: str) -> dict:
    inter = await fake.slash("imagine", {"prompt": prompt})
    return await inter.wait_original(message_has_result, timeout=30)


async def _single(fake: FakeDiscord, grid: dict, image: int, **click) -> dict:
    """Press U<image + 1> on a grid; the message that shows that image alone."""
    pressed = await fake.click(f"imagine:select:1:{image}", int(grid["id"]), **click)
    return await pressed.wait_original(message_has_result, timeout=30)


def _rows(msg: dict) -> list[list[str]]:
    return [[c["custom_id"] for c in row["components"]] for row in msg["components"]]


def _labels(msg: dict) -> list[str]:
    return [c.get("label", "") for row in msg["components"] for c in row["components"]]


async def test_result_has_one_u_button_per_image(engine, fake: FakeDiscord, start_bot):
    """A two-image result has U1 and U2 on their own row below V1 and V2."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --count 2")
    assert _rows(msg)[2] == ["imagine:select:1:0", "imagine:select:1:1"]
    assert [label for label in _labels(msg) if label.startswith("U")] == ["U1", "U2"]


async def test_u_posts_that_image_alone_with_its_buttons(engine, fake: FakeDiscord, start_bot):
    """U2 posts image 2 (and only it) with its own seed, and the single-image buttons (vary and upscale first); no job
    is queued."""
    async with start_bot(engine):
        single = await _single(fake, await _result(fake, "a red fox --seed 11 --count 2"), 1)
    assert len(single["attachments"]) == 1 and single["attachments"][0]["filename"].startswith("imagine-1-1")
    embed = single["embeds"][0]
    assert embed["title"] == "Image 2 of job 1" and embed["fields"][0] == {"name": "Seed", "value": "12",
                                                                           "inline": True}
    assert _rows(single)[0] == ["imagine:varysubtle:1:1", "imagine:vary:1:1", "imagine:upscale:1:1",
                                "imagine:upcreative:1:1"]
    assert _labels(single)[:4] == ["Vary (Subtle)", "Vary (Strong)", "Upscale (Subtle)", "Upscale (Creative)"]
    assert await engine.get_job(2) is None


async def test_upscale_subtle_makes_a_2x_image_for_the_clicker(engine, fake: FakeDiscord, start_bot):
    """Upscale (Subtle) under image 2 queues it at twice the size for whoever clicks, at UPSCALE_STRENGTH."""
    async with start_bot(engine):
        single = await _single(fake, await _result(fake, "a red fox --seed 11 --count 2"), 1)
        click = await fake.click("imagine:upscale:1:1", int(single["id"]), user=fake.add_user("bob"))
        assert await click.wait_acked(timeout=3) == 5
        upscaled = await click.wait_original(message_has_result, timeout=60)
    job = await engine.get_job(2)
    assert (job.params.width, job.params.height, job.params.count, job.params.seed) == (128, 128, 1, 12)
    assert job.requester.user_name == "bob"
    with Image.open(io.BytesIO(fake.attachment_bytes(upscaled["attachments"][0]))) as image:
        assert image.size == (128, 128)
    fields = {f["name"]: f["value"] for f in upscaled["embeds"][0]["fields"]}
    assert fields["Upscale of"] == "job 1, image 2 (2x, strength 0.3)"


async def test_upscale_creative_and_vary_subtle_use_their_strengths(engine, fake: FakeDiscord, start_bot):
    """Upscale (Creative) refines at UPSCALE_CREATIVE_STRENGTH, Vary (Subtle) varies at VARY_SUBTLE_STRENGTH."""
    async with start_bot(engine):
        single = await _single(fake, await _result(fake, "a red fox --seed 11"), 0)
        creative = await fake.click("imagine:upcreative:1:0", int(single["id"]))
        await creative.wait_original(message_has_result, timeout=60)
        subtle = await fake.click("imagine:varysubtle:1:0", int(single["id"]))
        await subtle.wait_original(message_has_result, timeout=60)
    upscale, variation = (await engine.get_job(2)).params, (await engine.get_job(3)).params
    assert (upscale.upscale, upscale.strength) == (2, engine.settings.upscale_creative_strength)
    assert (variation.source_job, variation.strength) == (1, engine.settings.vary_subtle_strength)


async def test_an_upscaled_result_has_no_v_or_u_buttons(engine, fake: FakeDiscord, start_bot):
    """An upscale is already at twice the size: its message offers Reroll, Info, Delete, Edit and PNG only."""
    async with start_bot(engine):
        single = await _single(fake, await _result(fake, "a red fox --seed 11"), 0)
        click = await fake.click("imagine:upscale:1:0", int(single["id"]))
        upscaled = await click.wait_original(message_has_result, timeout=60)
    assert _rows(upscaled) == [["imagine:reroll:2", "imagine:info:2", "imagine:delete:2", "imagine:edit:2",
                                "imagine:png:2"]]


async def test_single_image_buttons_work_after_a_restart(engine, fake: FakeDiscord, start_bot):
    """U and Upscale (Subtle) on messages from before a restart are handled by the new bot process."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11")
    async with start_bot(engine):
        single = await _single(fake, msg, 0)
    async with start_bot(engine):
        click = await fake.click("imagine:upscale:1:0", int(single["id"]))
        await click.wait_original(message_has_result, timeout=60)
    assert (await engine.get_job(2)).params.upscale == 2


async def test_upscale_over_the_upload_limit_is_sent_smaller_and_says_so(engine, fake: FakeDiscord, start_bot):
    """Where the upscaled file is over the upload limit, a smaller JPEG is posted with a note saying so."""
    async with start_bot(engine):
        single = await _single(fake, await _result(fake, "a red fox --seed 11"), 0)
        click = await fake.click("imagine:upscale:1:0", int(single["id"]), attachment_size_limit=4096)
        upscaled = await click.wait_original(message_has_result, timeout=60)
    job = await engine.get_job(2)
    assert Path(job.deliveries[0]).stat().st_size > 3072, "the test needs a copy over the limit"
    assert upscaled["attachments"][0]["filename"].endswith(".jpg") and upscaled["attachments"][0]["size"] <= 3072
    assert "over the 4 KB upload limit here, so it is sent as a smaller JPEG" in upscaled["content"]


async def test_u_on_a_deleted_result_says_why(engine, fake: FakeDiscord, start_bot):
    """U1 on a result whose job was deleted answers only the clicker."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox")
        await engine.delete_job(1)
        click = await fake.click("imagine:select:1:0", int(msg["id"]))
        await click.wait_acked(timeout=3)
    data = click.callbacks[0].json["data"]
    assert data["flags"] & 64 and "no longer there" in data["content"]


async def test_upscale_of_a_deleted_result_says_why(engine, fake: FakeDiscord, start_bot):
    """Upscale (Subtle) under an image whose job was deleted since answers only the clicker."""
    async with start_bot(engine):
        single = await _single(fake, await _result(fake, "a red fox"), 0)
        await engine.delete_job(1)
        click = await fake.click("imagine:upscale:1:0", int(single["id"]))
        await click.wait_acked(timeout=3)
    data = click.callbacks[0].json["data"]
    assert data["flags"] & 64 and "no longer exists" in data["content"]


async def test_u_posts_under_the_nsfw_rule_of_the_place(engine, fake: FakeDiscord, start_bot):
    """The single image follows the rule where it is posted now: under "spoiler" (no classifier: every image counts
    as flagged) it is spoilered, under "block" it is not posted and the clicker is told why."""
    guild = str(fake.default_guild.id)
    async with start_bot(engine):
        grid = await _result(fake, "a red fox --seed 11")
        await engine.policy.set_defaults(guild, {"nsfw_policy": "spoiler"})
        spoilered = await _single(fake, grid, 0)
        await engine.policy.set_defaults(guild, {"nsfw_policy": "block"})
        blocked = await fake.click("imagine:select:1:0", int(grid["id"]))
        await blocked.wait_acked(timeout=3)
    assert spoilered["attachments"][0]["filename"].startswith("SPOILER_")
    data = blocked.callbacks[0].json["data"]
    assert data["flags"] & 64 and "withheld here" in data["content"]


async def test_u_holds_the_blocklist_of_the_place(engine, fake: FakeDiscord, start_bot):
    """U posts nothing when this server now blocks the job's words (the same rule as /show)."""
    async with start_bot(engine):
        grid = await _result(fake, "a red fox --seed 11")
        await engine.policy.set_blocklist(str(fake.default_guild.id), ["fox"])
        click = await fake.click("imagine:select:1:0", int(grid["id"]))
        await click.wait_acked(timeout=3)
    data = click.callbacks[0].json["data"]
    assert data["flags"] & 64 and "blocked words (fox)" in data["content"]
