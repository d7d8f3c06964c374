"""A small local Discord API v10 emulator (REST + gateway) for driving a real discord.py bot in tests.

The bot under test is pointed at the emulator only through two URLs (see ``FakeDiscord.api_base`` and
``FakeDiscord.gateway_url``), so the whole of discord.py's HTTP, multipart, rate-limit, interaction and
gateway code runs for real. The emulator enforces the Discord rules that matter for an interaction bot
(3 s acknowledgement, one acknowledgement, 15 min tokens, upload size and count, content and embed limits,
5 requests / 2 s per webhook token) and records every request so that tests can assert on them.

Typical use::

    fake = FakeDiscord()
    await fake.start()
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    ...  # start a discord.py client with guild_ready_timeout=0.1
    handle = await fake.slash("imagine", {"prompt": "a red fox"})
    await handle.wait_acked()

See ``docs`` in the module's classes for the rest; the reference behind every rule is
``shared/reference/discord-api.md``.

``FakeDiscord`` keeps its state here and takes its behaviour from one mixin module per concern:
discord_world (users, guilds, channels, recording, waiting), discord_rest (routing, commands),
discord_channels (channel, DM, user, guild and CDN routes), discord_messages (attachments, embeds,
limits), discord_webhooks (interaction callbacks and webhooks), discord_gateway and discord_driver (what
tests send), discord_oauth (the OAuth2 code flow web logins use). The constants are in discord_protocol,
the value types and body validation in discord_records, FakeInteraction in discord_interaction; all the public
names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .discord_channels import ChannelsMixin
from .discord_contract import Violation
from .discord_driver import DriverMixin
from .discord_gateway import GatewayMixin
from .discord_interaction import FakeInteraction, _Connection, _RouteHandler, _Session
from .discord_messages import MessagesMixin
from .discord_oauth import OAuthMixin
from .discord_protocol import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    API_PREFIX,
    ATTACH_FILES,
    CALLBACK_AUTOCOMPLETE_RESULT,
    CALLBACK_MODAL,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    EMBED_LINKS,
    FLAG_EPHEMERAL,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    USE_APPLICATION_COMMANDS,
    VIEW_CHANNEL,
    MiB,
)
from .discord_records import (
    CommandSync,
    FakeChannel,
    FakeClock,
    FakeGuild,
    FakeUser,
    Injection,
    Limits,
    RecordedFile,
    RecordedRequest,
)
from .discord_rest import RestMixin
from .discord_webhooks import WebhooksMixin
from .discord_world import WorldMixin

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "CALLBACK_AUTOCOMPLETE_RESULT",
    "CALLBACK_MODAL",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "EMBED_LINKS",
    "FLAG_EPHEMERAL",
    "MANAGE_GUILD",
    "MANAGE_MESSAGES",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "USE_APPLICATION_COMMANDS",
    "VIEW_CHANNEL",
    "FakeChannel",
    "FakeClock",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeUser",
    "Injection",
    "Limits",
    "RecordedFile",
    "RecordedRequest",
    "run_client",
]


# --------------------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------------------


class FakeDiscord(WorldMixin, RestMixin, ChannelsMixin, MessagesMixin, WebhooksMixin, GatewayMixin,
                  DriverMixin, OAuthMixin):
    """Local Discord API v10 + gateway emulator on ``127.0.0.1`` (ephemeral port).

    Construct, ``await start()``, point discord.py at :attr:`api_base` and :attr:`gateway_url`, run the bot,
    then drive it with :meth:`slash` / :meth:`click` and assert on :attr:`requests`, :attr:`messages` and the
    returned :class:`FakeInteraction` handles. ``await stop()`` at the end (or use ``async with``).

    A default guild ("Test Guild") with a "general" channel and a default user ("alice") exist from the start.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        bot_name: str = "imagine",
        guild_name: str = "Test Guild",
        channel_name: str = "general",
        user_name: str = "alice",
    ) -> None:
        """``token``: if given, REST calls and IDENTIFY with another bot token are refused (401 / close 4004)."""
        self.token = token
        self.clock = FakeClock()
        self.limits = Limits()
        self._last_snowflake = 0
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._changed = asyncio.Event()

        self.bot_user = FakeUser(id=self.snowflake(), username=bot_name, bot=True)
        #: Discord gives new applications the same id as their bot user.
        self.application_id = self.bot_user.id
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self._owner = self.add_user("guild-owner")

        #: All stored messages by id (deleted ones are removed), in creation order.
        self.messages: dict[int, dict[str, Any]] = {}
        self._attachment_data: dict[int, bytes] = {}
        #: Attachment id -> HTTP status its CDN download answers with instead of the bytes (discord_uploads.py).
        self.fail_downloads: dict[int, int] = {}
        #: Attachment id -> where its CDN download redirects (302) instead of answering.
        self.redirect_downloads: dict[int, str] = {}
        #: Registered application commands: key None = global, else guild id.
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        #: Every bulk overwrite (PUT) of commands, global or guild, in order.
        self.command_syncs: list[CommandSync] = []

        #: More guilds than this on one gateway connection (one shard) is closed with 4011, as Discord does at 2 500.
        self.max_guilds_per_shard = 2500
        #: Every REST request, in the order the emulator finished answering them.
        self.requests: list[RecordedRequest] = []
        #: Request bodies Discord's OpenAPI spec refuses (each answered 400 / 50035), and answers of ours shaped
        #: unlike Discord's (discord_contract.py); tests/bot's fixture fails a test that leaves either non-empty.
        self.contract_violations: list[Violation] = []
        self.answer_violations: list[Violation] = []
        self._injections: list[Injection] = []
        self.interactions: dict[int, FakeInteraction] = {}
        self._by_token: dict[str, FakeInteraction] = {}
        self._rate_windows: dict[str, deque[float]] = {}

        self._sessions: dict[str, _Session] = {}
        self._connections: list[_Connection] = []
        #: Gateway counters: IDENTIFYs and RESUMEs received, RESUMED and op-9 INVALID_SESSION sent.
        self.identify_count = 0
        self.resume_count = 0
        self.resumed_count = 0
        self.invalid_session_count = 0
        #: Every gateway payload received from bots, in order (heartbeats included).
        self.gateway_received: list[dict[str, Any]] = []

        self.default_guild = self.add_guild(guild_name)
        self.default_channel = self.add_channel(self.default_guild, channel_name)
        self.default_user = self.add_user(user_name)
        self._init_oauth()

        self._routes: list[tuple[str, re.Pattern[str], _RouteHandler]] = self._build_routes()

    # ----------------------------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> int:
        """Start listening on 127.0.0.1 (``port``, or an ephemeral one); returns the port.

        A fixed port lets a test point a bot at the emulator before it runs (Discord "down" at start).
        """
        # Multipart uploads above the 1 MiB aiohttp default must reach the handler so that the emulator, not
        # aiohttp, answers the 413.
        app = web.Application(client_max_size=1024 * MiB)
        self._add_oauth_routes(app)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle_api)
        app.router.add_get("/gateway", self._handle_gateway)
        app.router.add_get("/cdn/attachments/{channel_id}/{attachment_id}/{filename}", self._handle_cdn)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server  # aiohttp does not expose the bound port otherwise
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self._port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self._port

    async def stop(self) -> None:
        """Close all gateway connections and stop the server."""
        for conn in list(self._connections):
            # Abort rather than close(): a polite close would wait for a client that may already be gone.
            conn.dropped_by_server = True
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("FakeDiscord is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """Value for ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (wrap it in ``yarl.URL``)."""
        return f"ws://127.0.0.1:{self.port}/gateway"


@contextlib.asynccontextmanager
async def run_client(client: Any, token: str = "fake-token", *, ready_timeout: float = 5.0) -> AsyncIterator[Any]:
    """Run a discord.py ``Client`` in a background task until it is ready; close it on exit.

    Point discord.py at the emulator first (``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``). Create the
    client with ``guild_ready_timeout=0.1`` or ``on_ready`` waits 2 s. If the client dies during start-up
    (e.g. a login failure), its exception is raised here instead of a timeout.
    """
    task = asyncio.create_task(client.start(token))
    ready = asyncio.create_task(client.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # re-raise the start-up failure
            raise RuntimeError("discord.py client stopped before it became ready")
        if ready not in done:
            raise TimeoutError(f"discord.py client not ready after {ready_timeout}s")
        yield client
    finally:
        ready.cancel()
        await client.close()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(task, timeout=5.0)
            except TimeoutError:
                task.cancel()
