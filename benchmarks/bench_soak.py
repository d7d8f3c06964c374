"""Soak: a thousand jobs from 25 Discord users and the panel at once, on the tiny model. Prints JSON.

One process and one event loop, as the service runs: the engine on the tiny model, the real bot
(unmodified discord.py against the emulator in tests/support, as in bench_ack.py) and the admin
panel served by uvicorn. While the users keep up to --in-flight jobs each queued, the panel gets
Playground jobs through its HTTP API, a status call every 0.5 s (each one a new Gradio session),
a right login every 2 s from one address and a wrong one every 0.5 s from another.

Reports what the hardening promises: accepted jobs, and among them failed, lost (never delivered)
and delivered twice, which must all be 0; RSS every --rss-every finished jobs (the curve) and its
growth after the warm-up; event-loop lag (a 10 ms sleeper) p50/p99/max, target p99 < 50 ms; the
/imagine acknowledgement latency; the panel's status and login latencies and its Gradio session
counts at the end. The emulator shares the bot's event loop, so the lag includes its side of every
request; its request log and finished interactions are trimmed as the run goes (RecentRequests), so the
RSS curve is the service's, not the test tool's.

Usage: python benchmarks/bench_soak.py [--jobs 1000] [--users 25] [--panel-jobs 40] [--steps 30] [--out FILE]
(about 1.5 minutes on 2 cores; --jobs 3000 about 5).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402
import psutil  # noqa: E402

from admin_ui.admin_settings import AdminSettings  # noqa: E402
from admin_ui.server import AdminServer  # noqa: E402
from benchmarks.bench_engine_cpu import LagProbe, cpu_model, emit, percentile  # noqa: E402
from bot.bot_settings import BotSettings  # noqa: E402
from bot.client import ImagineBot, point_at_discord  # noqa: E402
from engine.engine_settings import EngineSettings  # noqa: E402
from engine.gpu.tiny_model import save_tiny_model  # noqa: E402
from engine.service import Engine  # noqa: E402
from tests.support.discord_emulator import FakeDiscord, FakeInteraction, run_client  # noqa: E402

TOKEN = "soak-token"
PASSWORD = "soak-password-0123"
RESULT_NAME = re.compile(r"imagine-(\d+)-0\.")
DELIVERY_TIMEOUT = 300.0
FORGET_AFTER = 10.0


class RecentRequests(list):  # type: ignore[type-arg]
    """The emulator's request log, keeping only the latest ``keep`` records, and counting deliveries.

    The emulator records every request with its body, response and uploaded files for tests to
    assert on, and keeps every message and interaction; over thousands of jobs that is tens of MB of
    the test tool's memory in this process, which would hide the service's own curve. The soak reads
    a record only right after it arrives, and counts here, as each request is answered, the accepted
    uploads of each job's result: two for one job is a result delivered twice.
    """

    def __init__(self, keep: int) -> None:
        super().__init__()
        self.keep = keep
        self.uploads: Counter[int] = Counter()

    def append(self, record: Any) -> None:
        """Record a request (the emulator calls this once it answered it)."""
        if 200 <= record.status < 300:
            self.uploads.update({int(m.group(1)) for name in record.file_names if (m := RESULT_NAME.search(name))})
        super().append(record)
        if len(self) > 2 * self.keep:
            del self[: len(self) - self.keep]


async def trim_emulator(fake: FakeDiscord, stop: asyncio.Event) -> None:
    """Drop what the emulator keeps for tests and the soak never reads again: the bytes of uploaded
    images, and the gateway events each session holds for a RESUME (no connection drops here)."""
    while not stop.is_set():
        fake._attachment_data.clear()
        for session in fake._sessions.values():
            del session.history[:-1000]
        await asyncio.sleep(1.0)


def forget_interaction(fake: FakeDiscord, inter: FakeInteraction) -> None:
    """Drop a finished interaction's messages and state from the emulator (a late second delivery would
    still be counted by RecentRequests, and fail or fall back to a channel message that is counted too)."""
    for message_id in (inter.original_message_id, *inter.followup_ids):
        if message_id is not None:
            fake.messages.pop(message_id, None)
    fake.interactions.pop(inter.id, None)
    fake._by_token.pop(inter.token, None)
    fake._rate_windows.pop(inter.token, None)


class Soak:
    """Counters and samples of one run."""

    def __init__(self, rss_every: int) -> None:
        self.rss_every = rss_every
        self.process = psutil.Process()
        self.started = time.perf_counter()
        self.finished = 0
        self.rss: list[dict[str, float]] = []
        self.accepted = self.refused = self.failed = self.lost = 0
        self.panel_accepted = self.panel_failed = self.panel_lost = 0
        self.refusals: Counter[str] = Counter()
        self.ack: list[float] = []
        self.status_ms: list[float] = []
        self.login_ms: list[float] = []
        self.wrong_logins: Counter[int] = Counter()

    def one_finished(self) -> None:
        """Count a finished job; sample RSS every ``rss_every``."""
        self.finished += 1
        if self.finished % self.rss_every == 0:
            self.rss.append({"jobs": self.finished, "rss_mb": round(self.process.memory_info().rss / 2**20, 1),
                             "seconds": round(time.perf_counter() - self.started, 1)})


def _outcome(message: dict[str, Any] | None) -> str | None:
    if not message:
        return None
    if message.get("attachments"):
        return "delivered"
    if str(message.get("content", "")).startswith("\u274c"):
        return "failed"
    return None


async def discord_user(fake: FakeDiscord, user: Any, jobs: int, in_flight: int, soak: Soak) -> None:
    """One member sending ``jobs`` /imagine, never more than ``in_flight`` unfinished at once.

    A finished interaction is forgotten by the emulator FORGET_AFTER seconds later (see RecentRequests).
    """
    slots = asyncio.Semaphore(in_flight)
    loop = asyncio.get_running_loop()

    async def one(index: int) -> None:
        async with slots:
            inter: FakeInteraction = await fake.slash("imagine", {"prompt": f"soak {user.username} {index}"},
                                                      user=user)
            kind = await inter.wait_acked(timeout=10)
            soak.ack.append(inter.callbacks[0].time - inter.created_at)
            if kind != 5:  # an instant refusal (per-user cap, full queue)
                soak.refused += 1
                soak.refusals[str(inter.callbacks[0].json["data"].get("content", ""))[:60]] += 1
                return
            soak.accepted += 1
            try:
                message = await inter.wait_original(lambda m: _outcome(m) is not None, timeout=DELIVERY_TIMEOUT)
            except TimeoutError:
                soak.lost += 1
                return
            if _outcome(message) == "failed":
                soak.failed += 1
            soak.one_finished()
            loop.call_later(FORGET_AFTER, forget_interaction, fake, inter)

    await asyncio.gather(*(one(i) for i in range(jobs)))


async def panel_jobs(c: httpx.AsyncClient, jobs: int, soak: Soak) -> None:
    """Playground jobs one after another through the panel's HTTP API (they go ahead of Discord users)."""
    for index in range(jobs):
        joined = await c.post("/gradio_api/call/generate",
                              json={"data": [f"panel soak {index}", "", "64x64", 2, 5.0, index, 1, "euler", False]})
        if joined.status_code != 200:
            soak.panel_failed += 1
            continue
        soak.panel_accepted += 1
        try:
            stream = await c.get(f"/gradio_api/call/generate/{joined.json()['event_id']}", timeout=DELIVERY_TIMEOUT)
        except httpx.TimeoutException:
            soak.panel_lost += 1
            continue
        if "event: complete" in stream.text and "Done: job #" in stream.text:
            soak.one_finished()
        elif "event: complete" in stream.text or "event: error" in stream.text:
            soak.panel_failed += 1
        else:
            soak.panel_lost += 1


async def status_poller(c: httpx.AsyncClient, stop: asyncio.Event, soak: Soak) -> None:
    """A status call every 0.5 s, as a monitoring script would make it (each a new Gradio session)."""
    while not stop.is_set():
        started = time.perf_counter()
        joined = await c.post("/gradio_api/call/status", json={"data": []})
        result = await c.get(f"/gradio_api/call/status/{joined.json()['event_id']}")
        assert "event: complete" in result.text, result.text
        soak.status_ms.append(1000 * (time.perf_counter() - started))
        await asyncio.sleep(0.5)


async def logins(url: str, stop: asyncio.Event, soak: Soak) -> None:
    """The operator logging in every 2 s from 127.0.0.1 while someone guesses from 127.0.0.2."""
    guesser = httpx.AsyncClient(base_url=url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
    operator = httpx.AsyncClient(base_url=url)

    async def guess() -> None:
        while not stop.is_set():
            response = await guesser.post("/login", data={"username": "admin", "password": "guess"})
            soak.wrong_logins[response.status_code] += 1
            await asyncio.sleep(0.5)

    async def log_in() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            response = await operator.post("/login", data={"username": "admin", "password": PASSWORD})
            assert response.status_code == 200, response.text
            soak.login_ms.append(1000 * (time.perf_counter() - started))
            await asyncio.sleep(2.0)

    async with guesser, operator:
        await asyncio.gather(guess(), log_in())


def summary_ms(values: list[float], scale: float = 1.0) -> dict[str, float]:
    """p50/p99/max of ``values`` (times ``scale``), in ms."""
    if not values:
        return {}
    return {"p50": round(scale * statistics.median(values), 1), "p99": round(scale * percentile(values, 99), 1),
            "max": round(scale * max(values), 1), "n": len(values)}


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The soak itself; returns the result."""
    model_dir = save_tiny_model(tmp / "tiny")
    settings = EngineSettings(_env_file=None, model_id=str(model_dir), device="cpu", data_dir=tmp / "data",
                              sizes="64x64", default_size="64x64", default_steps=args.steps, fast_lora_id="",
                              preview_interval=0, per_user_cap=args.in_flight + 1, queue_cap=400, max_batch=4)
    soak = Soak(args.rss_every)
    per_user = -(-args.jobs // args.users)
    async with FakeDiscord(token=TOKEN) as fake:
        requests = fake.requests = RecentRequests(keep=500)
        bot_settings = BotSettings(_env_file=None, discord_token=TOKEN, discord_api_base=fake.api_base,
                                   discord_gateway_url=fake.gateway_url)
        point_at_discord(bot_settings)
        async with Engine(settings) as engine:
            assert await engine.wait_ready(120), engine.model_error
            panel = AdminServer(engine, AdminSettings(_env_file=None, ADMIN_PORT=0, ADMIN_PASSWORD=PASSWORD),
                                settings.data_dir, discord_state=lambda: "connected")
            await panel.start()
            bot = ImagineBot(engine, bot_settings, guild_ready_timeout=0.1)
            try:
                async with run_client(bot, TOKEN, ready_timeout=30):
                    users = [fake.add_user(f"soak{i}") for i in range(args.users)]
                    url = panel.url.rstrip("/")
                    stop = asyncio.Event()
                    probe = LagProbe()
                    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
                        assert (await c.post("/login", data={"username": "admin", "password": PASSWORD})).is_success
                        soak.started = time.perf_counter()
                        probe.start()
                        background = [asyncio.create_task(status_poller(c, stop, soak)),
                                      asyncio.create_task(logins(url, stop, soak)),
                                      asyncio.create_task(trim_emulator(fake, stop))]
                        await asyncio.gather(panel_jobs(c, args.panel_jobs, soak),
                                             *(discord_user(fake, u, per_user, args.in_flight, soak) for u in users))
                        seconds = time.perf_counter() - soak.started
                        await probe.stop()
                        stop.set()
                        await asyncio.gather(*background)
                    await asyncio.sleep(2.0)  # a second delivery of anything would have arrived by now
                    per_job = requests.uploads
                    failed_in_store = len(await asyncio.to_thread(engine.store.in_states, ["failed"]))
                    unfinished = len(await asyncio.to_thread(engine.store.in_states, ["queued", "running"]))
                    sessions = panel.session_counts()
            finally:
                await panel.stop()
    growth = soak.rss[-1]["rss_mb"] - soak.rss[min(1, len(soak.rss) - 1)]["rss_mb"] if soak.rss else 0.0
    lag = summary_ms(probe.lags, 1000)
    result: dict[str, Any] = {
        "benchmark": "soak", "date": dt.date.today().isoformat(), "machine": cpu_model(), "cores": os.cpu_count(),
        "python": platform.python_version(),
        "config": {"discord_jobs": per_user * args.users, "users": args.users, "panel_jobs": args.panel_jobs,
                   "in_flight_per_user": args.in_flight, "size": "64x64", "steps": args.steps, "max_batch": 4},
        "jobs": {"accepted": soak.accepted + soak.panel_accepted, "discord_accepted": soak.accepted,
                 "panel_accepted": soak.panel_accepted, "refused": soak.refused, "refusals": dict(soak.refusals),
                 "finished": soak.finished, "failed": soak.failed + soak.panel_failed,
                 "failed_in_store": failed_in_store, "lost": soak.lost + soak.panel_lost,
                 "unfinished_in_store": unfinished,
                 "delivered_twice": sum(1 for count in per_job.values() if count > 1),
                 "discord_results_seen": len(per_job)},
        "seconds": round(seconds, 1), "jobs_per_second": round(soak.finished / seconds, 2),
        "rss_curve": soak.rss, "rss_growth_after_first_sample_mb": round(growth, 1),
        "event_loop_lag_ms": lag, "ack_ms": summary_ms(soak.ack, 1000),
        "panel": {"status_ms": summary_ms(soak.status_ms), "right_login_ms": summary_ms(soak.login_ms),
                  "wrong_logins_by_status": {str(k): v for k, v in sorted(soak.wrong_logins.items())},
                  "gradio_sessions_at_end": sessions},
        "targets": {"failed": 0, "lost": 0, "delivered_twice": 0, "event_loop_lag_p99_ms": 50},
    }
    jobs = result["jobs"]
    result["ok"] = (jobs["failed"] == 0 and jobs["failed_in_store"] == 0 and jobs["lost"] == 0
                    and jobs["delivered_twice"] == 0 and jobs["unfinished_in_store"] == 0
                    and lag.get("p99", 1e9) < 50)
    return result


def main() -> None:
    """Parse the options, run the soak, print (and write) the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="Discord /imagine jobs in all")
    parser.add_argument("--users", type=int, default=25)
    parser.add_argument("--panel-jobs", type=int, default=40)
    parser.add_argument("--in-flight", type=int, default=3, help="unfinished jobs per user at once")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps (64x64 on the tiny model)")
    parser.add_argument("--rss-every", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    emit(result, args.out)
    jobs = result["jobs"]
    print(f"soak: {jobs['accepted']} accepted, {jobs['failed']} failed, {jobs['lost']} lost, "
          f"{jobs['delivered_twice']} delivered twice; loop lag p99 {result['event_loop_lag_ms'].get('p99')} ms; "
          f"RSS {[p['rss_mb'] for p in result['rss_curve']]} MB; ok={result['ok']}", file=sys.stderr)


if __name__ == "__main__":
    main()
