"""The sample Grafana dashboard in docs/ queries only metrics the engine exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.ops.metrics import Metrics
from engine.ops.status import EngineStatus, WorkerInfo

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana-dashboard.json"


def exported_names() -> set[str]:
    """Every sample name one scrape can hold (remote workers and GPU included)."""
    status = EngineStatus(model_id="m", model_state="ready", model_error=None, device="cuda", dtype="bfloat16",
                          fast_available=True, queued=1, running=1, jobs_last_hour=1, seconds_per_image=0.5,
                          uptime_seconds=1.0, gpu_memory=None, remote=True,
                          workers=(WorkerInfo("w", "cuda:0", "bfloat16", "ready", None, 1, 1, True, 0.4, 0.5),))
    metrics = Metrics(lambda: status, lambda: (1, 2))
    metrics.jobs.labels("done").inc()
    metrics.delivery_fallbacks.labels("dm").inc()
    metrics.safety_images.labels("withhold").inc()
    metrics.safety_score.observe(0.3)
    names = set()
    for family in metrics.registry.collect():
        names |= {sample.name for sample in family.samples}
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    """A renamed metric would leave a panel empty: each name in each expression is one the engine exports."""
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"imagine_[a-z_]+", target["expr"])}
    assert used and used <= exported_names(), used - exported_names()
