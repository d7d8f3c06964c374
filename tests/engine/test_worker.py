"""``python -m engine.worker`` as an operator starts it (the serving itself is in test_dispatch.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.nats_server import free_port

REPO = Path(__file__).resolve().parents[2]


def run_worker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    values.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-m", "engine.worker"], cwd=tmp_path, env=values, capture_output=True,
                          text=True, timeout=120)


def test_without_nats_url_it_says_what_to_set(tmp_path: Path) -> None:
    """No NATS_URL: exit 2 with a message naming the variable, not a traceback."""
    done = run_worker(tmp_path)
    assert done.returncode == 2
    assert "NATS_URL is not set" in done.stderr and "Traceback" not in done.stderr


def test_unreachable_server_is_retried_and_reported_without_credentials(tmp_path: Path) -> None:
    """No server yet: the worker says it is retrying (password hidden) and stops cleanly on SIGTERM."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    values.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", NATS_URL=f"nats://imagine:s3cret@127.0.0.1:{free_port()}")
    proc = subprocess.Popen([sys.executable, "-m", "engine.worker"], cwd=tmp_path, env=values,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        while "connecting to NATS" not in line:
            assert line, "the worker exited without saying why"
            line = proc.stderr.readline()  # type: ignore[union-attr]
        assert "nats://[credentials]@127.0.0.1" in line and "retrying" in line and "s3cret" not in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
