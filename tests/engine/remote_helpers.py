"""Helpers for the scale-out tests: GPU worker processes on the tiny model, and the bot-side engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.jobs.records import JobEvent
from engine.jobs.store import JobStore
from engine.service import Engine

REPO = Path(__file__).resolve().parents[2]
ACK_WAIT = 3.0  # short, so a dead worker's job moves on within the test
HEARTBEAT = 0.5

# ``python -m engine.worker`` with optional test behaviour for chosen prompts, patched in before it runs
WORKER = """
import os, sys, time
import engine.gpu.batch_runner as runner
import engine.remote.gpu_worker as w
hang, hang_s = os.environ.get("TEST_HANG_PROMPT"), float(os.environ.get("TEST_HANG_SECONDS", "3600"))
fail = os.environ.get("TEST_FAIL_PROMPT")
slow = os.environ.get("TEST_SLOW_PROMPT")
oom = os.environ.get("TEST_OOM_PROMPT")
real = runner.run_jobs
def run_jobs(model, jobs, settings, **kwargs):
    prompt = jobs[0].params.prompt
    if oom and len(jobs) > 1 and any(j.params.prompt == oom for j in jobs):
        import torch
        raise torch.OutOfMemoryError("CUDA out of memory (test)")
    if prompt == hang:
        time.sleep(hang_s)
    if prompt == slow:  # half a second per step, so a cancel arrives mid-run
        report = kwargs["on_progress"]
        kwargs["on_progress"] = lambda *args: (time.sleep(0.5), report(*args))
    if fail and any(j.params.prompt == fail for j in jobs):
        raise RuntimeError("this prompt always breaks the pipeline (and the batch it is in)")
    return real(model, jobs, settings, **kwargs)
runner.run_jobs = run_jobs
sys.exit(w.main())
"""


class Workers:
    """Worker processes started by a test; all are killed at teardown."""

    def __init__(self, nats_url: str, model_dir: Path, tmp_path: Path) -> None:
        self.nats_url = nats_url
        self.model_dir = model_dir
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``python -m engine.worker`` (with the test patches) named ``name``."""
        values = dict(os.environ, PYTHONPATH=str(REPO), MODEL_ID=str(self.model_dir), DEVICE="cpu",
                      SIZES="64x64,96x64,64x96", DEFAULT_SIZE="64x64", FAST_LORA_ID="", NATS_URL=self.nats_url,
                      WORKER_NAME=name, NATS_ACK_WAIT=str(ACK_WAIT), WORKER_HEARTBEAT=str(HEARTBEAT),
                      PREVIEW_INTERVAL="0", HF_HUB_OFFLINE="1", DATA_DIR=str(self.tmp_path / f"worker-{name}"))
        values.update(env)
        log = open(self.tmp_path / f"worker-{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=self.tmp_path, env=values, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL a worker."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log(self, name: str) -> str:
        """What a worker printed."""
        return (self.tmp_path / f"worker-{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        """Kill every worker still running."""
        for name in list(self.procs):
            self.kill(name)


def wait_for(check, timeout: float, what: str, interval: float = 0.05):  # noqa: ANN001, ANN201 - test helper
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stored_state(db_path: Path, job_id: int) -> str | None:
    """A job's state read straight from SQLite (another process may own the engine)."""
    store = JobStore(db_path)
    try:
        job = store.get(job_id)
        return job.state if job else None
    finally:
        store.close()


# the bot side in a process of its own, to SIGKILL it with a batch out at a worker
BOT = """
import asyncio, os
from engine.jobs.records import Requester
from engine.requests.params import GenerationParams
from engine.service import Engine
from engine.engine_settings import load_engine_settings

async def main():
    engine = Engine(load_engine_settings())
    await engine.start()
    await engine.wait_ready(60)
    sub = await engine.submit(GenerationParams("a waiting fox", "", 64, 64, 2, 5.0, seed=3), Requester("u1"))
    print(sub.job.id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def done_events(events: list[JobEvent], job_id: int) -> int:
    """How many "done" events one job produced."""
    return sum(1 for e in events if e.kind == "done" and e.job.id == job_id)


async def collect(engine: Engine, into: list[JobEvent]) -> None:
    """Record every event of ``engine`` into ``into`` until cancelled."""
    with engine.subscribe(None) as stream:
        async for event in stream:
            into.append(event)
