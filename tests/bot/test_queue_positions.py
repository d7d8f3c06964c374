"""A waiting member's message follows the queue: position and ETA refreshed as it moves, at a bounded rate."""

from __future__ import annotations

import asyncio

import pytest

from bot.delivery import router
from tests.support.discord_emulator import FakeDiscord


async def test_a_waiting_members_position_follows_the_queue(gated_engine, fake: FakeDiscord, start_bot,
                                                            monkeypatch: pytest.MonkeyPatch):
    """Three members wait while the model loads; the first cancels: the third's message changes from position 3
    to position 2 without anyone asking (it used to show its first position until the job started)."""
    monkeypatch.setattr(router, "POSITION_REFRESH_S", 0.2)
    engine, release = gated_engine
    users = [fake.add_user(name) for name in ("ann", "bob", "cid")]
    async with start_bot(engine):
        inters = []
        for i, user in enumerate(users):
            inter = await fake.slash("imagine", {"prompt": f"fox number {i}"}, user=user)
            await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)
            inters.append(inter)
        await inters[2].wait_original(lambda m: "position 3 in the queue" in m["content"], timeout=10)
        first = min(e.job.id for e in engine.queue_snapshot())
        assert await engine.cancel(first) == "cancelled"
        await inters[2].wait_original(lambda m: "position 2 in the queue" in m["content"], timeout=10)
        release()


async def test_an_unchanged_position_is_not_edited_again(gated_engine, fake: FakeDiscord, start_bot,
                                                         monkeypatch: pytest.MonkeyPatch):
    """Rounds of the refresh with nothing moved send no edit: the budget of edits goes to what changed."""
    monkeypatch.setattr(router, "POSITION_REFRESH_S", 0.05)
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a patient fox"})
        await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)
        since = fake.mark()
        await asyncio.sleep(0.5)  # about ten refresh rounds
        assert fake.find("PATCH", "*/messages/@original", since=since) == []
        release()
