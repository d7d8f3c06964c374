"""Fixtures for the admin panel: the real panel served by uvicorn on the test's event loop.

The server runs on the same loop as the test, so blocking calls (gradio_client, Playwright) go
through ``asyncio.to_thread`` and raw HTTP uses an async httpx client.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from admin_ui.auth import SESSION_COOKIE
from admin_ui.server import AdminServer
from engine.service import Engine
from tests.admin_ui.support import CHROMIUM, GUILDS, PASSWORD, USER, admin_settings


@pytest.fixture
async def panel(engine: Engine) -> AsyncIterator[AdminServer]:
    """The panel for the tiny-model engine, logged in with USER/PASSWORD, on 127.0.0.1."""
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD),
                         engine.settings.data_dir, guild_names=lambda: dict(GUILDS))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(panel: AdminServer) -> AsyncIterator[Client]:
    """A logged-in gradio_client for the panel (synchronous: call it through asyncio.to_thread)."""
    c = await asyncio.to_thread(Client, panel.url, auth=(USER, PASSWORD), verbose=False,
                                analytics_enabled=False)
    yield c
    # stopping the server first ends the client's heartbeat stream, so close() returns at once
    await panel.stop()
    await asyncio.to_thread(c.close)


@pytest.fixture
def call(client: Client) -> Callable[..., Awaitable[Any]]:
    """``await call("/api_name", *args)``: one gradio_client prediction off the event loop."""

    async def run(api_name: str, *args: Any) -> Any:
        return await asyncio.to_thread(client.predict, *args, api_name=api_name)

    return run


@pytest.fixture
async def http(panel: AdminServer) -> AsyncIterator[httpx.AsyncClient]:
    """An unauthenticated async HTTP client for the panel."""
    async with httpx.AsyncClient(base_url=panel.url.rstrip("/"), timeout=30) as c:
        yield c


@pytest.fixture
async def logged_in(panel: AdminServer) -> AsyncIterator[httpx.AsyncClient]:
    """An async HTTP client holding the panel's session cookie."""
    async with httpx.AsyncClient(base_url=panel.url.rstrip("/"), timeout=30) as c:
        response = await c.post("/login", data={"username": USER, "password": PASSWORD})
        assert response.status_code == 200 and SESSION_COOKIE in response.cookies
        yield c


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; a missing browser fails the test under CI=true and skips it elsewhere."""
    path = shutil.which("chromium") or CHROMIUM
    if not os.path.exists(path):
        message = "chromium is not installed; run: apt-get install -y chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser test saves its screenshots.

    A temporary folder, so a test run leaves the tree clean; UPDATE_SCREENSHOTS=1 writes the guides'
    pictures in docs/screenshots instead.
    """
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        path = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")
