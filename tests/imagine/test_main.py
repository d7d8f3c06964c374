"""The whole service as operators run it: ``python -m bot`` (the name operators know; ``python -m imagine``
is the same entry point) in its own process, against the emulator.

These tests SIGKILL the real process and start it again on the same DATA_DIR.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from tests.support.discord_emulator import FakeDiscord
from tests.support.nats_server import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-bot-token"


class Service:
    """One ``python -m bot`` process with its captured output."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                await self.kill()
        return self.proc.returncode or 0


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """The emulator the service process talks to; a test fails if the service sent a body Discord refuses."""
    async with FakeDiscord(token=TOKEN) as emulator:
        yield emulator
    assert [str(v) for v in emulator.contract_violations] == [], "requests Discord would refuse (400 / 50035)"
    assert [str(v) for v in emulator.answer_violations] == [], "emulator answers shaped unlike Discord's"


@pytest.fixture
def service_env(fake: FakeDiscord, tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    """Environment for the service: emulator URLs, tiny model, private DATA_DIR, panel on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "ADMIN_", "MODEL_", "DATA_"))}
    env.update(DISCORD_TOKEN=TOKEN, DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url,
               MODEL_ID=str(tiny_model_dir), DEVICE="cpu", DATA_DIR=str(tmp_path / "data"),
               SIZES="64x64,512x512", DEFAULT_SIZE="64x64", DEFAULT_STEPS="2", FAST_LORA_ID="",
               ADMIN_PORT="0", ADMIN_PASSWORD="s3cret-admin-pass", PREVIEW_INTERVAL="0.5",
               HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT),
               PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def start_service(tmp_path: Path, service_env: dict[str, str], fake: FakeDiscord) -> Callable[..., Any]:
    """Start ``python -m bot`` and wait until its gateway session is up."""
    services: list[Service] = []

    async def start(**extra_env: str) -> Service:
        env = dict(service_env, **extra_env)
        log_path = tmp_path / f"service-{len(services)}.log"
        identifies = fake.identify_count
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=env,
                                                        stdout=log, stderr=log)
        service = Service(proc, log_path)
        services.append(service)
        await fake.wait_until(lambda: fake.identify_count > identifies or proc.returncode is not None,
                              timeout=90, what="the service to connect")
        assert proc.returncode is None, service.output
        return service

    yield start
    for service in services:
        if service.proc.returncode is None:
            service.proc.kill()


def _result_messages(fake: FakeDiscord, job_id: int) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values()
            if any(a["filename"].endswith(f"imagine-{job_id}-0.webp") for a in m.get("attachments", []))]


async def test_service_runs_imagine_end_to_end(fake: FakeDiscord, start_service):
    """The real entry point connects, syncs, answers /imagine with an image, and stops cleanly on SIGTERM."""
    service = await start_service()
    await fake.wait_until(lambda: bool(fake.commands()), timeout=30, what="command sync")
    inter = await fake.slash("imagine", {"prompt": "a red fox"})
    assert await inter.wait_acked(timeout=3) == 5
    await inter.wait_original(lambda m: bool(m.get("attachments")) and bool(m.get("embeds")), timeout=60)
    assert await service.stop() == 0


async def test_secrets_never_appear_in_the_output(fake: FakeDiscord, start_service):
    """Neither the bot token nor the admin password is printed or logged."""
    service = await start_service()
    await fake.wait_until(lambda: bool(fake.commands()), timeout=30, what="command sync")
    inter = await fake.slash("imagine", {"prompt": f"leak {TOKEN} s3cret-admin-pass"})
    await inter.wait_original(lambda m: bool(m.get("embeds")), timeout=60)
    await service.stop()
    assert TOKEN not in service.output and "s3cret-admin-pass" not in service.output
    assert "admin panel on http://127.0.0.1:" in service.output


async def test_the_service_prints_its_invite_link(fake: FakeDiscord, start_service):
    """Started with a token, the service prints the invite link with this application's id (the quick start's
    "logs the bot's invite link")."""
    service = await start_service()
    await fake.wait_until(lambda: "oauth2/authorize?client_id=" in service.output, timeout=30, what="the invite link")
    await service.stop()
    assert re.search(r"invite the bot to a server with https://discord\.com/oauth2/authorize\?client_id=\d+"
                     r"&scope=bot\+applications\.commands&permissions=274878024704", service.output)


async def test_sigkill_with_jobs_queued_and_running_loses_nothing(fake: FakeDiscord, start_service):
    """Killed mid-job, the restarted service finishes every job and delivers each exactly once.

    The restart happens past the interaction tokens' life, so results arrive as channel messages.
    A job delivered before the kill is neither generated nor delivered again.
    """
    service = await start_service()
    await fake.wait_until(lambda: bool(fake.commands()), timeout=30, what="command sync")
    quick = await fake.slash("imagine", {"prompt": "quick one"})
    await quick.wait_original(lambda m: bool(m.get("attachments")) and bool(m.get("embeds")), timeout=60)
    users = [fake.add_user(f"user{i}") for i in range(3)]
    slow = [await fake.slash("imagine", {"prompt": f"slow {i}", "size": "512x512", "steps": 25}, user=u)
            for i, u in enumerate(users)]
    for inter in slow:
        assert await inter.wait_acked(timeout=3) == 5
    # wait until the first slow job is generating (a progress edit with a step count)
    await fake.wait_until(lambda: any("step" in str((m or {}).get("content")) for m in
                                      (i.original for i in slow)), timeout=60, what="a running job")
    await service.kill()

    fake.clock.advance(16 * 60)  # every interaction token has expired by the time it is back
    service = await start_service()
    for job_id in (2, 3, 4):
        await fake.wait_until(lambda j=job_id: bool(_result_messages(fake, j)), timeout=240,
                              what=f"delivery of job {job_id}")
    await asyncio.sleep(1.0)  # anything delivered twice would show up by now
    await service.stop()
    for job_id in (1, 2, 3, 4):
        assert len(_result_messages(fake, job_id)) == 1, f"job {job_id}"
    requeued = re.search(r"re-queued \d+ job\(s\) that were running when the service stopped: \[([\d, ]*)\]",
                         service.output)
    assert requeued, service.output
    assert 1 not in {int(i) for i in requeued.group(1).split(",")}, "the finished job was queued again"


async def test_bad_model_id_keeps_the_service_up_with_a_clear_message(fake: FakeDiscord, start_service,
                                                                       tmp_path: Path):
    """A MODEL_ID that cannot load: /imagine explains it, and /status still works."""
    await start_service(MODEL_ID=str(tmp_path / "no-such-model"))
    await fake.wait_until(lambda: bool(fake.commands()), timeout=30, what="command sync")
    for _ in range(60):
        status = await fake.slash("status")
        await status.wait_acked(timeout=3)
        if "failed to load" in status.callbacks[0].json["data"]["content"]:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("the model never reported its failure")
    inter = await fake.slash("imagine", {"prompt": "anything"})
    assert await inter.wait_acked(timeout=3) == 4
    text = inter.callbacks[0].json["data"]["content"].replace("\\", "")  # markdown escapes
    assert "does not exist" in text and "MODEL_ID" in text


async def test_jobs_queued_before_a_model_failure_are_answered(fake: FakeDiscord, start_service, tmp_path: Path):
    """A job accepted while the model was loading gets the failure reason in its response."""
    await start_service(MODEL_ID=str(tmp_path / "no-such-model"))
    await fake.wait_until(lambda: bool(fake.commands()), timeout=30, what="command sync")
    inter = await fake.slash("imagine", {"prompt": "anything"})
    await inter.wait_acked(timeout=3)
    msg = await inter.wait_original(lambda m: "does not exist" in m["content"] or "unavailable" in m["content"],
                                    timeout=60)
    assert "MODEL_ID" in msg["content"].replace("\\", "")


async def panel_url(log_path: Path, proc: asyncio.subprocess.Process) -> str:
    """The panel's URL, read from a running service's log once it says where it listens."""
    url = None
    for _ in range(240):
        match = re.search(r"admin panel on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if match:
            url = match.group(1)
            break
        assert proc.returncode is None, log_path.read_text()
        await asyncio.sleep(0.5)
    assert url, log_path.read_text()
    return url


async def panel_status(log_path: Path, proc: asyncio.subprocess.Process) -> str:
    """The panel's Status table of a running service (its URL read from the log)."""
    url = await panel_url(log_path, proc)
    client = await asyncio.to_thread(Client, url + "/", auth=("admin", "s3cret-admin-pass"), verbose=False,
                                     analytics_enabled=False)
    try:
        table, _banner = await asyncio.to_thread(client.predict, api_name="/status")
    finally:
        await asyncio.to_thread(client.close)
    return table


async def test_unreachable_discord_keeps_the_panel_up_and_connects_later(tmp_path: Path,
                                                                          service_env: dict[str, str]):
    """Discord down at start: the panel and engine stay up, retries are logged, and once Discord is
    reachable the bot connects and answers /imagine."""
    port = free_port()
    env = dict(service_env, DISCORD_API_BASE=f"http://127.0.0.1:{port}/api/v10",
               DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{port}/gateway")
    log_path = tmp_path / "late-discord.log"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=env,
                                                    stdout=log, stderr=log)
    late = FakeDiscord(token=TOKEN)
    try:
        table = await panel_status(log_path, proc)
        assert "<th>Discord</th>" in table and ("reconnecting" in table or "connecting" in table), table
        for _ in range(60):
            if log_path.read_text(errors="replace").count("cannot reach Discord") >= 2:
                break
            await asyncio.sleep(0.5)
        assert proc.returncode is None, log_path.read_text()
        assert re.search(r"cannot reach Discord \(.+\); retrying in \d+ s", log_path.read_text()), log_path.read_text()

        await late.start(port=port)
        await late.wait_until(lambda: late.identify_count > 0, timeout=90, what="the service to connect")
        await late.wait_until(lambda: bool(late.commands()), timeout=30, what="command sync")
        inter = await late.slash("imagine", {"prompt": "a fox after the outage"})
        assert await inter.wait_acked(timeout=3) == 5
        await inter.wait_original(lambda m: bool(m.get("attachments")), timeout=60)
        for _ in range(30):
            table = await panel_status(log_path, proc)
            if ">connected<" in table:
                break
            await asyncio.sleep(0.5)
        assert ">connected<" in table, table
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        await late.stop()
    assert code == 0, log_path.read_text()
    assert [str(v) for v in late.contract_violations] == []


async def test_wrong_token_stops_with_a_clear_message(fake: FakeDiscord, tmp_path: Path,
                                                      service_env: dict[str, str]):
    """A token Discord rejects is not retried: the service stops and says what to do."""
    env = dict(service_env, DISCORD_TOKEN="not-the-bot-token")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1, out.decode(errors="replace")
    assert b"Discord rejected DISCORD_TOKEN" in out and b"retrying" not in out


async def test_corrupt_database_stops_start_with_a_clear_message(tmp_path: Path, service_env: dict[str, str]):
    """A corrupt database file: the service exits with a message saying what to do."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "imagine.sqlite3").write_bytes(b"this is not a database" * 100)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=service_env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1
    assert b"corrupt" in out and b"move it aside" in out


@pytest.mark.parametrize("module", ["bot", "imagine"])
async def test_without_token_runs_the_panel_only(tmp_path: Path, service_env: dict[str, str], module: str):
    """No DISCORD_TOKEN: the service says so and serves the admin panel (login required), under both names."""
    import httpx

    env = dict(service_env, DISCORD_TOKEN="")
    log_path = tmp_path / "panel-only.log"
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, cwd=tmp_path, env=env,
                                                    stdout=log, stderr=log)
    try:
        url = await panel_url(log_path, proc)
        async with httpx.AsyncClient() as client:
            page = await client.get(url + "/")
        assert page.status_code == 401
        assert "admin panel only" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
