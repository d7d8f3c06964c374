"""The panel's Status tab with GPU workers (NATS_URL): a row per worker, and a banner when none is ready."""

from __future__ import annotations

from dataclasses import replace

from admin_ui.tabs.status import banner, report
from engine.ops.status import EngineStatus, WorkerInfo

BASE = EngineStatus(model_id="segmind/SSD-1B", model_state="ready", model_error=None, device=None, dtype=None,
                    fast_available=True, queued=0, running=0, jobs_last_hour=0, seconds_per_image=None,
                    uptime_seconds=5.0, gpu_memory=None, remote=True)


def test_report_has_a_row_per_worker() -> None:
    """Name, device, state, load and speed of each worker; names are escaped."""
    worker = WorkerInfo("<gpu-a>", "cuda:0", "bfloat16", "ready", None, 2, 1, True, 0.4, 1.0)
    html = report(replace(BASE, workers=(worker,)))
    assert "&lt;gpu-a&gt;" in html and "cuda:0 bfloat16" in html and "1 of 2" in html and "0.40 s" in html


def test_banner_says_no_worker_is_ready() -> None:
    """While no worker is ready, every tab says jobs wait and how to start one."""
    text = banner(replace(BASE, model_state="loading"))
    assert "No GPU worker is ready" in text and "python -m engine.worker" in text
