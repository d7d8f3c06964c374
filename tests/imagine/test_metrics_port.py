"""METRICS_PORT through the real entry point: Prometheus scrapes the service on a port of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.nats_server import free_port

REPO = Path(__file__).resolve().parents[2]


def test_metrics_port_serves_the_text_format(tmp_path: Path) -> None:
    """`python -m imagine` with METRICS_PORT: GET /metrics there answers with the engine's metrics."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "NATS_", "METRICS_"))}
    env.update(PYTHONPATH=str(REPO), DATA_DIR=str(tmp_path / "data"), ADMIN_PORT="0", METRICS_PORT=str(port),
               MODEL_ID=str(tmp_path / "no-model"), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "imagine"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline, text = time.monotonic() + 90, ""
        # the model (a missing folder here) fails to load within a moment: scrape until the gauge says so
        while time.monotonic() < deadline and 'state="failed"} 1.0' not in text:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    text = answer.read().decode()
            except OSError:
                assert proc.poll() is None, "the service exited"
            time.sleep(0.2)
        assert "imagine_queue_jobs" in text and 'imagine_model_state{state="failed"} 1.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
