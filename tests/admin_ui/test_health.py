"""/healthz, /readyz and /metrics on the panel's port: no login, nothing revealed, metrics behind their token."""

from __future__ import annotations

import threading

import httpx
from prometheus_client.parser import text_string_to_metric_families

from admin_ui.server import AdminServer
from engine.gpu.local_worker import default_loader
from engine.service import Engine
from tests.admin_ui.support import PASSWORD, USER, admin_settings

TOKEN = "metrics-token-0123456789"


async def test_healthz_answers_without_login(http: httpx.AsyncClient) -> None:
    """The process is up: 200 with nothing but a status."""
    answer = await http.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


async def test_readyz_is_ready_when_the_model_is_loaded_without_a_bot(http: httpx.AsyncClient) -> None:
    """Panel-only (no Discord bot here) with the model loaded: ready."""
    answer = await http.get("/readyz")
    assert answer.status_code == 200 and answer.json() == {"ready": True}


async def test_readyz_is_not_ready_while_the_model_loads_or_discord_reconnects(make_settings) -> None:
    """503 while loading, and while the bot is reconnecting to Discord; 200 once both are fine."""
    release = threading.Event()

    def slow_loader(settings):  # the engine's loader seam
        release.wait(60)
        return default_loader(settings)

    engine = Engine(make_settings(), loader=slow_loader)
    await engine.start()
    state = ["reconnecting (the gateway connection dropped)"]
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD),
                         engine.settings.data_dir, discord_state=lambda: state[0])
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.get("/readyz")).status_code == 503
            release.set()
            assert await engine.wait_ready(60)
            assert (await c.get("/readyz")).status_code == 503
            state[0] = "connected"
            assert (await c.get("/readyz")).status_code == 200
    finally:
        release.set()
        await server.stop()
        await engine.stop()


async def test_metrics_need_their_token(engine: Engine) -> None:
    """Without METRICS_TOKEN /metrics is absent; with it, a scrape needs the bearer token and gets the text format."""
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD, METRICS_TOKEN=TOKEN),
                         engine.settings.data_dir)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.get("/metrics")).status_code == 401
            assert (await c.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
            answer = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(answer.text)}
        assert {"imagine_queue_jobs", "imagine_model_state", "imagine_jobs"} <= names
    finally:
        await server.stop()


async def test_metrics_are_absent_without_a_token(http: httpx.AsyncClient) -> None:
    """No METRICS_TOKEN: 404, saying how to turn them on."""
    answer = await http.get("/metrics")
    assert answer.status_code == 404 and "METRICS_TOKEN" in answer.text
