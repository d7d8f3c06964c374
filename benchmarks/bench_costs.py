"""A year of jobs and a deep queue: /imagine's acknowledgement, the position edit, History search, a retention sweep,
start-up and event-loop lag, through unmodified discord.py and the emulator. Prints JSON.

The store holds ``--jobs`` finished jobs (default a million, one year of a busy bot, written in the project's own
schema, one every ~31 s, so today's quota window holds ~2 700 of them), the newest ``--kept`` (30 days' worth) still
with result files. The engine runs on the tiny model with its worker held, so the queue stays as deep as each phase
sets it: 10 jobs from 10 members, 1 000 from 100 and 5 000 from 1 000 (submitted through the one admission path).

Each depth runs three phases of ``--seconds`` at ``--rate`` /imagine per second from new members:

* ``alone``: the stream only;
* ``search``: the panel's History search (a rare phrase and a common word, in turn) runs meanwhile, non-stop;
* ``sweep``: retention (RETENTION_DAYS=30 and RETENTION_MAX_GB, both rules on) runs meanwhile, non-stop: the steady
  sweep, after a first one measured every kept result once.

Per phase: acknowledgement p50/p99/max and how many missed Discord's 3 s; the time until the member's message shows
the queue position (p99); event-loop lag p99/max; the search and sweep times; the garbage collector's pauses (the
emulator runs in the same process, and its records of each phase are dropped after it). Per depth: the queue's own
position and snapshot costs, and one full collection with that many jobs queued. The baseline, in the same process,
is a bare discord.py bot that only defers, at the same rate. Also: start-up on the full store, and a full garbage
collection with start-up's objects frozen (as the engine leaves them) and unfrozen.

Usage: ``python benchmarks/bench_costs.py [--jobs 1000000] [--rate 40] [--seconds 10] [--out FILE]`` (about
10 minutes on 2 cores at a million jobs, half of it writing the store). Targets (issue "Costs"): acknowledgement
p99 under 300 ms and none missed at 5 000 queued, loop lag under 50 ms, the same acknowledgement with a search or
a sweep running, a steady sweep at a million jobs under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks.bench_ack import TOKEN, LoopLag, _pct, bare_defer_bot  # noqa: E402
from benchmarks.bench_engine_cpu import cpu_model, emit  # noqa: E402
from benchmarks.bench_history import fill  # noqa: E402
from bot.bot_settings import BotSettings  # noqa: E402
from bot.client import ImagineBot, point_at_discord  # noqa: E402
from engine.engine_settings import EngineSettings  # noqa: E402
from engine.gpu.tiny_model import save_tiny_model  # noqa: E402
from engine.jobs.records import Requester  # noqa: E402
from engine.jobs.store import JobStore  # noqa: E402
from engine.ops.heap import freeze_long_lived  # noqa: E402
from engine.requests.params import ParamRequest  # noqa: E402
from engine.service import Engine  # noqa: E402
from tests.support.discord_emulator import FakeDiscord, run_client  # noqa: E402

YEAR = 365 * 86400.0
DEPTHS = ((10, 10), (1000, 100), (5000, 1000))  # (queued jobs, members who queued them)


def ms(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` (seconds) in milliseconds."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(1000 * statistics.median(values), 1),
            "p99_ms": round(1000 * _pct(values, 0.99), 1), "max_ms": round(1000 * max(values), 1)}


async def stream(fake: FakeDiscord, rate: float, seconds: float, tag: str) -> list[Any]:
    """``rate`` /imagine per second for ``seconds``, each from a new member, on a fixed timetable (a slow bot does
    not slow the senders down); returns the interactions."""
    handles, sends = [], []
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        user = fake.add_user(f"{tag}-{i}")
        sends.append(asyncio.create_task(fake.slash("imagine", {"prompt": f"{tag} fox {i}"}, user=user)))
    handles = await asyncio.gather(*sends)
    with_deadline = time.perf_counter() + 15
    while time.perf_counter() < with_deadline and not all(h.acked for h in handles):
        await asyncio.sleep(0.1)
    return list(handles)


def answered(fake: FakeDiscord, handles: list[Any]) -> tuple[list[float], int]:
    """Each interaction's acknowledgement latency (the first callback the emulator accepted), and how many were
    never acknowledged within Discord's 3 s."""
    first: dict[str, float] = {}
    for request in fake.requests:
        if request.path.startswith("/interactions/") and 200 <= request.status < 300:
            first.setdefault(request.path.split("/")[2], request.time)
    latencies = [first[str(h.id)] - h.created_at for h in handles if str(h.id) in first]
    return latencies, sum(1 for h in handles if str(h.id) not in first or first[str(h.id)] - h.created_at > 3.0)


async def position_shown(fake: FakeDiscord, handles: list[Any]) -> list[float]:
    """Seconds from each command until its message showed the queue position."""
    await fake.wait_until(lambda: all(_shows_position(h.original) for h in handles), timeout=60,
                          what="every position shown")
    shown: dict[str, float] = {}
    tokens = {h.token: h for h in handles}
    for request in fake.requests:
        h = tokens.get(request.token or "")
        if h is not None and request.method == "PATCH" and "@original" in request.path and 200 <= request.status < 300:
            shown.setdefault(h.token, request.time - h.created_at)
    return list(shown.values())


def _shows_position(message: dict[str, Any] | None) -> bool:
    """Whether the member's message says where the job waits (bot/render.py queued_text)."""
    text = f"{message.get('content') or ''} {message.get('embeds') or ''}" if message else ""
    return "position" in text or "next in line" in text


class GcWatch:
    """The garbage collector's pauses while it is entered (by generation): what a loop stall may be made of."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        """Count and longest pause of each generation's collections, in milliseconds."""
        return {f"gen{g}": {"n": len(p), "max_ms": round(1000 * max(p, default=0.0), 1)}
                for g, p in self.pauses.items()}


async def busy_loop(work: Callable[[], Awaitable[Any]], stop: asyncio.Event) -> list[float]:
    """Run ``work`` back to back until ``stop``; returns each run's seconds."""
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0)
    return times


async def phase(fake: FakeDiscord, engine: Engine, args: argparse.Namespace, tag: str,
                background: Callable[[], Awaitable[Any]] | None) -> dict[str, Any]:
    """One stream, with ``background`` work running non-stop beside it; the stream's jobs are cancelled after."""
    stop = asyncio.Event()
    side = asyncio.create_task(busy_loop(background, stop)) if background else None
    with LoopLag() as lag, GcWatch() as collector:
        handles = await stream(fake, args.rate, args.seconds, tag)
    stop.set()
    side_times = await side if side else []
    latencies, missed = answered(fake, handles)
    shown = await position_shown(fake, handles)
    for job in engine.queue_snapshot():
        if job.job.requester.user_name.startswith(tag) or job.job.params.prompt.startswith(tag):
            await engine.cancel(job.job.id)
    fake.requests.clear()  # the emulator's record of every request, read above: it would swell the collector's walks
    result = {"commands": len(handles), "ack": ms(latencies), "missed_3s": missed, "position_shown": ms(shown),
              "loop_lag": ms(lag.samples), "gc_pauses": collector.summary()}
    if side_times:
        result["background_runs"] = ms(side_times)
    return result


async def top_up(engine: Engine, depth: int, members: int) -> None:
    """Submit through the admission path until ``depth`` jobs wait, from ``members`` members."""
    params = engine.resolve(ParamRequest(prompt="a queued lighthouse"))
    have = len(engine.queue_snapshot())
    for i in range(have, depth):
        await engine.submit(params, Requester(f"m{i % members}", f"member {i % members}", source="panel"))


def queue_costs(engine: Engine) -> dict[str, float]:
    """Median milliseconds of the queue's own views at the current depth."""
    snapshot = engine.queue_snapshot()
    last = snapshot[-1].job.id
    out = {}
    for name, call in (("positions_all", engine.positions), ("position_last", lambda: engine.position(last)),
                       ("snapshot", engine.queue_snapshot)):
        times = []
        for _ in range(20):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        out[f"{name}_ms"] = round(1000 * statistics.median(times), 3)
    return out


async def baseline(args: argparse.Namespace) -> dict[str, Any]:
    """A bare discord.py bot that only defers, at the same rate."""
    async with bare_defer_bot() as fake:
        with LoopLag() as lag:
            handles = await stream(fake, args.rate, args.seconds, "base")
        latencies, missed = answered(fake, handles)
        return {"ack": ms(latencies), "missed_3s": missed, "loop_lag": ms(lag.samples)}


def full_collection_ms() -> float:
    """Milliseconds of one full garbage collection, now."""
    started = time.perf_counter()
    gc.collect()
    return round(1000 * (time.perf_counter() - started), 1)


async def product(args: argparse.Namespace, work: Path, result: dict[str, Any]) -> None:
    """The store filled, the engine started on it, the bot connected; then every depth's phases."""
    model_dir = save_tiny_model(work / "tiny")
    data_dir = work / "data"
    settings = EngineSettings(_env_file=None, model_id=str(model_dir), device="cpu", data_dir=data_dir,
                              sizes="64x64,256x256", default_size="64x64", default_steps=4, fast_lora_id="",
                              per_user_cap=1000, queue_cap=100_000, retention_days=30,
                              retention_max_gb=2 * args.kept * 1000 / 2**30)
    async with FakeDiscord(token=TOKEN) as fake:
        guild = str(fake.default_guild.id)
        store = JobStore(settings.db_path)
        started = time.perf_counter()
        step = YEAR / args.jobs
        fill(store, args.jobs, args.kept, work, start=time.time() - YEAR, step=step, guild=guild, source="discord")
        store.close()
        result["fill_s"] = round(time.perf_counter() - started, 1)
        bot_settings = BotSettings(_env_file=None, discord_token=TOKEN, discord_api_base=fake.api_base,
                                   discord_gateway_url=fake.gateway_url)
        point_at_discord(bot_settings)
        engine = Engine(settings)
        started = time.perf_counter()
        await engine.start()
        result["startup_s"] = round(time.perf_counter() - started, 2)
        hold = threading.Event()
        try:
            engine.before_batch = lambda jobs: hold.wait(3600)  # the worker holds its first batch: the queue stays
            await engine.wait_ready(120)
            # the engine froze start-up's objects (engine/ops/heap.py); a full collection with and without that
            result["full_gc_ms"] = {"frozen": full_collection_ms()}
            gc.unfreeze()
            result["full_gc_ms"]["unfrozen"] = full_collection_ms()
            freeze_long_lived("benchmark")
            started = time.perf_counter()
            await engine.cleanup()  # the first sweep measures every kept result once (start-up's may overlap it)
            result["first_sweep_s"] = round(time.perf_counter() - started, 2)
            bot = ImagineBot(engine, bot_settings, guild_ready_timeout=0.1)
            async with run_client(bot, TOKEN, ready_timeout=30):
                for depth, members in DEPTHS:
                    await top_up(engine, depth, members)
                    key = f"{depth}_queued_{members}_members"
                    result["depths"][key] = {"queue": queue_costs(engine), "full_gc_ms": full_collection_ms()}
                    searches = iter(("purple walrus", "fox") * 100_000)
                    for name, background in (
                            ("alone", None),
                            ("search", lambda: engine.history(text=next(searches), limit=60)),
                            ("sweep", engine.cleanup)):
                        print(f"{key}: {name}", file=sys.stderr)
                        result["depths"][key][name] = await phase(fake, engine, args, f"{key}-{name}", background)
                for entry in engine.queue_snapshot():
                    await engine.cancel(entry.job.id)
                await asyncio.sleep(1.0)  # the cancellation edits finish before the bot closes
        finally:
            hold.set()
            gc.unfreeze()
            await engine.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--kept", type=int, default=82_000,
                        help="newest jobs that still have result files (default: 30 days of a million a year)")
    parser.add_argument("--rate", type=float, default=40.0, help="/imagine per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase's stream")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "bench_costs", "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                              "cpu_count": os.cpu_count(), "jobs": args.jobs, "kept": args.kept, "rate": args.rate,
                              "seconds": args.seconds, "depths": {}}
    result["baseline_bare_defer"] = await baseline(args)
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as tmp:
        await product(args, Path(tmp), result)
    result["targets"] = {"ack_p99_ms": 300, "missed_3s": 0, "loop_lag_p99_ms": 50, "sweep_s": 1.0}
    emit(result, args.out)


if __name__ == "__main__":
    asyncio.run(main())
