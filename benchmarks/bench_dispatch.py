"""Scale-out costs through a real nats-server with worker processes on the tiny model. Prints JSON.

Measures:

* dispatch overhead per job: the same jobs through the in-process engine and through NATS to one
  worker process, run back to back; (remote − in-process) / jobs is what the round trip adds
  (publish, pull, in-progress acks, Object Store upload and download, the result message);
* failover: a worker SIGKILLed while it works on a job, seconds from the kill until the job makes
  progress on the other worker (bounded by NATS_ACK_WAIT, which this run sets);
* throughput with one against two worker processes on the same queue.

Each of the first two is run ``--repeat`` times (default 3) and reported run by run with its spread
(largest over smallest, minus one), so a figure is only quoted when its runs agree.

Usage: ``python benchmarks/bench_dispatch.py [--jobs 96] [--steps 8] [--size 64] [--ack-wait 5]
[--repeat 3] [--out FILE]`` (about 3 minutes on 2 cores). The tiny model makes the pipeline cheap, so
the overhead here is an upper bound of its share at real sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.bench_engine_cpu import cpu_model, emit, wait_all_done  # noqa: E402
from engine.engine_settings import AccelerationSettings, EngineSettings, RemoteSettings  # noqa: E402
from engine.gpu.tiny_model import save_tiny_model  # noqa: E402
from engine.jobs.records import Requester  # noqa: E402
from engine.requests.params import GenerationParams  # noqa: E402
from engine.service import Engine  # noqa: E402
from tests.engine.remote_helpers import Workers  # noqa: E402
from tests.support.nats_server import NatsServer  # noqa: E402


def settings_for(model_dir: Path, data_dir: Path, size: int, **remote: Any) -> EngineSettings:
    """Engine settings for the tiny model; ``remote`` fields turn on dispatch."""
    return EngineSettings(_env_file=None, model_id=str(model_dir), device="cpu", sizes=f"{size}x{size}",
                          default_size=f"{size}x{size}", data_dir=data_dir, fast_lora_id="", preview_interval=0,
                          max_batch=1, batch_window=0, accel=AccelerationSettings(_env_file=None),
                          remote=RemoteSettings(_env_file=None, **remote))


async def run_jobs(engine: Engine, jobs: int, size: int, steps: int, first_seed: int) -> float:
    """Submit ``jobs`` one-image jobs from distinct users at once; seconds until all are done."""
    with engine.subscribe() as stream:
        started = time.perf_counter()
        for i in range(jobs):
            params = GenerationParams(f"a red fox number {i}", "", size, size, steps, 5.0, seed=first_seed + i)
            await engine.submit(params, Requester(user_id=f"user{i}"))
        await wait_all_done(stream, jobs, 600)
        seconds = time.perf_counter() - started
        print(f"{jobs} jobs in {seconds:.2f} s", file=sys.stderr, flush=True)
        return seconds


async def wait_workers(engine: Engine, count: int) -> None:
    """Until ``count`` workers report ready."""
    while sum(w.state == "ready" for w in engine.status().workers) < count:
        await asyncio.sleep(0.1)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    model_dir = save_tiny_model(work / "tiny")
    server = NatsServer(work / "nats")
    server.start()
    remote = dict(nats_url=server.url, nats_ack_wait=args.ack_wait, worker_heartbeat=0.5)
    workers = Workers(server.url, model_dir, work)
    result: dict[str, Any] = {"benchmark": "bench_dispatch", "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                              "cpu_count": os.cpu_count(), "jobs": args.jobs, "steps": args.steps, "size": args.size,
                              "model": "tiny random SDXL (engine/gpu/tiny_model.py)", "ack_wait_s": args.ack_wait}
    try:
        # 1. overhead: in-process against one worker process, the same jobs, warm both first
        local = Engine(settings_for(model_dir, work / "local", args.size))
        await local.start()
        assert await local.wait_ready(120)
        await run_jobs(local, 2, args.size, args.steps, 0)
        local_s = [await run_jobs(local, args.jobs, args.size, args.steps, 1000 * (r + 1)) for r in range(args.repeat)]
        await local.stop()
        # the doomed job crawls (half a second per step), so its worker is busy, not hung, when it is killed
        workers.start("w1", NATS_ACK_WAIT=str(args.ack_wait), TEST_SLOW_PROMPT="the doomed fox")
        bot = Engine(settings_for(model_dir, work / "bot", args.size, **remote))
        await bot.start()
        await wait_workers(bot, 1)
        await run_jobs(bot, 2, args.size, args.steps, 0)
        one_s = [await run_jobs(bot, args.jobs, args.size, args.steps, 1000 * (r + 1)) for r in range(args.repeat)]
        per_job = [1000 * (o - loc) / args.jobs for o, loc in zip(one_s, local_s)]
        result["overhead"] = {"in_process_s": rounded(local_s), "one_worker_s": rounded(one_s),
                              "per_job_ms": rounded(per_job, 1), "per_job_ms_median": round(median(per_job), 1),
                              "pct_of_in_process": round(100 * (median(one_s) / median(local_s) - 1), 1),
                              "spread_pct": {"in_process": spread(local_s), "one_worker": spread(one_s),
                                             "per_job": spread(per_job)}}
        # 2. throughput with a second worker process
        workers.start("w2", NATS_ACK_WAIT=str(args.ack_wait))
        await wait_workers(bot, 2)
        two_s = [await run_jobs(bot, args.jobs, args.size, args.steps, 10000 * (r + 1)) for r in range(args.repeat)]
        result["throughput"] = {"one_worker_images_per_s": rounded([args.jobs / s for s in one_s]),
                                "two_workers_images_per_s": rounded([args.jobs / s for s in two_s]),
                                "ratio": round(median(one_s) / median(two_s), 3),
                                "spread_pct": {"two_workers": spread(two_s)}}
        # 3. failover: with w2 gone, w1 takes the job and works on it; w2 comes back; w1 is killed
        workers.kill("w2")
        with bot.subscribe() as stream:
            sub = await bot.submit(GenerationParams("the doomed fox", "", args.size, args.size, 60, 5.0,
                                                    seed=7), Requester(user_id="doomed"))
            deadline = time.monotonic() + 30
            while not any(w.name == "w1" and w.busy for w in bot.status().workers):
                assert time.monotonic() < deadline, "w1 never took the job"
                await asyncio.sleep(0.05)
            workers.start("w2", NATS_ACK_WAIT=str(args.ack_wait))
            await wait_workers(bot, 2)
            while True:  # what w1 reported so far is not w2's progress
                try:
                    await stream.next(0.01)
                except TimeoutError:
                    break
            killed = time.perf_counter()
            workers.kill("w1")
            while True:
                event = await stream.next(120)
                if event.job.id == sub.job.id and event.kind == "progress":
                    break
            moved = time.perf_counter() - killed
            while (await stream.next(120)).kind != "done":
                pass
        result["failover"] = {"kill_to_progress_elsewhere_s": round(moved, 2), "ack_wait_s": args.ack_wait}
        await bot.stop()
    finally:
        workers.stop_all()
        server.stop()
    return result


def rounded(values: list[float], digits: int = 3) -> list[float]:
    """Each run's figure, rounded."""
    return [round(v, digits) for v in values]


def spread(values: list[float]) -> float:
    """How far apart the runs are: largest over smallest, minus one, in percent."""
    return round(100 * (max(values) / min(values) - 1), 1) if min(values) > 0 else float("inf")


def main() -> None:
    """Parse flags, run, print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ack-wait", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    emit(asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
