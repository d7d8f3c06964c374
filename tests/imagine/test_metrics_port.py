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


def test_a_metrics_port_open_beyond_this_machine_is_warned_about(monkeypatch, caplog) -> None:
    """METRICS_HOST other than loopback serves metrics without a login: the log says so and what to do."""
    import logging
    from types import SimpleNamespace

    from admin_ui.admin_settings import AdminSettings
    from imagine import main

    class Server:
        server_port = 9100

    monkeypatch.setattr(main, "start_http_server", lambda *a, **k: (Server(), None))  # no real listener here
    admin = AdminSettings(_env_file=None, METRICS_PORT=9100, METRICS_HOST="0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="imagine.main"):
        main._start_metrics(SimpleNamespace(metrics=SimpleNamespace(registry=None)), admin)  # type: ignore[arg-type]
    assert "without a login on 0.0.0.0" in caplog.text
    assert [main._is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.0.0.5")] == \
        [True, True, True, False, False]
