"""U1..U4: one image upscaled 2x for whoever clicks, through the queue; also after a restart."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def _result(fake: FakeDiscord, prompt: str) -> dict:
    inter = await fake.slash("imagine", {"prompt": prompt})
    return await inter.wait_original(message_has_result, timeout=30)


def _rows(msg: dict) -> list[list[str]]:
    return [[c["custom_id"] for c in row["components"]] for row in msg["components"]]


def _labels(msg: dict) -> list[str]:
    return [c["label"] for row in msg["components"] for c in row["components"]]


async def test_result_has_one_upscale_button_per_image(engine, fake: FakeDiscord, start_bot):
    """A two-image result has U1 and U2 on their own row below V1 and V2."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --count 2")
    assert _rows(msg)[2] == ["imagine:upscale:1:0", "imagine:upscale:1:1"]
    assert [label for label in _labels(msg) if label.startswith("U")] == ["U1", "U2"]


async def test_upscale_button_makes_a_2x_image_for_the_clicker(engine, fake: FakeDiscord, start_bot):
    """U2 queues image 2 at twice the size for whoever clicks; the embed says which image it upscales."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --count 2")
        click = await fake.click("imagine:upscale:1:1", int(msg["id"]), user=fake.add_user("bob"))
        assert await click.wait_acked(timeout=3) == 5
        upscaled = await click.wait_original(message_has_result, timeout=60)
    job = await engine.get_job(2)
    assert (job.params.width, job.params.height, job.params.count, job.params.seed) == (128, 128, 1, 12)
    assert job.requester.user_name == "bob"
    with Image.open(io.BytesIO(fake.attachment_bytes(upscaled["attachments"][0]))) as image:
        assert image.size == (128, 128)
    fields = {f["name"]: f["value"] for f in upscaled["embeds"][0]["fields"]}
    assert fields["Upscale of"] == "job 1, image 2 (2x, strength 0.3)"


async def test_an_upscaled_result_has_no_v_or_u_buttons(engine, fake: FakeDiscord, start_bot):
    """An upscale is already at twice the size: its message offers Reroll, Info, Delete, Edit and PNG only."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11")
        click = await fake.click("imagine:upscale:1:0", int(msg["id"]))
        upscaled = await click.wait_original(message_has_result, timeout=60)
    assert _rows(upscaled) == [["imagine:reroll:2", "imagine:info:2", "imagine:delete:2", "imagine:edit:2",
                                "imagine:png:2"]]


async def test_upscale_button_works_after_a_restart(engine, fake: FakeDiscord, start_bot):
    """A U button on a message from before a restart is handled by the new bot process."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11")
    async with start_bot(engine):
        click = await fake.click("imagine:upscale:1:0", int(msg["id"]))
        await click.wait_original(message_has_result, timeout=60)
    assert (await engine.get_job(2)).params.upscale == 2


async def test_upscale_over_the_upload_limit_is_sent_smaller_and_says_so(engine, fake: FakeDiscord, start_bot):
    """Where the upscaled file is over the upload limit, a smaller JPEG is posted with a note saying so."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11")
        click = await fake.click("imagine:upscale:1:0", int(msg["id"]), attachment_size_limit=4096)
        upscaled = await click.wait_original(message_has_result, timeout=60)
    job = await engine.get_job(2)
    assert Path(job.deliveries[0]).stat().st_size > 3072, "the test needs a copy over the limit"
    assert upscaled["attachments"][0]["filename"].endswith(".jpg") and upscaled["attachments"][0]["size"] <= 3072
    assert "over the 4 KB upload limit here, so it is sent as a smaller JPEG" in upscaled["content"]


async def test_upscale_of_a_deleted_result_says_why(engine, fake: FakeDiscord, start_bot):
    """U1 on a result whose job was deleted answers only the clicker."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox")
        await engine.delete_job(1)
        click = await fake.click("imagine:upscale:1:0", int(msg["id"]))
        await click.wait_acked(timeout=3)
    data = click.callbacks[0].json["data"]
    assert data["flags"] & 64 and "no longer exists" in data["content"]
