"""Load and gateway faults through discord.py and the emulator."""

from __future__ import annotations

import asyncio
import time

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def test_hundred_commands_from_25_users_all_answered(gated_engine, fake: FakeDiscord, start_bot):
    """100 /imagine from 25 users within 2 s: all acked in time, all delivered; extra ones refused clearly."""
    engine, release = gated_engine
    users = [fake.add_user(f"user{i}") for i in range(25)]
    async with start_bot(engine):
        started = time.monotonic()
        handles = [await fake.slash("imagine", {"prompt": f"{u.username} {k}"}, user=u)
                   for k in range(4) for u in users]
        assert time.monotonic() - started < 2.0
        # five users ask for a fifth job: over the per-user cap of 4
        handles += [await fake.slash("imagine", {"prompt": "one too many"}, user=u) for u in users[:5]]
        for h in handles:
            await h.wait_acked(timeout=3)
            assert h.callbacks[0].status == 200
            assert h.callbacks[0].time - h.created_at < 3.0
        refused = [h for h in handles if h.ack_type == 4]
        accepted = [h for h in handles if h.ack_type == 5]
        assert len(refused) == 5 and len(accepted) == 100
        assert {h.user.id for h in refused} == {u.id for u in users[:5]}
        for h in refused:
            data = h.callbacks[0].json["data"]
            assert data["flags"] & 64 and "limit is 4" in data["content"]
        release()
        await asyncio.gather(*(h.wait_original(message_has_result, timeout=120) for h in accepted))
        for _ in range(100):
            if len(await engine.undelivered()) == 0:
                break
            await asyncio.sleep(0.1)
    jobs = [await engine.get_job(i) for i in range(1, 101)]
    assert all(j.state == "done" and j.delivered_at for j in jobs)
    assert await engine.get_job(101) is None
    first_round = sorted(jobs, key=lambda j: (j.finished_at, j.id))[:25]
    assert len({j.requester.user_id for j in first_round}) == 25, "every user's first job runs before any second"


async def test_gateway_drop_mid_job_resumes_and_delivers(gated_engine, fake: FakeDiscord, start_bot):
    """A dropped gateway connection during a job is resumed and the result still arrives."""
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "storm"})
        await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)
        await fake.drop_gateway()
        await fake.wait_until(lambda: fake.resumed_count >= 1, timeout=30, what="RESUMED")
        release()
        await inter.wait_original(message_has_result, timeout=30)
        after = await fake.slash("imagine", {"prompt": "after the storm"})
        await after.wait_original(message_has_result, timeout=30)


async def test_invalidated_session_identifies_again_and_keeps_working(engine, fake: FakeDiscord, start_bot):
    """When the session cannot be resumed, the bot identifies afresh and new commands work."""
    async with start_bot(engine):
        identifies = fake.identify_count
        fake.invalidate_sessions()
        await fake.drop_gateway()
        await fake.wait_until(lambda: fake.identify_count > identifies and fake.connected, timeout=30,
                              what="a fresh IDENTIFY")
        inter = await fake.slash("imagine", {"prompt": "fresh start"})
        await inter.wait_original(message_has_result, timeout=30)


async def test_finished_job_memory_is_bounded(engine, fake: FakeDiscord, start_bot, monkeypatch):
    """The delivery router remembers only the newest FINISHED_MEMORY finished jobs: a bot that runs for months
    does not grow by every job it ever delivered."""
    from bot.cogs.buttons import IMAGINE_COG
    from bot.delivery import router

    monkeypatch.setattr(router, "FINISHED_MEMORY", 2)
    async with start_bot(engine) as bot:
        for i in range(3):
            await (await fake.slash("imagine", {"prompt": f"fox {i}"})).wait_original(message_has_result, timeout=30)
        remembered = list(bot.get_cog(IMAGINE_COG).delivery._finished_ids)
    assert remembered == [2, 3]
