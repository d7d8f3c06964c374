"""Scale-out through a real nats-server: the bot-side engine dispatches, GPU worker processes generate.

Every failure the design promises to survive is played here against the real server: a worker
SIGKILLed mid-batch, results waiting while the bot is down, the server SIGKILLed and restarted, a
worker cut off past AckWait, a poison job, and no worker at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine.engine_settings import EngineSettings
from engine.jobs.records import JobEvent, Requester
from engine.requests.params import ParamRequest
from engine.service import Engine
from tests.engine.helpers import params, wait_final
from tests.engine.remote.conftest import WAIT, RemoteEngine
from tests.engine.remote_helpers import (
    ACK_WAIT,
    BOT,
    HEARTBEAT,
    REPO,
    Workers,
    collect,
    done_events,
    stored_state,
    wait_for,
)
from tests.support.nats_server import NatsServer


def requester(user: str) -> Requester:
    return Requester(user_id=user, guild_id="g1")


async def test_two_workers_run_the_jobs_and_status_lists_them(remote_engine: RemoteEngine, workers: Workers) -> None:
    """Jobs go through NATS to worker processes, come back as stored results; /status names the workers."""
    engine = await remote_engine()
    workers.start("gpu-a")
    workers.start("gpu-b")
    assert await engine.wait_ready(WAIT)
    await asyncio.to_thread(_wait_workers, engine, 2)
    subs = [await engine.submit(params(f"fox {i}", seed=i), requester(f"u{i % 2}")) for i in range(3)]
    for sub in subs:
        job = await wait_final(engine, sub.job.id, WAIT)
        assert job.state == "done", job.error
        assert len(job.results) == 1 and Path(job.results[0]).is_file() and Path(job.deliveries[0]).is_file()
    status = engine.status()
    assert status.remote and {w.name for w in status.workers} == {"gpu-a", "gpu-b"}
    assert all(w.state == "ready" and w.device == "cpu" for w in status.workers)


def _wait_workers(engine: Engine, count: int) -> None:
    import time

    deadline = time.monotonic() + WAIT
    while sum(w.state == "ready" for w in engine.status().workers) < count:
        assert time.monotonic() < deadline, f"only {engine.status().workers} seen"
        time.sleep(0.05)


async def test_no_worker_alive_jobs_wait_and_status_says_so(remote_engine: RemoteEngine, workers: Workers) -> None:
    """Without workers a job waits in the queue (position shown); the first worker to come runs it."""
    engine = await remote_engine()
    sub = await engine.submit(params("a patient fox"), requester("u1"))
    await asyncio.sleep(1.0)
    assert engine.model_state == "loading" and engine.status().workers == ()
    assert engine.position(sub.job.id)[0] == 1
    workers.start("late")
    assert (await wait_final(engine, sub.job.id, WAIT)).state == "done"


async def test_sigkilled_worker_job_finishes_on_another_once(remote_engine: RemoteEngine, workers: Workers,
                                                             tmp_path: Path) -> None:
    """A worker killed mid-batch: after AckWait the batch runs on the other worker, delivered once."""
    engine = await remote_engine()
    events: list[JobEvent] = []
    listener = asyncio.create_task(collect(engine, events))
    workers.start("doomed", TEST_HANG_PROMPT="the doomed fox")
    assert await engine.wait_ready(WAIT)
    sub = await engine.submit(params("the doomed fox"), requester("u1"))
    await asyncio.sleep(1.5)  # the doomed worker holds the batch
    assert stored_state(engine.settings.db_path, sub.job.id) == "running"
    workers.kill("doomed")
    workers.start("rescuer")
    job = await wait_final(engine, sub.job.id, WAIT)
    await asyncio.sleep(1.0)  # a duplicate would arrive meanwhile
    listener.cancel()
    assert job.state == "done" and done_events(events, sub.job.id) == 1


async def test_a_hung_worker_loses_its_batch_and_its_late_result_is_dropped(remote_engine: RemoteEngine,
                                                                        workers: Workers,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A worker whose GPU thread hangs (its process alive) stops its in-progress acks, since no step moves: past
    AckWait the batch goes to another worker, and the hung worker's late result is dropped, not delivered (the
    acks used to go on for ever, so the batch stayed with the hung worker)."""
    caplog.set_level(logging.INFO, logger="engine.remote.intake")
    engine = await remote_engine()
    events: list[JobEvent] = []
    listener = asyncio.create_task(collect(engine, events))
    workers.start("slow", TEST_HANG_PROMPT="a slow fox", TEST_HANG_SECONDS=str(ACK_WAIT * 3))
    assert await engine.wait_ready(WAIT)
    sub = await engine.submit(params("a slow fox"), requester("u1"))
    await asyncio.sleep(1.0)
    workers.start("fast")
    job = await wait_final(engine, sub.job.id, WAIT)
    first_results = job.results
    await asyncio.sleep(ACK_WAIT * 3)  # the slow worker wakes up and sends its result
    listener.cancel()
    assert f"job {sub.job.id}: dropping a result from slow (try 1): the job is" in caplog.text
    assert engine.metrics.remote_refused.labels("not_running")._value.get() == 1
    again = await engine.get_job(sub.job.id)
    assert again is not None and again.results == first_results
    assert done_events(events, sub.job.id) == 1


async def test_poison_job_is_set_aside_after_max_deliver(remote_engine: RemoteEngine, workers: Workers) -> None:
    """A job that fails on every try is dead-lettered after NATS_MAX_DELIVER tries and its requester told."""
    engine = await remote_engine(nats_max_deliver=3)
    workers.start("w", TEST_FAIL_PROMPT="poison", NATS_MAX_DELIVER="3")
    assert await engine.wait_ready(WAIT)
    bad = await engine.submit(params("poison"), requester("u1"))
    good = await engine.submit(params("a healthy fox", size=(96, 64)), requester("u2"))
    job = await wait_final(engine, bad.job.id, WAIT)
    assert job.state == "failed" and "failed 3 times on the GPU workers" in (job.error or "")
    assert (await wait_final(engine, good.job.id, WAIT)).state == "done"


async def test_nats_server_killed_and_restarted_loses_nothing(remote_engine: RemoteEngine, workers: Workers,
                                                              nats_server: NatsServer) -> None:
    """The server SIGKILLed with jobs queued and running: after its restart every job finishes once."""
    engine = await remote_engine()
    events: list[JobEvent] = []
    listener = asyncio.create_task(collect(engine, events))
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    subs = [await engine.submit(params(f"fox {i}", seed=i, size=((64, 64), (96, 64))[i % 2]), requester(f"u{i}"))
            for i in range(4)]
    await asyncio.sleep(0.3)
    nats_server.kill()
    await asyncio.sleep(1.0)
    nats_server.start()
    for sub in subs:
        assert (await wait_final(engine, sub.job.id, WAIT)).state == "done"
    await asyncio.sleep(1.0)
    listener.cancel()
    assert all(done_events(events, s.job.id) == 1 for s in subs)


async def test_bot_sigkilled_with_a_result_waiting_delivers_it_once_after_restart(
        make_settings: Callable[..., EngineSettings], nats_server: NatsServer, workers: Workers,
        tmp_path: Path) -> None:
    """The bot is SIGKILLed with a batch out; the worker finishes meanwhile; the restarted bot records it once."""
    settings = make_settings(nats_url=nats_server.url, nats_ack_wait=ACK_WAIT, worker_heartbeat=HEARTBEAT,
                             fast_lora_id="")
    workers.start("w", TEST_HANG_PROMPT="a waiting fox", TEST_HANG_SECONDS="2")
    env = dict(os.environ, PYTHONPATH=str(REPO), MODEL_ID=settings.model_id, DEVICE="cpu", SIZES="64x64",
               DEFAULT_SIZE="64x64", FAST_LORA_ID="", DATA_DIR=str(settings.data_dir), NATS_URL=nats_server.url,
               NATS_ACK_WAIT=str(ACK_WAIT), WORKER_HEARTBEAT=str(HEARTBEAT))
    bot = subprocess.Popen([sys.executable, "-c", BOT], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    try:
        job_id = int(await asyncio.wait_for(asyncio.to_thread(bot.stdout.readline), WAIT))  # type: ignore[union-attr]
        await asyncio.to_thread(wait_for, lambda: stored_state(settings.db_path, job_id) == "running", WAIT,
                                "the batch to be dispatched")
    finally:
        os.kill(bot.pid, signal.SIGKILL)
        bot.wait(10)
    await asyncio.sleep(3.5)  # the worker finishes; its result waits in the stream
    assert stored_state(settings.db_path, job_id) == "running"
    engine = Engine(settings)
    events: list[JobEvent] = []
    await engine.start()
    listener = asyncio.create_task(collect(engine, events))
    try:
        job = await wait_final(engine, job_id, WAIT)
        await asyncio.sleep(1.0)
        assert job.state == "done" and done_events(events, job_id) == 1
        assert [j.id for j in await engine.undelivered()] == [job_id]
    finally:
        listener.cancel()
        await engine.stop()


async def test_cancel_reaches_the_worker_mid_run(remote_engine: RemoteEngine, workers: Workers) -> None:
    """Cancelling a dispatched job stops it on its worker at the next step, which frees the worker."""
    engine = await remote_engine()
    workers.start("w", TEST_SLOW_PROMPT="a slow fox")
    assert await engine.wait_ready(WAIT)
    with engine.subscribe(None) as stream:
        sub = await engine.submit(params("a slow fox", steps=40), requester("u1"))
        while (await stream.next(WAIT)).kind != "progress":
            pass
    assert await engine.cancel(sub.job.id, user_id="u1") == "cancelled"
    await asyncio.to_thread(wait_for, lambda: engine.status().workers and engine.status().workers[0].busy == 0,
                            6.0, "the worker to stop the cancelled job")
    assert (await engine.get_job(sub.job.id)).state == "cancelled"  # type: ignore[union-attr]


async def test_variation_source_travels_to_the_worker(remote_engine: RemoteEngine, workers: Workers) -> None:
    """A variation of a finished job runs on a worker from its source image sent through the Object Store."""
    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    source = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)
    varied = await engine.submit(await engine.variation(source.id, 0, seed=9), requester("u2"))
    job = await wait_final(engine, varied.job.id, WAIT)
    assert job.state == "done" and job.params.source_job == source.id
    assert Image.open(job.results[0]).size == Image.open(source.results[0]).size


async def test_a_canvas_edit_runs_on_a_worker(remote_engine: RemoteEngine, workers: Workers) -> None:
    """Pan left on a worker: the 96x64 canvas is built there from the source sent through the Object Store, and the
    source's pixels come back untouched beyond the seam."""
    import numpy as np

    from engine.requests.canvas_edits import CanvasEdit

    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    source = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)
    panned = await engine.submit(await engine.remix.canvas(source.id, 0, CanvasEdit("left")), requester("u2"))
    job = await wait_final(engine, panned.job.id, WAIT)
    assert job.state == "done", job.error
    out, before = (np.asarray(Image.open(path).convert("RGB")) for path in (job.results[0], source.results[0]))
    assert out.shape == (64, 96, 3) and np.array_equal(out[:, 48:], before[:, 16:])


async def test_a_tile_runs_on_a_worker(remote_engine: RemoteEngine, workers: Workers) -> None:
    """--tile on a worker: the worker pads circularly for that batch, and a plain job after it on the same worker
    is the image the same seed makes without --tile."""
    from dataclasses import replace

    import numpy as np

    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    results = []
    for tile in (False, True, False):
        job = (await engine.submit(replace(params("a fox", seed=4), tile=tile), requester("u1"))).job
        done = await wait_final(engine, job.id, WAIT)
        assert done.state == "done" and done.params.tile == tile, done.error
        results.append(np.asarray(Image.open(done.results[0]).convert("RGB"), dtype=np.int16))
    assert np.abs(results[1] - results[0]).mean() > 1 and np.array_equal(results[0], results[2])


async def _made(engine: Engine, **request: str) -> Any:
    """The image (an int16 array) of one /imagine-like request of seed 4 that must finish."""
    import numpy as np

    job = (await engine.submit(engine.resolve(ParamRequest(prompt="a fox", seed=4, steps=2, **request)),
                               requester("u1"))).job
    done = await wait_final(engine, job.id, WAIT)
    assert done.state == "done", done.error
    return np.asarray(Image.open(done.results[0]).convert("RGB"), dtype=np.int16)


async def test_a_lora_runs_on_a_worker(remote_engine: RemoteEngine, workers: Workers, tmp_path: Path) -> None:
    """A job with a LoRA runs on a worker that loaded it from its own LORAS, and its image differs from the plain
    one of the same seed; a LoRA whose source does not load there fails that job saying so, and the worker keeps
    serving."""
    import numpy as np

    from engine.gpu.tiny_model import save_tiny_lcm_lora

    ink = save_tiny_lcm_lora(tmp_path / "ink", seed=3)
    engine = await remote_engine(loras=f"ink={ink}, moss={tmp_path / 'moss'}")
    workers.start("w", LORAS=f"ink={ink}")
    assert await engine.wait_ready(WAIT)
    images = [await _made(engine, loras=loras) for loras in ("none", "ink:0.9")]
    assert np.abs(images[1] - images[0]).mean() > 1
    missing = (await engine.submit(engine.resolve(ParamRequest(prompt="a fox", loras="moss")), requester("u1"))).job
    failed = await wait_final(engine, missing.id, WAIT)
    assert failed.state == "failed" and "The LoRA 'moss' could not be loaded on this GPU" in (failed.error or "")


async def test_a_worker_serves_every_model_of_its_models(remote_engine: RemoteEngine, workers: Workers,
                                                          tiny_model_dir: Path, tmp_path: Path) -> None:
    """With MODELS, a worker keeps its default model loaded and loads the other for the job that names it; its
    heartbeat says which are loaded."""
    import numpy as np

    from engine.gpu.tiny_model import save_tiny_model

    models = f"base={tiny_model_dir}, other={save_tiny_model(tmp_path / 'other', seed=7)}"
    engine = await remote_engine(models=models)
    workers.start("w", MODELS=models, MODEL_SLOTS="2")
    assert await engine.wait_ready(WAIT)
    images = [await _made(engine, model=model) for model in ("base", "other")]
    assert np.abs(images[1] - images[0]).mean() > 1
    await asyncio.to_thread(wait_for, lambda: engine.status().workers and
                            engine.status().workers[0].models == ("base", "other"), 6.0, "the heartbeat's models")


async def test_a_batch_goes_only_to_a_worker_that_serves_its_model(remote_engine: RemoteEngine, workers: Workers,
                                                                     tiny_model_dir: Path, tmp_path: Path) -> None:
    """The bot offers base and other; a worker serving base alone never takes the other job (before, it took it
    and failed it), which waits until a worker that serves other starts."""
    from engine.gpu.tiny_model import save_tiny_model

    other = save_tiny_model(tmp_path / "other", seed=7)
    engine = await remote_engine(models=f"base={tiny_model_dir}, other={other}")
    workers.start("base-only", MODELS=f"base={tiny_model_dir}")
    assert await engine.wait_ready(WAIT)

    async def submit(model: str) -> int:
        params = engine.resolve(ParamRequest(prompt="a fox", seed=4, steps=2, model=model))
        return (await engine.submit(params, requester("u1"))).job.id

    waiting, served = await submit("other"), await submit("base")
    assert (await wait_final(engine, served, WAIT)).state == "done"
    await asyncio.sleep(1.0)
    assert (await engine.get_job(waiting)).state in ("queued", "running")  # type: ignore[union-attr]
    workers.start("both", MODELS=f"base={tiny_model_dir}, other={other}")
    job = await wait_final(engine, waiting, WAIT)
    assert job.state == "done" and job.params.model == "other", job.error


async def test_a_finished_jobs_source_leaves_the_object_store(remote_engine: RemoteEngine, workers: Workers,
                                                              nats_server: NatsServer) -> None:
    """Once an image-to-image job has its result, the source it sent to the workers is deleted (they used to stay
    in the Object Store for ever: 15 of 15)."""
    import nats

    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    source = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)
    varied = await engine.submit(await engine.variation(source.id, 0, seed=9), requester("u2"))
    assert (await wait_final(engine, varied.job.id, WAIT)).state == "done"
    client = await nats.connect(nats_server.url)
    try:
        store = await client.jetstream().object_store("imagine_images")
        names: list[str] = []
        for _ in range(50):
            try:
                names = [info.name for info in await store.list() if not info.deleted]
            except Exception:  # nats-py raises when the bucket is empty
                names = []
            if f"source/{varied.job.id}.png" not in names:
                break
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    assert f"source/{varied.job.id}.png" not in names


async def test_users_picture_travels_to_the_worker(remote_engine: RemoteEngine, workers: Workers) -> None:
    """A job made from a user's picture runs on a worker from that picture, sent through the Object Store."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (150, 100), (200, 40, 40)).save(buf, "PNG")
    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    made = await engine.remix.from_picture(params("a fox"), buf.getvalue(), keep_size=False)
    job = await wait_final(engine, (await engine.submit(made, requester("u1"))).job.id, WAIT)
    assert job.state == "done" and job.params.init_image is not None
    assert Image.open(job.results[0]).size == (96, 64)


async def test_upscale_runs_on_a_worker(remote_engine: RemoteEngine, workers: Workers) -> None:
    """A U-button upscale runs on a worker from its source image and comes back at twice the size."""
    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    source = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)
    job = await wait_final(engine, (await engine.submit(await engine.remix.upscale(source.id, 0),
                                                        requester("u2"))).job.id, WAIT)
    assert job.state == "done" and job.params.upscale == 2
    assert Image.open(job.results[0]).size == (128, 128)


async def test_bot_started_before_the_nats_server_waits_for_it(
        make_settings: Callable[..., EngineSettings], tmp_path: Path, tiny_model_dir: Path) -> None:
    """NATS down at start: the bot stays up and accepts jobs; once the server and a worker come, they run."""
    server = NatsServer(tmp_path / "late-nats")
    engine = Engine(make_settings(nats_url=server.url, worker_heartbeat=HEARTBEAT, fast_lora_id=""))
    await engine.start()
    group = Workers(server.url, tiny_model_dir, tmp_path)
    try:
        sub = await engine.submit(params("an early fox"), requester("u1"))
        await asyncio.sleep(1.0)
        server.start()
        group.start("w")
        assert (await wait_final(engine, sub.job.id, WAIT)).state == "done"
    finally:
        await engine.stop()
        group.stop_all()
        server.stop()


async def test_dispatch_keeps_round_robin_between_users(remote_engine: RemoteEngine, workers: Workers) -> None:
    """One user's four jobs do not all go before another user's first: the bot's fair order decides."""
    engine = await remote_engine(max_batch=1)
    done: list[int] = []
    subs = [await engine.submit(params(f"a {i}", seed=i), requester("greedy")) for i in range(4)]
    other = await engine.submit(params("b"), requester("patient"))
    workers.start("w", WORKER_SLOTS="1")
    for sub in [*subs, other]:
        job = await wait_final(engine, sub.job.id, WAIT)
        done.append(job.id)
    finished = sorted([await engine.get_job(i) for i in done], key=lambda j: j.finished_at or 0)  # type: ignore[union-attr]
    order = [j.id for j in finished]  # type: ignore[union-attr]
    assert order.index(other.job.id) <= 2  # served within the first window, not after all of greedy's


async def test_worker_scores_images_and_the_scores_are_stored(remote_engine: RemoteEngine, workers: Workers,
                                                              tiny_classifier_dir: Callable[..., Path]) -> None:
    """A GPU worker with SAFETY_MODEL_ID scores each image before it leaves; the bot stores the scores."""
    engine = await remote_engine()
    workers.start("w", SAFETY_MODEL_ID=str(tiny_classifier_dir(0.9)))
    assert await engine.wait_ready(WAIT)
    job = await wait_final(engine, (await engine.submit(params("a fox", count=2), requester("u1"))).job.id, WAIT)
    assert job.state == "done", job.error
    assert job.safety == (0.9, 0.9)


async def test_a_worker_without_the_classifier_is_reported(remote_engine: RemoteEngine, workers: Workers,
                                                           tiny_classifier_dir: Callable[..., Path],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Image safety on at the bot but not on a worker: the job has no scores (so its images count as flagged
    where a policy relies on them) and the log tells the operator what to set."""
    engine = await remote_engine(safety_model_id=str(tiny_classifier_dir(0.9)))
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    with caplog.at_level(logging.WARNING, logger="engine.remote.intake"):
        job = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, WAIT)
    assert job.state == "done" and job.safety == ()
    assert "worker w sent no image safety scores" in caplog.text and "SAFETY_MODEL_ID on every worker" in caplog.text


async def test_a_malformed_result_is_dropped_and_holds_nobody_up(remote_engine: RemoteEngine, workers: Workers,
                                                                  nats_server: NatsServer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """One malformed message on the results subject is terminated, logged and counted; the real results keep
    flowing at once (it used to restart the results loop every minute, holding up to nine others)."""
    import nats

    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    client = await nats.connect(nats_server.url)
    try:
        await client.jetstream().publish("imagine.results.999", b'{"job_id": "not a number"')
    finally:
        await client.close()
    with caplog.at_level(logging.ERROR, logger="engine.remote.intake"):
        job = await wait_final(engine, (await engine.submit(params("a fox"), requester("u1"))).job.id, 20)
        for _ in range(100):
            if "malformed result message" in caplog.text:
                break
            await asyncio.sleep(0.05)
    assert job.state == "done"
    assert "dropping a malformed result message" in caplog.text
    assert engine.metrics.remote_refused.labels("malformed")._value.get() == 1
