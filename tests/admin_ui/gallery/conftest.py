"""The gallery served by the real panel, logging in through the Discord emulator's OAuth2 endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from admin_ui.gallery.gallery_settings import GallerySettings
from admin_ui.server import AdminServer
from engine.service import Engine
from tests.admin_ui.support import GUILDS, PASSWORD, USER, admin_settings
from tests.support.discord_emulator import FakeDiscord


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    """Discord, with alice (the default user) and bob; alice authorizes on the consent page."""
    fake = FakeDiscord()
    await fake.start()
    fake.add_user("bob", id=2002)
    yield fake
    await fake.stop()


@pytest.fixture
async def gallery_panel(engine: Engine, discord: FakeDiscord) -> AsyncIterator[AdminServer]:
    """The panel with the gallery on, its application registered with the emulator's redirect list."""
    settings = GallerySettings(_env_file=None, DISCORD_CLIENT_ID=str(discord.application_id),  # type: ignore[call-arg]
                               DISCORD_CLIENT_SECRET=discord.oauth_secret,
                               DISCORD_AUTHORIZE_URL=f"{discord.base_url}/oauth2/authorize")
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD),
                         engine.settings.data_dir, guild_names=lambda: dict(GUILDS), gallery=settings,
                         discord_api_base=discord.api_base)
    await server.start()
    discord.oauth_redirects.append(f"{server.url}gallery/callback")
    yield server
    await server.stop()


@pytest.fixture
async def browser(gallery_panel: AdminServer) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping HTTP client that follows redirects across the panel and the emulator, like a browser."""
    async with httpx.AsyncClient(base_url=gallery_panel.url.rstrip("/"), timeout=30, follow_redirects=True) as c:
        yield c


@pytest.fixture
def log_in(browser: httpx.AsyncClient) -> Callable[[], Awaitable[httpx.Response]]:
    """Press "Log in with Discord" and follow Discord's answer back to the gallery."""

    async def run() -> httpx.Response:
        return await browser.get("/gallery/login")

    return run
