"""LOG_FORMAT=json through the real entry point: every line the service prints is one JSON object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_panel_only_service_logs_json_lines(tmp_path: Path) -> None:
    """`python -m imagine` without a token, LOG_FORMAT=json: lines parse as JSON with level, logger, message."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "NATS_"))}
    env.update(PYTHONPATH=str(REPO), LOG_FORMAT="json", DATA_DIR=str(tmp_path / "data"), ADMIN_PORT="0",
               MODEL_ID=str(tmp_path / "no-model"), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "imagine"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
            if "admin panel on" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    entries = [json.loads(line) for line in lines if line.strip()]
    assert any("admin panel on" in e["message"] for e in entries), lines
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
