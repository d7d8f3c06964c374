"""/healthz, /readyz and /metrics on the panel's port: no login, nothing revealed, metrics behind their token."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from admin_ui.server import AdminServer
from engine.gpu.local_worker import default_loader
from engine.service import Engine
from tests.admin_ui.support import PASSWORD, USER, admin_settings

TOKEN = "metrics-token-0123456789abcdefghijklmn"  # at least 32 characters


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


@pytest.fixture
async def metrics_client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a panel whose /metrics needs TOKEN."""
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD, METRICS_TOKEN=TOKEN),
                         engine.settings.data_dir)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            yield client
    finally:
        await server.stop()


async def test_metrics_need_their_token(metrics_client: httpx.AsyncClient) -> None:
    """Without METRICS_TOKEN /metrics is absent; with it, a scrape needs the bearer token and gets the text format."""
    c = metrics_client
    assert (await c.get("/metrics")).status_code == 401
    assert (await c.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    answer = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(answer.text)}
    assert {"imagine_queue_jobs", "imagine_model_state", "imagine_jobs"} <= names


async def test_metrics_are_absent_without_a_token(http: httpx.AsyncClient) -> None:
    """No METRICS_TOKEN: 404, saying how to turn them on."""
    answer = await http.get("/metrics")
    assert answer.status_code == 404 and "METRICS_TOKEN" in answer.text


async def test_readyz_is_ready_in_the_services_panel_only_mode(make_settings) -> None:
    """The service without DISCORD_TOKEN (its own panel-only state): ready once the model is loaded (it used to
    answer 503 for ever)."""
    from imagine.main import _panel_only

    async with Engine(make_settings()) as engine:
        assert await engine.wait_ready(60)
        server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD),
                             engine.settings.data_dir, discord_state=_panel_only)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url) as c:
                assert (await c.get("/readyz")).status_code == 200
        finally:
            await server.stop()


def test_a_short_metrics_token_is_refused_without_echoing_it(monkeypatch, tmp_path) -> None:
    """METRICS_TOKEN=a (guessed in 0.3 s) is refused at start, saying how to make a long one."""
    from engine.engine_settings import SettingsError
    from imagine.settings import load_settings

    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("METRICS_TOKEN", "short-secret-1")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "METRICS_TOKEN: METRICS_TOKEN must be at least 32 characters" in str(info.value)
    assert "short-secret-1" not in str(info.value)


async def test_wrong_metrics_tokens_are_throttled(metrics_client: httpx.AsyncClient) -> None:
    """Past ten wrong tokens a client is refused at once (429 with Retry-After), even with the right one."""
    codes = [(await metrics_client.get("/metrics", headers={"Authorization": f"Bearer guess-{n}"})).status_code
             for n in range(11)]
    right = await metrics_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert codes == [401] * 10 + [429] and right.status_code == 429 and "Retry-After" in right.headers
