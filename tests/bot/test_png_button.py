"""The PNG button: the lossless originals with their parameters, only for the clicker, under the upload limit."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FLAG_EPHEMERAL, FakeDiscord


async def _result(fake: FakeDiscord, prompt: str) -> dict:
    inter = await fake.slash("imagine", {"prompt": prompt})
    return await inter.wait_original(message_has_result, timeout=30)


async def test_png_button_sends_each_original_privately(engine, fake: FakeDiscord, start_bot):
    """PNG answers the clicker alone with every image's PNG, byte for byte the stored original."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --count 2")
        click = await fake.click("imagine:png:1", int(msg["id"]), user=fake.add_user("bob"))
        answer = await click.wait_original(lambda m: bool(m["attachments"]), timeout=10)
    job = await engine.get_job(1)
    assert answer["flags"] & FLAG_EPHEMERAL
    assert [a["filename"] for a in answer["attachments"]] == ["imagine-1-0.png", "imagine-1-1.png"]
    sent = [fake.attachment_bytes(a) for a in answer["attachments"]]
    assert sent == [Path(p).read_bytes() for p in job.results]


async def test_png_carries_the_parameters(engine, fake: FakeDiscord, start_bot):
    """The PNG sent holds the image's own seed and prompt in its text chunks."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --count 2")
        click = await fake.click("imagine:png:1", int(msg["id"]))
        answer = await click.wait_original(lambda m: bool(m["attachments"]), timeout=10)
    with Image.open(io.BytesIO(fake.attachment_bytes(answer["attachments"][1]))) as png:
        meta = json.loads(png.text["imagine"])
    assert meta["seed"] == 12 and meta["prompt"] == "a red fox" and meta["job_id"] == 1


async def test_png_over_the_upload_limit_sends_the_copy_and_says_so(engine, fake: FakeDiscord, start_bot):
    """Where the PNG is over the interaction's upload limit, its smaller WebP copy goes instead, with a note."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11")
        job = await engine.get_job(1)
        png, copy = Path(job.results[0]).stat().st_size, Path(job.deliveries[0]).stat().st_size
        assert copy + 1024 < png, "the tiny model's WebP copy must be smaller than its PNG for this test"
        limit = copy + 1024
        click = await fake.click("imagine:png:1", int(msg["id"]), attachment_size_limit=limit)
        answer = await click.wait_original(lambda m: bool(m["attachments"]), timeout=10)
    assert [a["filename"] for a in answer["attachments"]] == ["imagine-1-0.webp"]
    assert "over the" in answer["content"] and "upload limit" in answer["content"] and "WEBP copy" in answer["content"]


async def test_png_of_a_deleted_job_says_why(engine, fake: FakeDiscord, start_bot):
    """PNG on a result whose job was deleted answers only the clicker, saying so."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox")
        await engine.delete_job(1)
        click = await fake.click("imagine:png:1", int(msg["id"]))
        await click.wait_acked(timeout=3)
    data = click.callbacks[0].json["data"]
    assert data["flags"] & 64 and "no longer exists" in data["content"]


async def test_png_not_written_yet_sends_the_copy_and_says_so(engine, fake: FakeDiscord, start_bot):
    """A result whose PNG is not on disk (yet) is answered with its copy and a note to try again."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11")
        Path((await engine.get_job(1)).results[0]).unlink()
        click = await fake.click("imagine:png:1", int(msg["id"]))
        answer = await click.wait_original(lambda m: bool(m["attachments"]), timeout=10)
    assert [a["filename"] for a in answer["attachments"]] == ["imagine-1-0.webp"]
    assert "not written yet" in answer["content"]
