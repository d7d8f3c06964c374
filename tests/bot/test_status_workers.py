"""/status with GPU workers (NATS_URL): the workers behind the queue, or that none is connected."""

from __future__ import annotations

from dataclasses import replace

from bot.cogs.status import status_text
from engine.ops.status import EngineStatus, WorkerInfo

BASE = EngineStatus(model_id="segmind/SSD-1B", model_state="ready", model_error=None, device=None, dtype=None,
                    fast_available=False, queued=2, running=1, jobs_last_hour=5, seconds_per_image=0.5,
                    uptime_seconds=60.0, gpu_memory=None, remote=True)
GPU_A = WorkerInfo("gpu-a", "cuda:0", "bfloat16", "ready", None, 1, 1, True, 0.45, 0.4)
GPU_B = WorkerInfo("gpu-b", "cuda:1", "bfloat16", "loading", None, 1, 0, False, None, 1.2)


def test_status_lists_the_workers_and_how_many_are_ready() -> None:
    """Each worker with its device, state and load; the count of ready ones first."""
    text = status_text(replace(BASE, workers=(GPU_A, GPU_B)), 0.5)
    assert "**GPU workers:** 1 of 2 ready" in text
    assert "gpu-a (cuda:0, ready, 1/1 busy)" in text and "gpu-b (cuda:1, loading, 0/1 busy)" in text
    assert "**Device:** GPU workers" in text


def test_status_says_jobs_wait_when_no_worker_is_connected() -> None:
    """No worker: the user learns that jobs wait until one starts."""
    text = status_text(replace(BASE, model_state="loading", workers=()), 0.5)
    assert "none connected" in text and "jobs wait in the queue" in text


def test_single_process_status_has_no_workers_line() -> None:
    """Without NATS_URL nothing about workers is shown."""
    assert "GPU workers" not in status_text(replace(BASE, remote=False, device="cuda", dtype="bfloat16"), 0.5)
