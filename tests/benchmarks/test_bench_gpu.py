"""bench_gpu.py --tiny end to end: the GPU session has one 10-minute command, so the bench must work before it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from benchmarks import bench_gpu


def test_the_tiny_run_serves_every_job_and_compiles_each_phase(tmp_path: Path) -> None:
    """Its settings once named another MODEL_ID than its random model: the model pool unloaded the model as changed and
    every job of every engine phase failed, while the run still printed a result."""
    out = tmp_path / "tiny.json"
    cfg = bench_gpu.parse(["--tiny", "--jobs", "4", "--steps", "4", "--variations", "2", "--baseline-calls", "1",
                           "--pipeline-calls", "1", "--psnr-images", "1",
                           "--extra", "stepcache", "--budget", "400", "--data-dir", str(tmp_path / "data"),
                           "--out", str(out)])
    res = asyncio.run(bench_gpu.run(cfg))
    phases = res["phases"]
    assert not res["skipped"], res["skipped"]
    served = [name for name, value in phases.items() if isinstance(value, dict) and "jobs" in value]
    assert {"engine_eager", "fast", "engine_default", "extra.stepcache"} <= set(served)
    assert all(not phases[name]["failed"] for name in served), {n: phases[n]["failed"] for n in served}
    for name in ("engine_default", "extra.stepcache", "engine_restart"):
        assert phases[name]["dynamo_graphs_compiled"] > 0, name  # a phase that compiled nothing measured eager code
    assert phases["engine_default"]["variations"]["router_calls"]["unet"]["eager"] == 0  # img2img compiled
    assert phases["engine_restart"]["ready"]
    assert json.loads(out.read_text())["phases"].keys() == phases.keys()
