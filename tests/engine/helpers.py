"""Helpers for the engine tests: a gated model loader, a batch recorder, job builders and waits."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.local_worker import default_loader
from engine.jobs.records import FINAL_STATES, Job, Requester
from engine.requests.params import GenerationParams
from engine.service import Engine

WAIT = 30.0  # generous upper bound for anything the tiny model does on 2 CPU cores


class GatedLoader:
    """A model loader that waits on ``gate`` before calling the real ``default_loader``.

    Keeps an engine in the 'loading' state for as long as a test needs queued jobs.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(self, settings: EngineSettings) -> Any:
        self.gate.wait(WAIT)
        return default_loader(settings)

    def open(self) -> None:
        """Let the model load."""
        self.gate.set()


class BatchLog:
    """A ``before_batch`` hook that records the job ids of every pipeline call.

    ``hold`` makes the worker wait (on its own thread) before the next pipeline call until
    ``release()``; ``entered`` is set when it is waiting.
    """

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def __call__(self, jobs: list[Job]) -> None:
        self.calls.append([j.id for j in jobs])
        self.entered.set()
        self.hold.wait(WAIT)

    def block(self) -> None:
        """Make the next pipeline call wait until ``release()``."""
        self.entered.clear()
        self.hold.clear()

    def release(self) -> None:
        """Let the worker go on."""
        self.hold.set()

    @property
    def job_ids(self) -> list[int]:
        """Every job id that reached the pipeline, in order."""
        return [i for call in self.calls for i in call]


async def wait_final(engine: Engine, job_id: int, timeout: float = WAIT) -> Job:
    """Poll the store until the job is done, failed or cancelled, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        job = await engine.get_job(job_id)
        assert job is not None, f"job {job_id} is not in the store"
        if job.state in FINAL_STATES:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} after {timeout}s")
        await asyncio.sleep(0.02)


async def wait_idle(engine: Engine, timeout: float = WAIT) -> None:
    """Wait until nothing is queued or running."""
    deadline = time.monotonic() + timeout
    while engine.queue_snapshot():
        if time.monotonic() > deadline:
            raise AssertionError(f"engine still busy after {timeout}s: {engine.queue_snapshot()}")
        await asyncio.sleep(0.02)


def params(prompt: str = "a red fox in the snow", *, seed: int = 1, size: tuple[int, int] = (64, 64),
           steps: int = 2, guidance: float = 5.0, count: int = 1, negative: str = "", scheduler: str = "euler",
           fast: bool = False) -> GenerationParams:
    """Concrete generation parameters for the tiny model."""
    return GenerationParams(prompt=prompt, negative_prompt=negative, width=size[0], height=size[1], steps=steps,
                            guidance=guidance, seed=seed, count=count, scheduler=scheduler, fast=fast)


def who(user: str = "u1", guild: str | None = "g1") -> Requester:
    """A Discord requester."""
    return Requester(user_id=user, user_name=f"name-{user}", guild_id=guild, channel_id="c1")
