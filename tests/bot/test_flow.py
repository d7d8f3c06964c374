"""/imagine end to end: defer, queue position, progress, result with embed and buttons."""

from __future__ import annotations

import time

from tests.support.discord_emulator import FakeDiscord


def _has_files(msg: dict) -> bool:
    return bool(msg.get("attachments")) and bool(msg.get("embeds"))


async def test_imagine_delivers_image_embed_and_buttons(engine, fake: FakeDiscord, start_bot):
    """A slash command is deferred, then the original response becomes the image with embed and buttons."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox --seed 7"})
        assert await inter.wait_acked() == 5
        msg = await inter.wait_original(_has_files, timeout=30)
    assert msg["attachments"][0]["filename"].startswith("imagine-")
    embed = msg["embeds"][0]
    assert "a red fox" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Seed"] == "7"
    ids = [c["custom_id"] for row in msg["components"] for c in row["components"]]
    assert any(i.startswith("imagine:reroll:") for i in ids)
    assert any(i.startswith("imagine:delete:") for i in ids)
    assert any(i.startswith("imagine:info:") for i in ids)
