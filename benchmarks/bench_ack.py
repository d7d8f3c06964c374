"""Acknowledgement latency of /imagine under a burst, through unmodified discord.py and the emulator.

Sends N concurrent /imagine commands from U users while the GPU worker is generating, and measures,
on the emulator's side, the time from dispatching each INTERACTION_CREATE to receiving its callback.
The baseline, in the same process, is a bare discord.py bot whose handler does nothing but defer:
the floor that discord.py, the gateway and loopback HTTP impose. Also reports event-loop lag.

usage: python benchmarks/bench_ack.py [--commands 100] [--users 25]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import discord  # noqa: E402
import yarl  # noqa: E402
from discord import app_commands  # noqa: E402

from bot.bot_settings import BotSettings  # noqa: E402
from bot.client import ImagineBot, point_at_discord  # noqa: E402
from engine.engine_settings import EngineSettings  # noqa: E402
from engine.gpu.tiny_model import save_tiny_model  # noqa: E402
from engine.service import Engine  # noqa: E402
from tests.support.discord_emulator import FakeDiscord, run_client  # noqa: E402

TOKEN = "bench-token"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class LoopLag:
    """Samples how late a 10 ms timer fires: the event loop's responsiveness."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(time.perf_counter() - start - 0.01)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def _burst(fake: FakeDiscord, commands: int, users: int, *, answered: bool = False) -> list[float]:
    """Dispatch the burst; returns each command's acknowledgement latency.

    With ``answered`` it also waits until every response was edited (queue position), so that
    tearing the bot down afterwards cuts no request short.
    """
    people = [fake.add_user(f"bench{i}") for i in range(users)]
    handles = await asyncio.gather(*(fake.slash("imagine", {"prompt": f"burst {i}"}, user=people[i % users])
                                     for i in range(commands)))
    for h in handles:
        await h.wait_acked(timeout=10)
    if answered:
        await fake.wait_until(lambda: all(h.original and h.original.get("content") for h in handles), timeout=60,
                              what="every response edited")
    return [h.callbacks[0].time - h.created_at for h in handles]


@contextlib.asynccontextmanager
async def bare_defer_bot() -> AsyncIterator[FakeDiscord]:
    """The emulator with a bare discord.py bot connected whose /imagine only defers: the floor that discord.py, the
    gateway and loopback HTTP impose (every benchmark's baseline for acknowledgements)."""
    async with FakeDiscord(token=TOKEN) as fake:
        discord.http.Route.BASE = fake.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
        client = discord.Client(intents=discord.Intents(guilds=True), guild_ready_timeout=0.1)
        tree = app_commands.CommandTree(client)

        @tree.command(name="imagine", description="bench")
        async def imagine(interaction: discord.Interaction, prompt: str) -> None:
            await interaction.response.defer(thinking=True)

        async with run_client(client, TOKEN, ready_timeout=15):
            await tree.sync()
            yield fake


async def baseline(commands: int, users: int) -> list[float]:
    """A bare discord.py bot that only defers."""
    async with bare_defer_bot() as fake:
        return await _burst(fake, commands, users)


async def product(commands: int, users: int, model_dir: Path, data_dir: Path,
                  busy: bool = True) -> tuple[list[float], list[float]]:
    """The real bot; with ``busy`` the engine generates on the tiny model meanwhile."""
    settings = EngineSettings(_env_file=None, model_id=str(model_dir), device="cpu", data_dir=data_dir,
                              sizes="64x64,256x256", default_size="256x256", default_steps=20,
                              per_user_cap=max(4, commands // users + 1), queue_cap=commands * 2,
                              fast_lora_id="")
    hold = threading.Event()
    async with FakeDiscord(token=TOKEN) as fake:
        bot_settings = BotSettings(_env_file=None, discord_token=TOKEN, discord_api_base=fake.api_base,
                                   discord_gateway_url=fake.gateway_url)
        point_at_discord(bot_settings)
        async with Engine(settings) as engine:
            await engine.wait_ready(120)
            bot = ImagineBot(engine, bot_settings, guild_ready_timeout=0.1)
            async with run_client(bot, TOKEN, ready_timeout=30):
                if busy:
                    # keep the worker busy first, so the burst lands while the "GPU" computes
                    warm = await fake.slash("imagine", {"prompt": "keep busy", "steps": 40},
                                            user=fake.add_user("warm"))
                    await warm.wait_acked(10)
                    await fake.wait_until(lambda: engine.status().running > 0, timeout=30, what="busy worker")
                else:
                    engine.before_batch = lambda jobs: hold.wait(60)  # hold the worker: no compute at all
                with LoopLag() as lag:
                    latencies = await _burst(fake, commands, users, answered=True)
                for job in engine.queue_snapshot():
                    await engine.cancel(job.job.id)
                hold.set()
                await asyncio.sleep(1.0)  # let the cancellation edits finish before the bot closes
                return latencies, lag.samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--users", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_model(Path(tmp) / "tiny")
        base = await baseline(args.commands, args.users)
        ours, lag = await product(args.commands, args.users, model_dir, Path(tmp) / "data")
        idle, _ = await product(args.commands, args.users, model_dir, Path(tmp) / "data-idle", busy=False)

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50_ms": round(1000 * statistics.median(values), 1), "p99_ms": round(1000 * _pct(values, 0.99), 1),
                "max_ms": round(1000 * max(values), 1)}

    result: dict[str, Any] = {
        "benchmark": "ack_latency", "commands": args.commands, "users": args.users,
        "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
        "baseline_bare_defer": summary(base), "imagine_with_busy_worker": summary(ours),
        "imagine_with_idle_worker": summary(idle),
        "ratio_p99_vs_baseline": round(_pct(ours, 0.99) / max(1e-6, _pct(base, 0.99)), 2),
        "event_loop_lag_during_burst": {"p50_ms": round(1000 * statistics.median(lag), 1),
                                        "p99_ms": round(1000 * _pct(lag, 0.99), 1),
                                        "max_ms": round(1000 * max(lag), 1)},
        "targets": {"ack_p99_ms": 300, "all_under_ms": 3000, "loop_lag_ms": 50},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
