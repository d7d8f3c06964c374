"""The two backends, in-process and NATS (a real nats-server and a GPU worker process), through one module:
both run the same worker runtime (engine/gpu/batch_runner.py), so each behaviour here holds for both."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.engine_settings import EngineSettings
from engine.jobs.records import Job, JobRequest, Place, Requester
from engine.service import Engine
from tests.engine.helpers import params, wait_final
from tests.engine.remote_helpers import ACK_WAIT, HEARTBEAT, Workers
from tests.support.nats_server import NatsServer

WAIT = 60.0
OOM_PROMPT = "a fox too big for the gpu"  # a batch holding it runs out of memory; alone it fits
SLOW_PROMPT = "a slow fox"  # takes long enough to be cancelled while it runs
SCORE = 0.9  # the tiny classifier's score for every image
LONG_PROMPT = " ".join(["a very detailed red fox in deep fresh snow under a pale winter sky"] * 12)


@dataclass
class Backend:
    """A started engine on one backend, and where its worker runtime logs."""

    engine: Engine
    runner_log: Callable[[], str]


def local_faults(jobs: list[Job]) -> None:
    """The in-process worker's faults for the test prompts (the NATS worker gets the same from its env)."""
    prompts = {j.params.prompt for j in jobs}
    if OOM_PROMPT in prompts and len(jobs) > 1:
        raise torch.OutOfMemoryError("CUDA out of memory (test)")
    if SLOW_PROMPT in prompts:
        import time
        time.sleep(2.0)


@pytest.fixture(params=["local", "nats"])
async def backend(request: pytest.FixtureRequest, make_settings: Callable[..., EngineSettings], tmp_path: Path,
                  tiny_model_dir: Path, tiny_classifier_dir: Callable[..., Path],
                  caplog: pytest.LogCaptureFixture) -> AsyncIterator[Backend]:
    """An engine whose batches run in this process, or on a GPU worker over NATS."""
    classifier = str(tiny_classifier_dir(SCORE))
    caplog.set_level(logging.INFO, logger="engine.gpu.batch_runner")
    if request.param == "local":
        engine = Engine(make_settings(batch_window=0.3, safety_model_id=classifier))
        engine.before_batch = local_faults
        await engine.start()
        assert await engine.wait_ready(WAIT)
        yield Backend(engine, lambda: caplog.text)
        await engine.stop()
        return
    server = NatsServer(tmp_path / "nats")
    server.start()
    workers = Workers(server.url, tiny_model_dir, tmp_path)
    engine = Engine(make_settings(batch_window=0.3, safety_model_id=classifier, fast_lora_id="",
                                  nats_url=server.url, nats_ack_wait=ACK_WAIT, worker_heartbeat=HEARTBEAT))
    try:
        await engine.start()
        workers.start("w", SAFETY_MODEL_ID=classifier, TEST_OOM_PROMPT=OOM_PROMPT, TEST_SLOW_PROMPT=SLOW_PROMPT)
        assert await engine.wait_ready(WAIT)
        yield Backend(engine, lambda: workers.log("w"))
    finally:
        await engine.stop()
        workers.stop_all()
        server.stop()


def who(user: str) -> Requester:
    return Requester(user_id=user, guild_id="g1")


async def test_results_are_saved_as_png_with_parameters_and_a_delivery_copy(backend: Backend) -> None:
    """Each image is stored as its PNG original (parameters in a text chunk) and its WebP delivery copy."""
    job = await wait_final(backend.engine, (await backend.engine.submit(params("a fox", count=2), who("u1"))).job.id,
                           WAIT)
    assert job.state == "done", job.error
    assert len(job.results) == len(job.deliveries) == 2
    with Image.open(job.results[0]) as png:
        assert png.format == "PNG" and "a fox" in png.text["imagine"]
    with Image.open(io.BytesIO(Path(job.deliveries[1]).read_bytes())) as copy:
        assert copy.format == "WEBP" and copy.size == (64, 64)


async def test_every_image_is_scored_before_it_is_stored(backend: Backend) -> None:
    """With an image classifier, every image's NSFW score is stored with the job."""
    job = await wait_final(backend.engine, (await backend.engine.submit(params("a fox", count=2), who("u1"))).job.id,
                           WAIT)
    assert job.state == "done" and job.safety == (SCORE, SCORE)


async def test_a_batch_out_of_memory_runs_again_one_job_at_a_time(backend: Backend) -> None:
    """Two jobs batched together run out of GPU memory; each then runs alone and both are done."""
    engine = backend.engine
    first, second = await asyncio.gather(engine.submit(params(OOM_PROMPT), who("u1")),
                                         engine.submit(params("a small fox"), who("u2")))
    jobs = [await wait_final(engine, s.job.id, WAIT) for s in (first, second)]
    assert [j.state for j in jobs] == ["done", "done"], [j.error for j in jobs]
    assert "out of memory on a batch of 2 jobs" in backend.runner_log()


async def test_a_prompt_past_the_encoder_gets_a_note(backend: Backend) -> None:
    """A prompt longer than the text encoder reads is accepted with a note saying where it was cut."""
    engine = backend.engine
    for _ in range(100):  # the NATS bot host loads the tokenizer in the background
        if engine.prompt_length is not None:
            break
        await asyncio.sleep(0.1)
    submission = await engine.submit(params(LONG_PROMPT), who("u1"))
    assert submission.notes and "the text encoder reads only the first 77" in str(submission.notes[0])


async def test_a_running_job_cancelled_stops_and_frees_the_worker(backend: Backend) -> None:
    """A job cancelled while it runs ends cancelled, and the next job runs."""
    engine = backend.engine
    with engine.subscribe(None) as stream:
        slow = await engine.submit(params(SLOW_PROMPT, steps=40), who("u1"))
        while (event := await stream.next(WAIT)).kind != "started" or event.job.id != slow.job.id:
            pass
    assert await engine.cancel(slow.job.id, user_id="u1") == "cancelled"
    after = await wait_final(engine, (await engine.submit(params("a fox"), who("u2"))).job.id, WAIT)
    assert after.state == "done"
    assert (await engine.get_job(slow.job.id)).state == "cancelled"  # type: ignore[union-attr]


def _picture() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 80), (200, 60, 40)).save(buf, "PNG")
    return buf.getvalue()


async def _fetch() -> bytes:
    return _picture()


async def test_a_members_flagged_picture_is_used_for_nothing(backend: Backend) -> None:
    """With an image classifier, a member's own picture that scores as NSFW where every image is checked fails
    its job, saying why, before anything is made from it."""
    request = JobRequest(params("a fox"), who("u1"), Place(), picture=_fetch)
    job = await wait_final(backend.engine, (await backend.engine.request(request)).job.id, WAIT)
    assert job.state == "failed" and job.results == ()
    assert "Your picture was flagged as NSFW" in (job.error or "") and "score 0.90" in (job.error or "")


async def test_a_picture_in_a_channel_marked_nsfw_is_not_checked(backend: Backend) -> None:
    """In an age-restricted channel every image is posted, so the member's picture is used as it is."""
    request = JobRequest(params("a fox"), who("u1"), Place(channel_nsfw=True), picture=_fetch)
    job = await wait_final(backend.engine, (await backend.engine.request(request)).job.id, WAIT)
    assert job.state == "done", job.error
