"""Echoed prompts never ping anyone and cannot break out of their formatting."""

from __future__ import annotations

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord

NASTY = "@everyone @here <@123456789012345678> <@&987654321098765432> **bold** ```py\nescape``` a fox"


def _allowed(req) -> dict | None:
    return (req.json or {}).get("allowed_mentions") if isinstance(req.json, dict) else None


async def test_no_request_allows_any_mention(engine, fake: FakeDiscord, start_bot):
    """Every message-carrying request of a normal flow sets allowed_mentions that ping nobody."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": NASTY})
        await inter.wait_original(message_has_result, timeout=30)
    carrying = [r for r in fake.requests if r.method in ("POST", "PATCH") and isinstance(r.json, dict)
                and ("content" in r.json or "embeds" in r.json or "data" in r.json)]
    assert carrying
    for req in carrying:
        body = req.json.get("data", req.json) if "/callback" in req.path else req.json
        if "/callback" in req.path and req.json.get("type") == 5:
            continue  # a bare defer carries no message
        allowed = body.get("allowed_mentions")
        assert allowed is not None, req.path
        assert allowed.get("parse") == [] and not allowed.get("users") and not allowed.get("roles"), req.path


async def test_echoed_prompt_is_escaped(engine, fake: FakeDiscord, start_bot):
    """The prompt shown in the embed has mentions and markdown neutralised."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": NASTY})
        msg = await inter.wait_original(message_has_result, timeout=30)
    text = msg["embeds"][0]["description"]
    assert "@everyone" not in text and "@here" not in text
    assert "<@123456789012345678>" not in text and "<@&987654321098765432>" not in text
    assert "```" not in text and "**bold**" not in text
