"""--tile (or /imagine tile:) makes a seamless tile; Info shows each image repeated 2x2, through discord.py against
the emulator."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def _tiled(fake: FakeDiscord, **options) -> dict:
    inter = await fake.slash("imagine", {"prompt": "a pattern of leaves --seed 3", **options})
    return await inter.wait_original(message_has_result, timeout=60)


async def test_inline_tile_makes_a_tile_job(engine, fake: FakeDiscord, start_bot):
    """--tile in the prompt: a tile job, and the PNG's parameters say so."""
    async with start_bot(engine):
        await (await fake.slash("imagine", {"prompt": "a pattern of leaves --tile --seed 3"})).wait_original(
            message_has_result, timeout=60)
    job = await engine.get_job(1)
    assert job.params.tile and job.params.prompt == "a pattern of leaves"
    with Image.open(Path(engine.settings.data_dir) / job.results[0]) as png:
        assert "Tile: seamless" in png.text["parameters"]


async def test_info_of_a_tile_shows_it_repeated_2x2(engine, fake: FakeDiscord, start_bot):
    """Info under a tile result: the /imagine line has --tile, and an attachment shows the image repeated 2x2."""
    async with start_bot(engine):
        result = await _tiled(fake, tile=True)
        info = await fake.click("imagine:info:1", int(result["id"]))
        answer = await info.wait_original(lambda m: bool(m.get("attachments")), timeout=10)
        sheet = fake.attachment_bytes(answer["attachments"][0])
        posted = fake.attachment_bytes(result["attachments"][0])
    assert "--tile" in answer["content"] and answer["flags"] & 64
    with Image.open(io.BytesIO(sheet)) as preview, Image.open(io.BytesIO(posted)) as image:
        assert preview.size == (2 * image.width, 2 * image.height)
        quarters = np.asarray(preview.convert("L"), dtype=np.int16)
        w, h = image.size
        assert np.abs(quarters[:h, :w] - quarters[h:, w:]).mean() < 1  # the same tile in each quarter


async def test_a_plain_results_info_has_no_preview(engine, fake: FakeDiscord, start_bot):
    """Info under a result made without --tile sends text only."""
    async with start_bot(engine):
        result = await _tiled(fake)
        info = await fake.click("imagine:info:1", int(result["id"]))
        answer = await info.wait_original(lambda m: bool(m.get("content")), timeout=10)
    assert not answer.get("attachments") and "--tile" not in answer["content"]
