"""The trust boundary of GPU workers, against a real nats-server: what another client on the same server (or a
worker past its rights) tried in issue 22, each refused and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from PIL import Image

from engine.engine_settings import EngineSettings
from engine.jobs.records import Requester
from engine.remote import auth_config, wire
from engine.remote.signing import Signer
from engine.service import Engine
from tests.engine.helpers import params, wait_final
from tests.engine.remote.conftest import WAIT, RemoteEngine
from tests.engine.remote_helpers import ACK_WAIT, HEARTBEAT, Workers, wait_for
from tests.support.nats_server import NatsServer

NAMES = wire.Names()


def requester(user: str) -> Requester:
    return Requester(user_id=user, guild_id="g1")


def refused(engine: Engine, reason: str) -> float:
    return engine.metrics.remote_refused.labels(reason)._value.get()


async def taken_batch(client: Any, engine: Engine, prompt: str) -> tuple[int, str]:
    """Submit ``prompt`` and return its job id and the batch a worker took it in (as the taken notice says)."""
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def on_taken(msg: Any) -> None:
        seen.put_nowait(msg.subject.rsplit(".", 1)[1])

    sub = await client.subscribe(f"{NAMES.prefix}.taken.*", cb=on_taken)
    job_id = (await engine.submit(params(prompt, steps=30), requester("u1"))).job.id
    batch = await asyncio.wait_for(seen.get(), WAIT)
    await sub.unsubscribe()
    return job_id, batch


@contextlib.asynccontextmanager
async def outsider_and_a_taken_job(remote_engine: RemoteEngine, workers: Workers, url: str, prompt: str,
                                   **worker_env: str) -> AsyncIterator[tuple[Engine, Any, int, str]]:
    """A bot host and worker "w" (with ``worker_env``), another client on the server, and a job of ``prompt`` that
    the worker took: (engine, client, job id, batch)."""
    engine = await remote_engine()
    workers.start("w", **worker_env)
    assert await engine.wait_ready(WAIT)
    client = await nats.connect(url)
    try:
        job_id, batch = await taken_batch(client, engine, prompt)
        yield engine, client, job_id, batch
    finally:
        await client.close()


def png_bytes(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 9, 9)).save(buf, "PNG")
    return buf.getvalue()


async def test_a_forged_result_is_refused_and_the_real_one_delivered(remote_engine: RemoteEngine, workers: Workers,
                                                                      nats_server: NatsServer) -> None:
    """Another client publishes a "done" result with its own image for a member's running job: it is refused and
    counted, and the member gets the worker's image (the forged one used to be delivered, safety score 0.0)."""
    async with outsider_and_a_taken_job(remote_engine, workers, nats_server.url, "a slow fox",
                                        TEST_SLOW_PROMPT="a slow fox") as (engine, client, job_id, batch):
        js = client.jetstream()
        store = await js.object_store(NAMES.images_bucket)
        await store.put("result/forged.png", png_bytes((64, 64)))
        forged = wire.ResultMessage(job_id=job_id, batch=batch, worker="w", attempt=1, state="done",
                                    images=["result/forged.png"], safety=[0.0], token="0" * 32)
        await js.publish(f"{NAMES.results_subject}.{job_id}", forged.model_dump_json().encode())
        await asyncio.to_thread(wait_for, lambda: refused(engine, "forged") == 1, 10, "the forged result refused")
    job = await wait_final(engine, job_id, WAIT)
    assert job.state == "done" and job.safety == ()
    assert Image.open(job.results[0]).getpixel((0, 0)) != (9, 9, 9)


async def test_a_cancel_without_the_jobs_token_is_ignored(remote_engine: RemoteEngine, workers: Workers,
                                                          nats_server: NatsServer) -> None:
    """Another client cancels a member's running job, with a guessed token and in the old plain form: the worker
    goes on and the job is done (it used to be cancelled)."""
    async with outsider_and_a_taken_job(remote_engine, workers, nats_server.url, "a slow fox",
                                        TEST_SLOW_PROMPT="a slow fox") as (engine, client, job_id, _):
        await client.publish(NAMES.cancel_subject, wire.CancelMessage(job_id=job_id, token="f" * 32)
                             .model_dump_json().encode())
        await client.publish(NAMES.cancel_subject, str(job_id).encode())
        await client.flush()
    assert (await wait_final(engine, job_id, WAIT)).state == "done"


async def test_heartbeats_under_another_name_are_not_workers(remote_engine: RemoteEngine, workers: Workers,
                                                             nats_server: NatsServer) -> None:
    """500 heartbeats put by another client, each under a key that is not its name (or not a heartbeat at all):
    /status still lists the one real worker (it used to list 501)."""
    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    client = await nats.connect(nats_server.url)
    try:
        kv = await client.jetstream().key_value(NAMES.workers_bucket)
        for i in range(500):
            beat = wire.Heartbeat(name="w", model=engine.settings.model_id, state="ready", slots=16, at=time.time())
            await kv.put(f"fake{i}", beat.model_dump_json().encode() if i % 2 else b"{not json")
        await asyncio.to_thread(wait_for, lambda: refused(engine, "forged") >= 250, 30, "the fakes refused")
    finally:
        await client.close()
    assert [w.name for w in engine.status().workers] == ["w"]
    assert refused(engine, "malformed") >= 250


async def test_previews_need_the_token_and_a_bounded_size(remote_engine: RemoteEngine, workers: Workers,
                                                          nats_server: NatsServer) -> None:
    """A progress message without the job's token, and a 900 KB preview even with it, are refused and counted;
    neither reaches the member."""
    async with outsider_and_a_taken_job(remote_engine, workers, nats_server.url, "a slow fox",
                                        TEST_SLOW_PROMPT="a slow fox") as (engine, client, job_id, batch):
        token = Signer.for_data_dir(engine.settings.data_dir).token(batch, job_id)
        subject = NAMES.progress_subject(job_id)
        with engine.subscribe(None) as stream:
            await client.publish(subject, b"x", headers={"step": "29", "total": "30", "batch": batch, "token": "0"})
            await client.publish(subject, b"x" * 900_000,
                                 headers={"step": "29", "total": "30", "batch": batch, "token": token})
            await client.flush()
            await asyncio.to_thread(wait_for, lambda: refused(engine, "oversized") == 1, 10, "the preview refused")
            while (event := await stream.next(WAIT)).kind == "progress":
                assert event.preview != b"x" and len(event.preview or b"") < wire.PREVIEW_MAX_BYTES
    assert refused(engine, "forged") == 1


def giant_png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` in a few hundred bytes (its data stops early)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk
            + zlib.crc32(chunk).to_bytes(4, "big") + b"\x00" * 200)


async def test_a_result_image_not_the_jobs_size_is_refused_before_it_is_read(
        remote_engine: RemoteEngine, workers: Workers, nats_server: NatsServer) -> None:
    """A result signed for its batch (a broken worker) whose PNG declares 12000²: the header is checked before
    anything is decoded, the job fails with a message and the refusal is counted (it used to cost the bot host
    14 s and 1.3 GB)."""
    async with outsider_and_a_taken_job(remote_engine, workers, nats_server.url, "a held fox",
                                        TEST_HANG_PROMPT="a held fox") as (engine, client, job_id, batch):
        js = client.jetstream()
        await (await js.object_store(NAMES.images_bucket)).put("result/giant.png", giant_png_header(12000, 12000))
        result = wire.ResultMessage(job_id=job_id, batch=batch, worker="w", attempt=1, state="done",
                                    images=["result/giant.png"], token=Signer.for_data_dir(engine.settings.data_dir)
                                    .token(batch, job_id))
        started = time.monotonic()
        await js.publish(f"{NAMES.results_subject}.{job_id}", result.model_dump_json().encode())
        job = await wait_final(engine, job_id, WAIT)
    assert job.state == "failed" and "do not match this job" in (job.error or "")
    assert time.monotonic() - started < 5 and refused(engine, "bad_images") == 1


@pytest.fixture
def auth_server(tmp_path: Path) -> Any:
    """A nats-server with the per-role users engine.remote.auth_config writes (one worker, "w")."""
    paths = auth_config.write(tmp_path / "auth", ["w"])
    env = {user: dict(line.split("=", 1) for line in path.read_text().split()) for user, path in paths.items()}
    server = NatsServer(tmp_path / "nats-auth", config=tmp_path / "auth" / "nats-server.conf")
    server.start()
    yield server, env
    server.stop()


async def test_per_role_users_serve_jobs_and_a_worker_can_do_no_more(
        auth_server: Any, make_settings: Callable[..., EngineSettings], tiny_model_dir: Path, tmp_path: Path) -> None:
    """With the generated users, the bot and a worker serve a job and a variation; the worker's credential cannot
    read the jobs stream or other replies, cancel, write another worker's heartbeat, or declare anything."""
    server, env = auth_server
    engine = Engine(make_settings(nats_url=server.url, nats_user="bot", nats_password=env["bot"]["NATS_PASSWORD"],
                                  nats_ack_wait=ACK_WAIT, worker_heartbeat=HEARTBEAT, fast_lora_id=""))
    await engine.start()
    group = Workers(server.url, tiny_model_dir, tmp_path)
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    try:
        group.start("w", **env["w"])
        assert await engine.wait_ready(WAIT)
        job = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)
        assert job.state == "done"
        varied = await engine.submit(await engine.variation(job.id, 0, seed=9), requester("u1"))  # reads a source
        assert (await wait_final(engine, varied.job.id, WAIT)).state == "done"
        rogue = await nats.connect(server.url, user="w", password=env["w"]["NATS_PASSWORD"], error_cb=on_error,
                                   inbox_prefix="_INBOX.w")
        try:
            js = rogue.jetstream(timeout=1)
            await rogue.subscribe(f"{NAMES.prefix}.jobs.>")
            await rogue.subscribe("_INBOX.>")
            await rogue.publish(NAMES.cancel_subject, b"{}")
            await rogue.flush()
            with pytest.raises(Exception):  # noqa: B017 - denied requests time out or are refused
                await js.get_msg(NAMES.jobs_stream, 1)
            with pytest.raises(Exception):  # noqa: B017
                await (await js.key_value(NAMES.workers_bucket)).put("someone-else", b"{}")
            with pytest.raises(Exception):  # noqa: B017
                await js.add_stream(name="ROGUE", subjects=["rogue.>"])
            await asyncio.sleep(0.5)
        finally:
            await rogue.close()
    finally:
        group.stop_all()
        await engine.stop()
    violations = " ".join(errors).lower()
    assert violations.count("permissions violation") >= 3
    assert f'"{NAMES.prefix}.jobs.>"' in violations and '"_inbox.>"' in violations
