"""Nothing stays "running" for ever on the GPU workers: each reproduction of issue 22 against a real nats-server.

A result that arrives before the bot recorded its dispatch, a batch past its deadline, a server that comes back
without its store, and a poison job in a batch of healthy ones.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.engine_settings import EngineSettings
from engine.jobs.records import Job, JobEvent, Requester
from engine.jobs.store import JobStore
from engine.service import Engine
from tests.engine.helpers import params, wait_final
from tests.engine.remote.conftest import WAIT, RemoteEngine
from tests.engine.remote_helpers import Workers, collect, done_events, wait_for
from tests.support.nats_server import NatsServer


def requester(user: str) -> Requester:
    return Requester(user_id=user, guild_id="g1")


async def test_a_result_faster_than_the_dispatch_record_is_not_lost(remote_engine: RemoteEngine,
                                                                     workers: Workers) -> None:
    """The store's write of "running" takes a second; the worker is faster. The batch is recorded before it is
    published, so every job is done (published first, 20 of 20 stayed running with no log line)."""
    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    start = engine.ledger.start

    def slow_start(jobs: Any) -> None:
        time.sleep(1.0)  # a busy SQLite
        start(jobs)

    engine.ledger.start = slow_start  # type: ignore[method-assign]
    subs = [await engine.submit(params(f"fox {i}", seed=i), requester(f"u{i}")) for i in range(4)]
    for sub in subs:
        assert (await wait_final(engine, sub.job.id, WAIT)).state == "done"


async def test_a_batch_past_its_deadline_is_sent_once_more_then_failed(remote_engine: RemoteEngine,
                                                                      workers: Workers,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A worker far slower than the deadline sized by the batch's steps and pixels: the batch is taken back and
    sent again once, then its job fails with a message saying so (it used to stay with the worker for ever)."""
    caplog.set_level(logging.WARNING, logger="engine.remote.dispatch")
    engine = await remote_engine(batch_deadline_base=1.0, batch_seconds_per_step=0.01)
    workers.start("w", TEST_SLOW_PROMPT="a crawling fox")
    assert await engine.wait_ready(WAIT)
    started = time.monotonic()
    job = await wait_final(engine, (await engine.submit(params("a crawling fox", steps=30),
                                                        requester("u1"))).job.id, WAIT)
    assert job.state == "failed" and "longer than its time limit" in (job.error or "")
    assert "past its deadline" in caplog.text and "sending its 1 job(s) again" in caplog.text
    assert time.monotonic() - started < 15  # the job alone would take 15 s at half a second per step


async def test_a_server_back_without_its_store_gets_its_streams_and_the_jobs_finish(
        remote_engine: RemoteEngine, workers: Workers, nats_server: NatsServer) -> None:
    """The NATS server restarts with an empty store (a container without a volume) while batches are out: the
    bot declares the streams again and every job still finishes, once (23 jobs used to stay running)."""
    engine = await remote_engine(batch_deadline_base=3.0, batch_seconds_per_step=0.01)
    events: list[JobEvent] = []
    listener = asyncio.create_task(collect(engine, events))
    workers.start("w", TEST_HANG_PROMPT="fox 0", TEST_HANG_SECONDS="2")
    assert await engine.wait_ready(WAIT)
    subs = [await engine.submit(params(f"fox {i}", seed=i, size=((64, 64), (96, 64))[i % 2]), requester(f"u{i}"))
            for i in range(4)]
    await asyncio.sleep(1.0)  # one batch at the worker, the next waiting in the stream
    nats_server.kill()
    shutil.rmtree(nats_server.store_dir / "jetstream")
    nats_server.start()
    jobs: list[Job] = [await wait_final(engine, sub.job.id, WAIT) for sub in subs]
    await asyncio.sleep(1.0)
    listener.cancel()
    assert [j.state for j in jobs] == ["done"] * 4
    assert all(done_events(events, s.job.id) == 1 for s in subs)


async def test_a_poison_job_fails_alone_not_its_batch(remote_engine: RemoteEngine, workers: Workers) -> None:
    """One job that breaks the pipeline, batched with two healthy ones: after NATS_MAX_DELIVER tries the batch's
    jobs are tried one at a time, so only the poison job fails (all three used to)."""
    engine = await remote_engine(nats_max_deliver=2, max_batch=4)
    subs = [await engine.submit(params(prompt, seed=i), requester(f"u{i}"))
            for i, prompt in enumerate(("a healthy fox", "poison", "another healthy fox"))]
    workers.start("w", TEST_FAIL_PROMPT="poison", NATS_MAX_DELIVER="2")
    states = [(await wait_final(engine, sub.job.id, WAIT)).state for sub in subs]
    assert states == ["done", "failed", "done"]
    assert "failed 2 times on the GPU workers" in ((await engine.get_job(subs[1].job.id)).error or "")  # type: ignore[union-attr]


async def test_jobs_recovered_after_a_restart_do_not_hold_up_new_ones(
        make_settings: Callable[..., EngineSettings], workers: Workers, nats_server: NatsServer) -> None:
    """Five jobs the store says were running when the bot host stopped (their batches gone): each gets a deadline,
    but none holds a dispatch slot, so a new member's job runs at once."""
    settings = make_settings(nats_url=nats_server.url, nats_ack_wait=3.0, worker_heartbeat=0.5, fast_lora_id="")
    store = JobStore(settings.db_path)
    for i in range(5):
        store.set_running([store.insert_job(requester(f"old{i}"), params(f"old fox {i}", seed=i)).id])
    store.close()
    engine = Engine(settings)
    await engine.start()
    try:
        workers.start("w")
        assert await engine.wait_ready(WAIT)
        job = await wait_final(engine, (await engine.submit(params("a new fox"), requester("new"))).job.id, 30)
        assert job.state == "done"
    finally:
        await engine.stop()


async def test_a_job_sent_again_past_its_deadline_delivers_the_second_workers_result(
        remote_engine: RemoteEngine, workers: Workers) -> None:
    """A crawling worker loses its batch at the deadline and reports the job cancelled; the batch sent again runs on
    a fast worker, whose result is the one delivered (both results used to share one message id, so the server
    dropped the second as a duplicate and the job failed at its next deadline)."""
    engine = await remote_engine(batch_deadline_base=10.0, batch_seconds_per_step=0.01)
    workers.start("slow", TEST_SLOW_PROMPT="a crawling fox")
    assert await engine.wait_ready(WAIT)
    sub = await engine.submit(params("a crawling fox", steps=60), requester("u1"))
    await asyncio.to_thread(wait_for, lambda: engine.status().workers[0].busy, WAIT, "the slow worker to take it")
    workers.start("fast", TEST_HANG_PROMPT="a crawling fox", TEST_HANG_SECONDS="2")  # reports after the slow one
    await asyncio.to_thread(wait_for, lambda: sum(w.state == "ready" for w in engine.status().workers) == 2, WAIT,
                            "the fast worker, before the deadline")
    job = await wait_final(engine, sub.job.id, WAIT)
    assert job.state == "done", job.error
