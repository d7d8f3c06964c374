"""Many users at once: everyone answered, in a fair order."""

from __future__ import annotations

import asyncio

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def test_twenty_commands_from_five_users_finish_round_robin(gated_engine, fake: FakeDiscord, start_bot):
    """5 users x 4 jobs: all delivered, and every user's k-th job finishes before anyone's (k+1)-th."""
    engine, release = gated_engine
    users = [fake.add_user(f"user{i}") for i in range(5)]
    async with start_bot(engine):
        handles = []
        for round_ in range(4):
            for user in users:
                handles.append(await fake.slash("imagine", {"prompt": f"{user.username} job {round_}"}, user=user))
        for h in handles:
            assert await h.wait_acked(timeout=3) == 5
        await fake.wait_until(lambda: len(engine.queue_snapshot()) == 20, timeout=10)
        release()
        await asyncio.gather(*(h.wait_original(message_has_result, timeout=60) for h in handles))
    jobs = [await engine.get_job(i) for i in range(1, 21)]
    finished = sorted(jobs, key=lambda j: (j.finished_at, j.id))
    rank: dict[str, int] = {}
    kth = []
    for job in sorted(jobs, key=lambda j: j.id):
        kth.append((job.id, rank.setdefault(job.requester.user_id, 0)))
        rank[job.requester.user_id] += 1
    order = {job.id: pos for pos, job in enumerate(finished)}
    k_of = dict(kth)
    for k in range(3):
        last_k = max(order[i] for i, kk in k_of.items() if kk == k)
        first_next = min(order[i] for i, kk in k_of.items() if kk == k + 1)
        assert last_k < first_next, f"round {k} not finished before round {k + 1}"
