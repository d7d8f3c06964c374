"""What the deployment keeps on the NATS server, against a real nats-server: bounded, its own (NATS_PREFIX),
kept up to date with the bot host's settings, and never a reason for dispatch to stop."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path

import nats
from PIL import Image

from engine.engine_settings import EngineSettings
from engine.jobs.records import Requester
from engine.remote import wire
from engine.service import Engine
from tests.engine.helpers import params, wait_final
from tests.engine.remote.conftest import WAIT, RemoteEngine
from tests.engine.remote_helpers import ACK_WAIT, HEARTBEAT, Workers
from tests.support.nats_server import NatsServer


def requester(user: str) -> Requester:
    return Requester(user_id=user, guild_id="g1")


async def test_two_deployments_share_one_server_with_their_own_prefix(
        make_settings: Callable[..., EngineSettings], nats_server: NatsServer, tiny_model_dir: Path,
        tmp_path: Path) -> None:
    """Two bot hosts with their own workers on one server, NATS_PREFIX apart: each job is done by its own
    deployment (they used to share one results consumer and take each other's results)."""
    engines, groups = [], []
    try:
        for name in ("alpha", "beta"):
            settings = make_settings(nats_url=nats_server.url, nats_prefix=name, nats_ack_wait=ACK_WAIT,
                                     worker_heartbeat=HEARTBEAT, fast_lora_id="", data_dir=tmp_path / name)
            engine = Engine(settings)
            await engine.start()
            engines.append(engine)
            group = Workers(nats_server.url, tiny_model_dir, tmp_path)
            group.start(f"{name}-w", NATS_PREFIX=name)
            groups.append(group)
        for engine in engines:
            assert await engine.wait_ready(WAIT)
        subs = [[await engine.submit(params(f"fox {i}", seed=i), requester(f"u{i}")) for i in range(3)]
                for engine in engines]
        for engine, mine in zip(engines, subs):
            for sub in mine:
                assert (await wait_final(engine, sub.job.id, WAIT)).state == "done"
        assert [[w.name for w in e.status().workers] for e in engines] == [["alpha-w"], ["beta-w"]]
    finally:
        for group in groups:
            group.stop_all()
        for engine in engines:
            await engine.stop()


async def test_streams_and_buckets_are_bounded_and_follow_the_settings(remote_engine: RemoteEngine,
                                                                       nats_server: NatsServer) -> None:
    """Every stream and bucket has NATS_MAX_BYTES and NATS_MAX_AGE; a bot host restarted with another
    NATS_ACK_WAIT and other bounds updates the existing consumer and streams (the consumer kept its first
    AckWait, and nothing was bounded)."""
    first = await remote_engine(nats_max_bytes=64 * 1024**2, nats_max_age=3600)
    names = wire.Names()
    client = await nats.connect(nats_server.url)
    try:
        js = client.jetstream()
        for _ in range(100):  # the first bot host has declared everything
            try:
                await js.consumer_info(names.dead_stream, wire.DEAD_CONSUMER)
                break
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.1)
        await first.stop()
        second = await remote_engine(nats_ack_wait=17, nats_max_bytes=32 * 1024**2, nats_max_age=1800)
        for _ in range(100):
            consumer = await js.consumer_info(names.jobs_stream, names.workers_consumer(second.settings.model_id))
            if consumer.config.ack_wait == 17:
                break
            await asyncio.sleep(0.1)
        assert consumer.config.ack_wait == 17
        for stream in (names.jobs_stream, names.results_stream, names.dead_stream, f"OBJ_{names.images_bucket}"):
            config = (await js.stream_info(stream)).config
            assert (config.max_bytes, config.max_age) == (32 * 1024**2, 1800), stream
        assert (await js.stream_info(f"KV_{names.workers_bucket}")).config.max_bytes > 0
    finally:
        await client.close()


async def test_a_full_store_fails_the_picture_job_clearly_and_dispatch_goes_on(remote_engine: RemoteEngine,
                                                                               workers: Workers) -> None:
    """With the Object Store at NATS_MAX_BYTES, a job from a member's picture fails at once with a message that
    says so, and once there is room the next job runs (the upload used to retry for ever, holding all dispatch)."""
    engine = await remote_engine(nats_max_bytes=1024 * 1024)
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    client = await nats.connect(engine.settings.remote.nats_url)
    try:
        store = await client.jetstream().object_store(wire.Names().images_bucket)
        await store.put("filler", os.urandom(1024 * 1024 - 8 * 1024))  # something else filled the store
        buf = io.BytesIO()
        Image.frombytes("RGB", (96, 64), os.urandom(96 * 64 * 3)).save(buf, "PNG")  # noise: about 18 KB
        picture = await engine.remix.from_picture(params("a fox"), buf.getvalue(), keep_size=False)
        failed = await wait_final(engine, (await engine.submit(picture, requester("u1"))).job.id, WAIT)
        assert failed.state == "failed" and "store is full" in (failed.error or "")
        await store.delete("filler")
    finally:
        await client.close()
    plain = await engine.submit(params("a plain fox", size=(96, 64)), requester("u2"))
    assert (await wait_final(engine, plain.job.id, WAIT)).state == "done"


async def test_a_worker_with_a_longer_heartbeat_still_serves(remote_engine: RemoteEngine, workers: Workers) -> None:
    """A worker whose WORKER_HEARTBEAT is longer than the bot host's binds to the bucket as it is and beats often
    enough for it (it used to fail to declare the bucket, stop, and leak a connection per retry)."""
    engine = await remote_engine()
    workers.start("w", WORKER_HEARTBEAT="5")
    assert await engine.wait_ready(WAIT)
    assert (await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)).state \
        == "done"
    await asyncio.sleep(HEARTBEAT * wire.HEARTBEAT_MISSES + 1)
    assert [w.name for w in engine.status().workers] == ["w"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_an_idle_worker_waits_without_spinning_when_its_consumer_is_gone(
        make_settings: Callable[..., EngineSettings], nats_server: NatsServer, workers: Workers) -> None:
    """The server comes back without its store and no bot host declares it again yet: the worker waits quietly
    (it used to spin: 17 CPU-seconds per 20 s), and serves again once the bot host is back."""
    settings = make_settings(nats_url=nats_server.url, nats_ack_wait=ACK_WAIT, worker_heartbeat=HEARTBEAT,
                             fast_lora_id="")
    engine = Engine(settings)
    await engine.start()
    proc = workers.start("w")
    assert await engine.wait_ready(WAIT)
    await engine.stop()
    nats_server.kill()
    import shutil

    shutil.rmtree(nats_server.store_dir / "jetstream")
    nats_server.start()
    await asyncio.sleep(2.0)  # reconnected, and finding no consumer
    before = _cpu_seconds(proc.pid)
    await asyncio.sleep(5.0)
    assert _cpu_seconds(proc.pid) - before < 1.0
    engine = Engine(settings)
    await engine.start()
    try:
        assert await engine.wait_ready(WAIT)
        job = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)
        assert job.state == "done"
    finally:
        await engine.stop()
