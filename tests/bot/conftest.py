"""Fixtures that run the real bot (unmodified discord.py) against the local Discord API emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import discord
import pytest

from bot.bot_settings import BotSettings
from bot.client import ImagineBot, point_at_discord
from engine.service import Engine
from tests.support.discord_emulator import FakeDiscord, run_client


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """A running Discord API emulator; a test fails if the bot sent a body Discord's OpenAPI spec refuses."""
    async with FakeDiscord(token="test-bot-token") as emulator:
        yield emulator
    assert [str(v) for v in emulator.contract_violations] == [], "requests Discord would refuse (400 / 50035)"
    assert [str(v) for v in emulator.answer_violations] == [], "emulator answers shaped unlike Discord's"


@pytest.fixture
def bot_settings(fake: FakeDiscord) -> Callable[..., BotSettings]:
    """BotSettings pointing at the emulator; keyword overrides by field name."""

    def factory(**overrides: Any) -> BotSettings:
        values: dict[str, Any] = dict(discord_token="test-bot-token", discord_api_base=fake.api_base,
                                      discord_gateway_url=fake.gateway_url, progress_edit_interval=1.5,
                                      picture_hosts=(urlsplit(fake.base_url).netloc,))
        values.update(overrides)
        return BotSettings(_env_file=None, **values)

    return factory


@pytest.fixture
def start_bot(monkeypatch: pytest.MonkeyPatch, bot_settings: Callable[..., BotSettings]) -> Callable[..., Any]:
    """``async with start_bot(engine, **settings) as bot``: the real bot, connected to the emulator."""
    # restore discord.py's class attributes after the test; point_at_discord changes them
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)

    @contextlib.asynccontextmanager
    async def runner(engine: Engine, *, force_sync: bool = False, gallery_url: str = "",
                     **overrides: Any) -> AsyncIterator[ImagineBot]:
        settings = bot_settings(**overrides)
        point_at_discord(settings)
        bot = ImagineBot(engine, settings, force_sync=force_sync, gallery_url=gallery_url, guild_ready_timeout=0.1)
        async with run_client(bot, settings.discord_token.get_secret_value(), ready_timeout=15) as client:
            yield client

    return runner


@pytest.fixture
async def gated_engine(make_settings: Callable[..., Any]) -> AsyncIterator[tuple[Engine, Any]]:
    """An engine whose model load waits until the test calls ``release()``: jobs pile up meanwhile."""
    import asyncio
    import threading

    from engine.service import default_loader

    gate = threading.Event()

    def loader(settings: Any) -> Any:
        gate.wait(60)
        return default_loader(settings)

    eng = Engine(make_settings(), loader=loader)
    await eng.start()
    yield eng, gate.set
    gate.set()
    await asyncio.wait_for(eng.model_ready.wait(), 60)
    await eng.stop()


def message_has_result(msg: dict[str, Any]) -> bool:
    """The original response carries the images and the embed."""
    return bool(msg.get("attachments")) and bool(msg.get("embeds"))


def button_ids(msg: dict[str, Any]) -> list[str]:
    """Every custom_id on a message."""
    return [c["custom_id"] for row in msg.get("components", []) for c in row.get("components", [])]


async def private_refusal(inter: Any) -> str:
    """The private answer to a request refused after its acknowledgement; the public placeholder is gone."""
    await inter.wait_acked(timeout=3)
    await inter._fake.wait_until(lambda: any(m["flags"] & 64 for m in inter.followups) and inter.original is None,
                                 timeout=30, what=f"private refusal of {inter!r}")
    return next(m["content"] for m in inter.followups if m["flags"] & 64)
