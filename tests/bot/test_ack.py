"""Acknowledgement within Discord's 3 seconds, whatever the engine is doing."""

from __future__ import annotations

import asyncio
import threading
import time

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord


async def test_ack_is_fast_while_the_worker_is_busy(engine, fake: FakeDiscord, start_bot):
    """With the GPU worker blocked on a batch, a new /imagine is still deferred well within 3 s."""
    busy = threading.Event()
    release = threading.Event()

    def block(jobs):
        busy.set()
        release.wait(20)

    engine.before_batch = block
    async with start_bot(engine):
        first = await fake.slash("imagine", {"prompt": "first"})
        await asyncio.to_thread(busy.wait, 10)
        started = time.monotonic()
        second = await fake.slash("imagine", {"prompt": "second"}, user=fake.add_user("bob"))
        assert await second.wait_acked(timeout=3) == 5
        assert time.monotonic() - started < 1.0
        release.set()
        await first.wait_original(message_has_result, timeout=30)
        await second.wait_original(message_has_result, timeout=30)


async def test_ack_while_model_is_loading(gated_engine, fake: FakeDiscord, start_bot):
    """Before the model has loaded, /imagine is acknowledged and queued, then delivered once it loads."""
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "patience"})
        assert await inter.wait_acked(timeout=3) == 5
        assert engine.model_state == "loading"
        release()
        await inter.wait_original(message_has_result, timeout=30)


async def test_full_queue_is_refused_ephemerally_at_once(make_settings, fake: FakeDiscord, start_bot):
    """With the global queue full, the user gets an immediate ephemeral refusal that says why."""
    from engine.service import Engine, default_loader

    gate = threading.Event()

    def loader(settings):
        gate.wait(30)
        return default_loader(settings)

    engine = Engine(make_settings(queue_cap=1), loader=loader)
    await engine.start()
    try:
        async with start_bot(engine):
            await (await fake.slash("imagine", {"prompt": "one"})).wait_original(
                lambda m: "Queued" in m["content"], timeout=10)
            refused = await fake.slash("imagine", {"prompt": "two"}, user=fake.add_user("bob"))
            assert await refused.wait_acked(timeout=3) == 4
            body = refused.callbacks[0].json
            assert body["data"]["flags"] & 64
            assert "queue is full" in body["data"]["content"]
            gate.set()
    finally:
        gate.set()
        await engine.stop()
