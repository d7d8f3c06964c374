"""Constants and helpers shared by the admin panel tests (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from admin_ui.admin_settings import AdminSettings
from engine.jobs.records import Job, Requester
from engine.requests.params import ParamRequest
from engine.service import Engine

USER = "admin"
PASSWORD = "test-password-123"
GUILDS = {"111": "Fox Den", "222": "Pixel Club"}
CHROMIUM = "/usr/bin/chromium"


def admin_settings(**values: Any) -> AdminSettings:
    """Settings as the environment would give them, without reading a developer's .env."""
    values.setdefault("ADMIN_HOST", "127.0.0.1")
    values.setdefault("ADMIN_PORT", 0)  # any free port
    return AdminSettings(_env_file=None, **values)


async def run_job(engine: Engine, prompt: str, *, user_id: str = "u1", user_name: str = "alice",
                  guild_id: str | None = "111", count: int = 1) -> Job:
    """Submit a Discord-style job straight to the engine and wait until it is done."""
    params = engine.resolve(ParamRequest(prompt=prompt, count=count), guild_id)
    with engine.subscribe(None) as stream:
        submission = await engine.submit(params, Requester(user_id=user_id, user_name=user_name, guild_id=guild_id))
        while True:
            event = await stream.next(timeout=60)
            if event.job.id == submission.job.id and event.kind in ("done", "failed", "cancelled"):
                assert event.kind == "done", event.job.error
                return event.job
