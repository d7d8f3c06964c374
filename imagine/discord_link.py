"""Keeping the bot connected to Discord without taking the engine and the panel down with it.

``bot.start()`` raises when Discord cannot be reached at all (no network, DNS, a refused connection,
a 5xx while logging in); discord.py only retries by itself once logged in. Here every failure but
a rejected token is logged and retried with exponential backoff, and the current state is offered
to the panel as a callable, the same way the guild names are. A rejected token stops with its
clear message: retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import discord

from bot.client import ImagineBot

log = logging.getLogger("imagine.discord")

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
# gateway close codes that mean the token itself is wrong (4004: authentication failed)
_TOKEN_REJECTED = {4004}
_REASON_CHARS = 200


class DiscordLink:
    """Runs one ImagineBot at a time: a fresh one for every attempt after a failure.

    A fresh bot per attempt because a client whose start failed half-way holds a closed HTTP
    session; closing it also unloads its cogs, so the next one starts clean.
    """

    def __init__(self, make_bot: Callable[[], ImagineBot], token: str) -> None:
        self._make_bot = make_bot
        self._token = token
        self._bot: ImagineBot | None = None
        self._state = "connecting"
        self._closing = asyncio.Event()
        self._delay = FIRST_RETRY_S

    @property
    def bot(self) -> ImagineBot | None:
        """The current bot (None before the first attempt)."""
        return self._bot

    def state(self) -> str:
        """``connecting``, ``connected`` or ``reconnecting (why)``, for the panel's Status tab."""
        return self._state

    def guild_names(self) -> dict[str, str]:
        """Guild id -> name from the current bot (empty while not connected)."""
        return self._bot.guild_names() if self._bot is not None else {}

    async def run(self) -> None:
        """Connect, and reconnect after failures, until close(); raises discord.LoginFailure on a wrong token."""
        while not self._closing.is_set():
            bot = self._bot = self._make_bot()
            for event in ("on_connect", "on_ready", "on_resumed"):
                bot.add_listener(self._on_connected, event)
            bot.add_listener(self._on_disconnect, "on_disconnect")
            try:
                await bot.start(self._token)
            except discord.LoginFailure:
                self._state = "stopped (Discord rejected DISCORD_TOKEN)"
                await bot.close()
                raise
            except discord.ConnectionClosed as exc:
                if exc.code in _TOKEN_REJECTED:
                    self._state = "stopped (Discord rejected DISCORD_TOKEN)"
                    raise discord.LoginFailure("the gateway rejected the token") from exc
                await self._retry(bot, exc)
            except Exception as exc:  # unreachable, 5xx, bad gateway answers: all worth another try
                await self._retry(bot, exc)
            else:
                if not self._closing.is_set():  # start() returns only once the client is closed
                    await self._retry(bot, RuntimeError("the connection ended"))

    async def _retry(self, bot: ImagineBot, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            await bot.close()
        if self._closing.is_set():
            return
        reason = _describe(exc)
        self._state = f"reconnecting ({reason})"
        log.warning("cannot reach Discord (%s); retrying in %.0f s", reason, self._delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self._delay)
        self._delay = min(MAX_RETRY_S, self._delay * 2)

    async def _on_connected(self) -> None:
        if self._state != "connected":
            log.info("connected to Discord")
        self._state = "connected"
        self._delay = FIRST_RETRY_S  # the next outage starts its backoff afresh

    async def _on_disconnect(self) -> None:
        # discord.py reconnects the gateway by itself from here (and logs each try)
        if not self._closing.is_set():
            self._state = "reconnecting (the gateway connection dropped)"

    async def close(self) -> None:
        """Stop retrying and close the current bot."""
        self._closing.set()
        if self._bot is not None:
            await self._bot.close()


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_REASON_CHARS]


__all__ = ["FIRST_RETRY_S", "MAX_RETRY_S", "DiscordLink"]
