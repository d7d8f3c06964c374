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
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fnmatch
import json
import math
import mimetypes
import re
import secrets
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, WSMsgType, web

from . import discord_contexts as contexts
from . import discord_uploads as uploads

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "EMBED_LINKS",
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
# Constants
# --------------------------------------------------------------------------------------------------------------

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"
MiB = 1024 * 1024

# Permission bits (https://discord.com/developers/docs/topics/permissions). Only the ones tests care about.
CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31

#: Every permission bit Discord currently defines (what an administrator's computed permissions contain).
ALL_PERMISSIONS = (1 << 52) - 1
#: What an ordinary member without any special role has in a channel.
DEFAULT_MEMBER_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)
#: What the bot has in a channel where it may post (the @everyone role of emulated guilds).
DEFAULT_BOT_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS

# Message flags.
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Interaction and callback types.
INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5
CALLBACK_CHANNEL_MESSAGE = 4
CALLBACK_DEFERRED_CHANNEL_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE_MESSAGE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE_RESULT = 8
CALLBACK_MODAL = 9

INTENT_GUILDS = 1 << 0

# Gateway opcodes.
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11


class _Default:
    """Sentinel type: "argument not given" (``None`` has a meaning of its own for ``guild_id``)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


# --------------------------------------------------------------------------------------------------------------
# Small value types
# --------------------------------------------------------------------------------------------------------------


class FakeClock:
    """The emulator's notion of "now" (epoch seconds) for the 3 s and 15 min interaction rules.

    It follows real time, plus an offset that :meth:`advance` grows, so a test can jump 15 minutes ahead
    without waiting, while a bot that is genuinely slow still misses the 3 s deadline.
    """

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Current emulated time, in seconds since the Unix epoch."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulated time forward by ``seconds``."""
        self._offset += seconds


@dataclass
class Limits:
    """Tunable Discord limits. Defaults are Discord's documented values."""

    ack_deadline: float = 3.0
    token_lifetime: float = 15 * 60.0
    webhook_rate_limit: int = 5
    webhook_rate_window: float = 2.0
    #: Send ``X-RateLimit-*`` headers on successful webhook responses, as Discord does. discord.py then waits
    #: pre-emptively when ``Remaining`` hits 0, so turn this off to make it run into real 429s.
    advertise_rate_limit_headers: bool = True
    default_attachment_size_limit: int = 10 * MiB
    channel_attachment_size_limit: int = 10 * MiB
    max_attachments: int = 10
    max_content: int = 2000


@dataclass
class FakeUser:
    """A Discord user as the emulator knows it."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    #: When False, the bot's messages to this user's DM channel fail with 403 / 50007.
    accepts_dms: bool = True
    #: Whether the user added the app to their account (a user install): commands that declare USER_INSTALL
    #: then work for them everywhere their ``contexts`` allow, also where the bot is not (discord_contexts.py).
    app_installed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The Discord user object."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class FakeChannel:
    """A guild text channel (type 0), the bot's DM with a user (type 1, ``recipient``), or a private channel the
    bot is not in: a DM between two users (type 1) or a group DM (type 3), with its ``participants``."""

    id: int
    name: str
    guild_id: int | None = None
    type: int = 0
    nsfw: bool = False
    #: When False, ``POST /channels/{id}/messages`` fails with 403 / 50013 and READY shows a deny overwrite.
    bot_can_post: bool = True
    position: int = 0
    recipient: FakeUser | None = None
    participants: list[FakeUser] = field(default_factory=list)


@dataclass
class FakeGuild:
    """A guild, with its channels."""

    id: int
    name: str
    owner_id: int
    channels: list[FakeChannel] = field(default_factory=list)
    premium_tier: int = 0
    #: False: the app reaches this guild only through user installs. The bot is not in READY or GUILD_CREATE,
    #: and its token gets 403 / 50001 for the guild and its channels, as on Discord.
    bot_member: bool = True


@dataclass
class RecordedFile:
    """One uploaded file of a multipart request."""

    #: The multipart field name, e.g. ``files[0]``.
    part_name: str
    filename: str
    size: int
    content_type: str | None
    data: bytes = field(repr=False)


@dataclass
class RecordedRequest:
    """One REST request as the emulator received and answered it."""

    index: int
    method: str
    #: Path below the API base, e.g. ``/webhooks/123/tok/messages/@original`` (no query string).
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    #: The JSON body, or the parsed ``payload_json`` part of a multipart body.
    json: Any
    files: list[RecordedFile]
    time: float
    status: int = 0
    response: Any = None
    #: The interaction/webhook token in the path, if the route has one.
    token: str | None = None

    @property
    def file_names(self) -> list[str]:
        """File names of the uploaded files, in order."""
        return [f.filename for f in self.files]

    @property
    def file_sizes(self) -> list[int]:
        """Sizes in bytes of the uploaded files, in order."""
        return [f.size for f in self.files]


@dataclass
class Injection:
    """A pending injected failure (see :meth:`FakeDiscord.inject`)."""

    method: str
    path_glob: str
    status: int
    body: Any
    headers: dict[str, str]
    remaining: int
    hits: int = 0


@dataclass
class CommandSync:
    """One bulk overwrite of application commands (what ``tree.sync()`` sends)."""

    guild_id: int | None
    commands: list[dict[str, Any]]
    time: float


class _ApiError(Exception):
    """Raised by route handlers to answer with a Discord-style error body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.body = body

    def to_body(self) -> Any:
        if self.body is not None:
            return self.body
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            data["errors"] = self.errors
        return data


def _json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    # discord.py compares the Content-Type header with == 'application/json'; web.json_response would add
    # '; charset=utf-8' and discord.py would then treat every body as text.
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json", headers=headers)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def _png_size(data: bytes) -> tuple[int, int] | None:
    # Discord reports width/height for images; PNG is what an image bot uploads, and its IHDR is trivial.
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def _walk_components(components: Any) -> list[dict[str, Any]]:
    """All component dicts in a message's component tree (action rows, v2 containers, accessories)."""
    found: list[dict[str, Any]] = []
    stack = list(components or [])
    while stack:
        comp = stack.pop(0)
        if not isinstance(comp, dict):
            continue
        found.append(comp)
        stack.extend(comp.get("components") or [])
        if isinstance(comp.get("accessory"), dict):
            stack.append(comp["accessory"])
    return found


def _max_length_error(limit: int) -> dict[str, Any]:
    return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}]}


def _validate_message_body(body: Mapping[str, Any], max_content: int) -> None:
    """Content and embed limits (discord-api.md §1.5); raises 400 / 50035 like Discord."""
    errors: dict[str, Any] = {}
    content = body.get("content")
    if isinstance(content, str) and len(content) > max_content:
        errors["content"] = _max_length_error(max_content)
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        errors["embeds"] = _max_length_error(10)
    embed_errors: dict[str, Any] = {}
    total = 0
    for i, embed in enumerate(embeds):
        errs: dict[str, Any] = {}

        def check(value: Any, limit: int) -> dict[str, Any] | None:
            nonlocal total
            if isinstance(value, str):
                total += len(value)
                if len(value) > limit:
                    return _max_length_error(limit)
            return None

        for key, limit in (("title", 256), ("description", 4096)):
            e = check(embed.get(key), limit)
            if e:
                errs[key] = e
        footer = embed.get("footer") or {}
        e = check(footer.get("text"), 2048)
        if e:
            errs["footer"] = {"text": e}
        author = embed.get("author") or {}
        e = check(author.get("name"), 256)
        if e:
            errs["author"] = {"name": e}
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errs["fields"] = _max_length_error(25)
        field_errs: dict[str, Any] = {}
        for j, fld in enumerate(fields):
            ferr: dict[str, Any] = {}
            e = check(fld.get("name"), 256)
            if e:
                ferr["name"] = e
            e = check(fld.get("value"), 1024)
            if e:
                ferr["value"] = e
            if ferr:
                field_errs[str(j)] = ferr
        if field_errs and "fields" not in errs:
            errs["fields"] = field_errs
        if errs:
            embed_errors[str(i)] = errs
    if embed_errors and "embeds" not in errors:
        errors["embeds"] = embed_errors
    if total > 6000 and "embeds" not in errors:
        errors["embeds"] = {
            "_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}]
        }
    component_errors = _component_errors(body.get("components"))
    if component_errors:
        errors["components"] = component_errors
    if errors:
        raise _ApiError(400, 50035, "Invalid Form Body", errors=errors)


def _component_errors(rows: Any) -> dict[str, Any]:
    """Classic component limits: at most 5 action rows of at most 5 buttons, custom_id 1-100 characters and
    unique within the message, button labels up to 80 characters."""
    if not isinstance(rows, list):
        return {}
    if len(rows) > 5:
        return _max_length_error(5)
    errors: dict[str, Any] = {}
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        children = row.get("components") or []
        if row.get("type") == 1 and len(children) > 5:
            errors[str(i)] = {"components": _max_length_error(5)}
            continue
        child_errors: dict[str, Any] = {}
        for j, comp in enumerate(children):
            errs: dict[str, Any] = {}
            custom_id = comp.get("custom_id")
            if isinstance(custom_id, str):
                if not 1 <= len(custom_id) <= 100:
                    errs["custom_id"] = _max_length_error(100)
                elif custom_id in seen:
                    errs["custom_id"] = {"_errors": [{"code": "COMPONENT_CUSTOM_ID_DUPLICATED",
                                                      "message": "Component custom id cannot be duplicated"}]}
                seen.add(custom_id)
            label = comp.get("label")
            if isinstance(label, str) and len(label) > 80:
                errs["label"] = _max_length_error(80)
            if errs:
                child_errors[str(j)] = errs
        if child_errors:
            errors[str(i)] = {"components": child_errors}
    return errors


def _is_empty_message(body: Mapping[str, Any], files: list[RecordedFile]) -> bool:
    return not (
        body.get("content")
        or body.get("embeds")
        or files
        or body.get("attachments")
        or body.get("components")
        or body.get("sticker_ids")
        or body.get("poll")
    )


# --------------------------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------------------------


class FakeInteraction:
    """Handle on one interaction that the emulator dispatched (returned by ``slash``/``click``/``submit_modal``).

    It tracks the callback(s) the bot sent, the ``@original`` response message and the followups.
    """

    def __init__(
        self,
        fake: FakeDiscord,
        *,
        payload: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        attachment_size_limit: int,
        created_at: float,
        source_message_id: int | None = None,
    ) -> None:
        self._fake = fake
        #: The INTERACTION_CREATE ``d`` object exactly as dispatched.
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.user = user
        self.channel = channel
        self.guild_id: int | None = channel.guild_id
        self.attachment_size_limit = attachment_size_limit
        #: Emulated-clock time when the interaction was dispatched (start of the 3 s and 15 min windows).
        self.created_at = created_at
        #: For component interactions: the message whose component was used.
        self.source_message_id = source_message_id
        #: The callback type that acknowledged the interaction, once acknowledged.
        self.ack_type: int | None = None
        #: The ``@original`` message id (set by the acknowledging callback).
        self.original_message_id: int | None = None
        #: True from a type-5 defer until the loading message is first edited (Discord then turns the first
        #: followup into an edit of ``@original``).
        self.original_loading = False
        self.followup_ids: list[int] = []
        #: The modal the bot opened with a type-9 callback, if any.
        self.modal: dict[str, Any] | None = None
        #: The choices the bot answered an autocomplete interaction with (type-8 callback), if any.
        self.choices: list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"<FakeInteraction id={self.id} type={self.type} ack_type={self.ack_type}>"

    @property
    def acked(self) -> bool:
        """Whether a callback was accepted."""
        return self.ack_type is not None

    @property
    def original(self) -> dict[str, Any] | None:
        """The stored ``@original`` message (None before an acknowledgement that creates one, or if deleted)."""
        if self.original_message_id is None:
            return None
        return self._fake.messages.get(self.original_message_id)

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Followup messages created with this interaction's token (excluding deleted ones)."""
        return [self._fake.messages[m] for m in self.followup_ids if m in self._fake.messages]

    @property
    def callbacks(self) -> list[RecordedRequest]:
        """Every callback request for this interaction (accepted, rejected or injected failures), in order."""
        prefix = f"/interactions/{self.id}/"
        return [r for r in self._fake.requests if r.path.startswith(prefix)]

    @property
    def requests(self) -> list[RecordedRequest]:
        """All recorded REST requests that carried this interaction's token."""
        return [r for r in self._fake.requests if r.token == self.token]

    async def wait_acked(self, timeout: float = 5.0) -> int:
        """Wait until a callback is accepted; returns the callback type (4, 5, 6, 7 or 9)."""
        await self._fake.wait_until(lambda: self.ack_type is not None, timeout=timeout, what=f"ack of {self!r}")
        assert self.ack_type is not None
        return self.ack_type

    async def wait_original(
        self, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until ``@original`` exists (and satisfies ``where``, e.g. "has attachments"); returns it."""

        def ready() -> bool:
            msg = self.original
            return msg is not None and (where is None or bool(where(msg)))

        await self._fake.wait_until(ready, timeout=timeout, what=f"@original of {self!r}")
        msg = self.original
        assert msg is not None
        return msg

    async def wait_followups(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` followups exist; returns them all."""
        await self._fake.wait_until(
            lambda: len(self.followups) >= count, timeout=timeout, what=f"{count} followups of {self!r}"
        )
        return self.followups


# --------------------------------------------------------------------------------------------------------------
# Gateway bookkeeping
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None
    dropped_by_server: bool = False


@dataclass
class _Session:
    id: str
    seq: int = 0
    #: Every dispatch of this session, for replay on RESUME.
    history: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    connection: _Connection | None = None
    resumable: bool = True
    ended: bool = False
    intents: int = 0


_RouteHandler = Callable[["_Ctx"], Awaitable[web.StreamResponse]]


@dataclass
class _Ctx:
    """Everything a REST route handler needs about the current request."""

    request: web.Request
    record: RecordedRequest
    params: dict[str, str]
    body: Any
    files: list[RecordedFile]


# --------------------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------------------


class FakeDiscord:
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
        #: Registered application commands: key None = global, else guild id.
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        #: Every bulk overwrite (PUT) of commands, global or guild, in order.
        self.command_syncs: list[CommandSync] = []

        #: Every REST request, in the order the emulator finished answering them.
        self.requests: list[RecordedRequest] = []
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

    # ----------------------------------------------------------------------------------------------------------
    # Model
    # ----------------------------------------------------------------------------------------------------------

    def snowflake(self) -> int:
        """A new unique snowflake that encodes the real current time (discord.py derives expiry from it)."""
        value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17)
        value = max(value, self._last_snowflake + 1)
        self._last_snowflake = value
        return value

    def add_user(
        self, username: str, *, id: int | None = None, accepts_dms: bool = True, app_installed: bool = False
    ) -> FakeUser:
        """Declare a user (``app_installed``: they added the app to their account)."""
        user = FakeUser(id=id or self.snowflake(), username=username, accepts_dms=accepts_dms,
                        app_installed=app_installed)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, *, id: int | None = None, bot_member: bool = True) -> FakeGuild:
        """Declare a guild the bot is in (listed in READY, then sent as GUILD_CREATE), or with
        ``bot_member=False`` one it is not in, where only user installs of the app work."""
        guild = FakeGuild(id=id or self.snowflake(), name=name, owner_id=self._owner.id, bot_member=bot_member)
        self.guilds[guild.id] = guild
        return guild

    def add_channel(
        self,
        guild: FakeGuild | int,
        name: str,
        *,
        id: int | None = None,
        nsfw: bool = False,
        bot_can_post: bool = True,
    ) -> FakeChannel:
        """Declare a text channel in ``guild``. Declare channels before the bot connects to see them in its cache."""
        g = guild if isinstance(guild, FakeGuild) else self.guilds[guild]
        channel = FakeChannel(
            id=id or self.snowflake(),
            name=name,
            guild_id=g.id,
            nsfw=nsfw,
            bot_can_post=bot_can_post,
            position=len(g.channels),
        )
        g.channels.append(channel)
        self.channels[channel.id] = channel
        return channel

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user`` (created on first use, like Discord)."""
        for ch in self.channels.values():
            if ch.type == 1 and ch.recipient is not None and ch.recipient.id == user.id:
                return ch
        channel = FakeChannel(id=self.snowflake(), name="", type=1, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def add_private_channel(self, *users: FakeUser, name: str = "", group: bool = False) -> FakeChannel:
        """A channel the bot is not in: a DM between two users, or a group DM (``group``, or three users or more).

        Commands reach it only through user installs (context PRIVATE_CHANNEL); the bot's token gets 403 / 50001.
        """
        if len(users) < 2:
            raise ValueError("a private channel needs at least two users")
        kind = contexts.GROUP_DM if group or len(users) > 2 else contexts.DM
        channel = FakeChannel(id=self.snowflake(), name=name, type=kind, participants=list(users))
        self.channels[channel.id] = channel
        return channel

    def register_commands(self, commands: list[dict[str, Any]], guild_id: int | None = None) -> None:
        """Pre-register command definitions (as if synced earlier) without counting a sync."""
        self._commands[guild_id] = self._store_commands(commands, guild_id)

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The registered command objects, global (None) or for one guild."""
        return copy.deepcopy(self._commands.get(guild_id, []))

    @property
    def sync_count(self) -> int:
        """How many bulk command overwrites (``PUT .../commands``) happened, global and guild together."""
        return len(self.command_syncs)

    def get_message(self, message_id: int) -> dict[str, Any] | None:
        """A stored message by id (None if unknown or deleted)."""
        return self.messages.get(message_id)

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Stored messages of one channel, oldest first (ephemeral ones included)."""
        return [m for m in self.messages.values() if int(m["channel_id"]) == channel_id]

    def attachment_bytes(self, attachment: dict[str, Any] | int) -> bytes:
        """The uploaded bytes of an attachment (an attachment object from a stored message, or its id)."""
        att_id = int(attachment["id"]) if isinstance(attachment, dict) else attachment
        return self._attachment_data[att_id]

    def _channel_permissions_for_bot(self, channel: FakeChannel) -> int:
        perms = DEFAULT_BOT_PERMISSIONS
        if not channel.bot_can_post:
            perms &= ~SEND_MESSAGES
        return perms

    def _channel_dict(self, channel: FakeChannel) -> dict[str, Any]:
        if contexts.interaction_context(channel) == contexts.CONTEXT_PRIVATE_CHANNEL:
            return contexts.private_channel_dict(channel, None)
        if channel.type == 1:
            assert channel.recipient is not None
            return {
                "id": str(channel.id),
                "type": 1,
                "last_message_id": None,
                "flags": 0,
                "recipients": [channel.recipient.to_dict()],
            }
        overwrites = []
        if not channel.bot_can_post:
            # Visible to discord.py as a member overwrite, so channel.permissions_for(guild.me) agrees.
            overwrites.append({"id": str(self.bot_user.id), "type": 1, "allow": "0", "deny": str(SEND_MESSAGES)})
        return {
            "id": str(channel.id),
            "type": 0,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "parent_id": None,
            "topic": None,
            "nsfw": channel.nsfw,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "permission_overwrites": overwrites,
            "flags": 0,
        }

    def _guild_dict(self, guild: FakeGuild, *, full: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                {
                    "id": str(guild.id),  # @everyone has the guild's id
                    "name": "@everyone",
                    "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }
        if full:
            # GUILD_CREATE extras. member_count == len(members) marks the guild "chunked", so a bot with the
            # members intent does not wait for member chunks at startup.
            data.update(
                {
                    "joined_at": _iso(self.clock.now()),
                    "large": False,
                    "unavailable": False,
                    "member_count": 1,
                    "members": [self._member_dict(self.bot_user, DEFAULT_BOT_PERMISSIONS, with_permissions=False)],
                    "channels": [self._channel_dict(c) for c in guild.channels],
                    "threads": [],
                    "voice_states": [],
                    "presences": [],
                    "stage_instances": [],
                    "guild_scheduled_events": [],
                    "soundboard_sounds": [],
                }
            )
        return data

    def _member_dict(self, user: FakeUser, permissions: int, *, with_permissions: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": user.to_dict(),
            "roles": [],
            "joined_at": _iso(self.clock.now()),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
        }
        if with_permissions:
            data["permissions"] = str(permissions)
        return data

    # ----------------------------------------------------------------------------------------------------------
    # Waiting and recording
    # ----------------------------------------------------------------------------------------------------------

    def _notify(self) -> None:
        # Wake every waiter; they re-check their predicate. A fresh Event per change avoids lost wake-ups.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` is true; it is re-checked after every request and gateway event.

        Raises ``asyncio.TimeoutError`` with ``what`` in the message after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            if predicate():
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            try:
                # Also wake up periodically: predicates may depend on the clock or on the bot's own state.
                await asyncio.wait_for(changed.wait(), timeout=min(remaining, 0.05))
            except TimeoutError:
                pass

    def mark(self) -> int:
        """Index of the next request to be recorded; pass it as ``since`` to wait only for later requests."""
        return len(self.requests)

    def find(
        self,
        method: str = "*",
        path_glob: str = "*",
        where: Callable[[RecordedRequest], bool] | None = None,
        since: int = 0,
    ) -> list[RecordedRequest]:
        """Recorded requests matching ``method`` ("*" for any), ``path_glob`` (fnmatch) and ``where``."""
        return [r for r in self.requests[since:] if self._matches(r, method, path_glob, where)]

    @staticmethod
    def _matches(
        r: RecordedRequest, method: str, path_glob: str, where: Callable[[RecordedRequest], bool] | None
    ) -> bool:
        if method not in ("*", r.method):
            return False
        if not fnmatch.fnmatchcase(r.path, path_glob):
            return False
        return where is None or bool(where(r))

    async def wait_for(
        self,
        method: str,
        path_glob: str,
        where: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = 5.0,
        since: int = 0,
    ) -> RecordedRequest:
        """The first recorded request (already recorded or future) with index >= ``since`` that matches.

        Requests are recorded once answered, so ``status`` and ``response`` are filled in.
        """
        found: list[RecordedRequest] = []

        def check() -> bool:
            for r in self.requests[since:]:
                if self._matches(r, method, path_glob, where):
                    found.append(r)
                    return True
            return False

        await self.wait_until(check, timeout=timeout, what=f"{method} {path_glob}")
        return found[0]

    def inject(
        self,
        method: str,
        path_glob: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> Injection:
        """Make the next ``times`` requests matching ``method``/``path_glob`` fail with ``status``.

        Injected answers come before any normal handling. Default bodies: for 429 a retryable Discord rate
        limit (``retry_after`` 0.1 s, with the ``Via`` header discord.py needs to retry), otherwise
        ``{"code": 0, "message": ...}``.
        """
        hdrs = dict(headers or {})
        if body is None:
            if status == 429:
                body = {"message": "You are being rate limited.", "retry_after": 0.1, "global": False}
                hdrs.setdefault("Via", "1.1 google")
                hdrs.setdefault("Retry-After", "1")
            else:
                body = {"code": 0, "message": f"{status}: injected failure"}
        injection = Injection(
            method=method, path_glob=path_glob, status=status, body=body, headers=hdrs, remaining=times
        )
        self._injections.append(injection)
        return injection

    def clear_injections(self) -> None:
        """Forget all pending injected failures."""
        self._injections.clear()

    # ----------------------------------------------------------------------------------------------------------
    # REST plumbing
    # ----------------------------------------------------------------------------------------------------------

    async def _parse_body(self, request: web.Request) -> tuple[Any, list[RecordedFile]]:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            body: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):  # nested multipart: discord.py never sends one
                    continue
                data = await part.read(decode=False)
                name = part.name or ""
                if name == "payload_json":
                    body = json.loads(bytes(data).decode("utf-8"))
                elif part.filename is not None:
                    files.append(
                        RecordedFile(
                            part_name=name,
                            filename=part.filename,
                            size=len(data),
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(data),
                        )
                    )
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :] or "/"
        body, files = await self._parse_body(request)
        record = RecordedRequest(
            index=-1,
            method=request.method,
            path=path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body,
            files=files,
            time=self.clock.now(),
        )
        try:
            response = await self._route(request, record, body, files)
        except _ApiError as err:
            response = _json_response(err.status, err.to_body(), err.headers)
            record.response = err.to_body()
        record.status = response.status
        if record.response is None and isinstance(response, web.Response) and response.body:
            with contextlib.suppress(Exception):
                record.response = json.loads(response.body)  # type: ignore[arg-type]
        record.index = len(self.requests)
        self.requests.append(record)
        self._notify()
        return response

    async def _route(
        self, request: web.Request, record: RecordedRequest, body: Any, files: list[RecordedFile]
    ) -> web.StreamResponse:
        matched: tuple[_RouteHandler, dict[str, str]] | None = None
        path_allowed: list[str] = []
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(record.path)
            if m is None:
                continue
            if method != record.method:
                path_allowed.append(method)
                continue
            matched = (handler, {k: v for k, v in m.groupdict().items() if v is not None})
            record.token = matched[1].get("token")
            break

        # Injected failures win over everything else, even over unknown routes.
        for inj in self._injections:
            if inj.remaining > 0 and self._matches(record, inj.method, inj.path_glob, None):
                inj.remaining -= 1
                inj.hits += 1
                if isinstance(inj.body, (dict, list)):
                    return _json_response(inj.status, inj.body, inj.headers)
                return web.Response(status=inj.status, text=str(inj.body), headers=inj.headers)

        if matched is None:
            if path_allowed:
                raise _ApiError(405, 0, "405: Method Not Allowed")
            raise _ApiError(404, 0, "404: Not Found")
        handler, params = matched
        # Webhook and interaction-callback routes are authenticated by the token in the path only.
        if not (record.path.startswith("/webhooks/") or record.path.startswith("/interactions/")):
            self._check_bot_auth(request)
        return await handler(_Ctx(request=request, record=record, params=params, body=body, files=files))

    def _check_bot_auth(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bot ") or (self.token is not None and auth != f"Bot {self.token}"):
            raise _ApiError(401, 0, "401: Unauthorized")

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], _RouteHandler]]:
        app = r"(?P<app>\d+)"
        tok = r"(?P<token>[^/]+)"
        table: list[tuple[str, str, _RouteHandler]] = [
            ("GET", r"/users/@me", self._r_get_me),
            ("GET", r"/oauth2/applications/@me", self._r_get_app),
            ("GET", r"/applications/@me", self._r_get_app),
            ("GET", r"/gateway", self._r_gateway),
            ("GET", r"/gateway/bot", self._r_gateway),
            ("GET", rf"/applications/{app}/commands", self._r_get_commands),
            ("PUT", rf"/applications/{app}/commands", self._r_put_commands),
            ("POST", rf"/applications/{app}/commands", self._r_post_command),
            ("GET", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._r_get_commands),
            ("PUT", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._r_put_commands),
            ("POST", rf"/applications/{app}/guilds/(?P<guild>\d+)/commands", self._r_post_command),
            ("POST", rf"/interactions/(?P<iid>\d+)/{tok}/callback", self._r_callback),
            ("GET", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", self._r_webhook_get),
            ("PATCH", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", self._r_webhook_patch),
            ("DELETE", rf"/webhooks/{app}/{tok}/messages/(?P<mid>@original|\d+)", self._r_webhook_delete),
            ("POST", rf"/webhooks/{app}/{tok}", self._r_webhook_post),
            ("POST", r"/channels/(?P<cid>\d+)/messages", self._r_channel_post),
            ("GET", r"/channels/(?P<cid>\d+)/messages", self._r_channel_history),
            ("GET", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_channel_get_message),
            ("PATCH", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_channel_patch),
            ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_channel_delete),
            ("POST", r"/channels/(?P<cid>\d+)/typing", self._r_typing),
            ("GET", r"/channels/(?P<cid>\d+)", self._r_get_channel),
            ("POST", r"/users/@me/channels", self._r_create_dm),
            ("GET", r"/users/(?P<uid>\d+)", self._r_get_user),
            ("GET", r"/guilds/(?P<gid>\d+)", self._r_get_guild),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    # ----------------------------------------------------------------------------------------------------------
    # REST: identity and commands
    # ----------------------------------------------------------------------------------------------------------

    async def _r_get_me(self, ctx: _Ctx) -> web.StreamResponse:
        data = self.bot_user.to_dict()
        data.update({"verified": True, "mfa_enabled": False, "flags": 0, "locale": "en-US"})
        return _json_response(200, data)

    async def _r_get_app(self, ctx: _Ctx) -> web.StreamResponse:
        return _json_response(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_user.username,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self._owner.to_dict(),
                "flags": 0,
                "bot": self.bot_user.to_dict(),
                "summary": "",
            },
        )

    async def _r_gateway(self, ctx: _Ctx) -> web.StreamResponse:
        # Only AutoShardedClient asks; point it back here.
        return _json_response(
            200,
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            },
        )

    def _check_app(self, ctx: _Ctx) -> None:
        if int(ctx.params["app"]) != self.application_id:
            raise _ApiError(403, 50001, "Missing Access")

    def _guild_param(self, ctx: _Ctx) -> int | None:
        if "guild" not in ctx.params:
            return None
        gid = int(ctx.params["guild"])
        if gid not in self.guilds or not self.guilds[gid].bot_member:
            raise _ApiError(403, 50001, "Missing Access")
        return gid

    def _validate_command(self, cmd: Mapping[str, Any], index: int) -> dict[str, Any]:
        errs: dict[str, Any] = {}
        name = cmd.get("name")
        ctype = cmd.get("type", 1)
        if not isinstance(name, str) or not (1 <= len(name) <= 32):
            errs["name"] = _max_length_error(32)
        elif ctype == 1 and not re.fullmatch(r"[-_\w]{1,32}", name) or (ctype == 1 and name != name.lower()):
            errs["name"] = {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME", "message": "Invalid name"}]}
        desc = cmd.get("description", "")
        if ctype == 1 and (not isinstance(desc, str) or not (1 <= len(desc) <= 100)):
            errs["description"] = _max_length_error(100)
        errs.update(contexts.command_field_errors(cmd))
        return {str(index): errs} if errs else {}

    def _store_commands(self, commands: list[dict[str, Any]], guild_id: int | None) -> list[dict[str, Any]]:
        previous = {(c["name"], c.get("type", 1)): c for c in self._commands.get(guild_id, [])}
        stored: list[dict[str, Any]] = []
        for cmd in commands:
            key = (cmd["name"], cmd.get("type", 1))
            # Discord keeps a command's id across overwrites when name and type are unchanged.
            old = previous.get(key)
            obj: dict[str, Any] = {
                "id": old["id"] if old else str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                "contexts": None,
                "integration_types": [0],
            }
            obj.update(copy.deepcopy(cmd))
            # what the command declared is kept as sent; an unset install list is Discord's default, guild only
            obj["integration_types"] = obj["integration_types"] or [contexts.GUILD_INSTALL]
            if guild_id is not None:
                obj["guild_id"] = str(guild_id)
            stored.append(obj)
        return stored

    async def _r_get_commands(self, ctx: _Ctx) -> web.StreamResponse:
        self._check_app(ctx)
        return _json_response(200, self.commands(self._guild_param(ctx)))

    async def _r_put_commands(self, ctx: _Ctx) -> web.StreamResponse:
        self._check_app(ctx)
        guild_id = self._guild_param(ctx)
        body = ctx.body if isinstance(ctx.body, list) else []
        errors: dict[str, Any] = {}
        for i, cmd in enumerate(body):
            errors.update(self._validate_command(cmd, i))
        if errors:
            raise _ApiError(400, 50035, "Invalid Form Body", errors=errors)
        self._commands[guild_id] = self._store_commands(body, guild_id)
        self.command_syncs.append(CommandSync(guild_id=guild_id, commands=copy.deepcopy(body), time=self.clock.now()))
        return _json_response(200, self.commands(guild_id))

    async def _r_post_command(self, ctx: _Ctx) -> web.StreamResponse:
        self._check_app(ctx)
        guild_id = self._guild_param(ctx)
        cmd = ctx.body if isinstance(ctx.body, dict) else {}
        errors = self._validate_command(cmd, 0)
        if errors:
            raise _ApiError(400, 50035, "Invalid Form Body", errors=errors["0"])
        key = (cmd["name"], cmd.get("type", 1))
        stored = self._store_commands([cmd], guild_id)[0]
        others = [c for c in self._commands.get(guild_id, []) if (c["name"], c.get("type", 1)) != key]
        self._commands[guild_id] = others + [stored]
        return _json_response(201, stored)

    # ----------------------------------------------------------------------------------------------------------
    # Messages
    # ----------------------------------------------------------------------------------------------------------

    def _check_files(self, files: list[RecordedFile], size_limit: int) -> None:
        for f in files:
            if f.size > size_limit:
                raise _ApiError(413, 40005, "Request entity too large")
        if len(files) > self.limits.max_attachments:
            raise _ApiError(400, 30015, "Maximum number of attachments in a message reached (10)")

    def _build_attachments(
        self,
        channel_id: int,
        existing: list[dict[str, Any]],
        listed: list[dict[str, Any]] | None,
        files: list[RecordedFile],
        ephemeral: bool,
    ) -> list[dict[str, Any]]:
        """Discord's attachment semantics: ``attachments`` lists kept attachments (by id) and new files (by
        index into ``files[n]``); if it is absent, new files are appended to the existing ones."""

        def new_attachment(f: RecordedFile, meta: Mapping[str, Any]) -> dict[str, Any]:
            att_id = self.snowflake()
            filename = str(meta.get("filename") or f.filename)
            self._attachment_data[att_id] = f.data
            url = f"{self.base_url}/cdn/attachments/{channel_id}/{att_id}/{quote(filename)}"
            att: dict[str, Any] = {
                "id": str(att_id),
                "filename": filename,
                "size": f.size,
                "url": url,
                "proxy_url": url,
                "content_type": mimetypes.guess_type(filename)[0] or "application/octet-stream",
            }
            if meta.get("description"):
                att["description"] = meta["description"]
            dims = _png_size(f.data)
            if dims:
                att["width"], att["height"] = dims
            if ephemeral:
                att["ephemeral"] = True
            return att

        by_index: dict[int, RecordedFile] = {}
        for f in files:
            m = re.fullmatch(r"files\[(\d+)\]", f.part_name)
            by_index[int(m.group(1)) if m else len(by_index)] = f
        if listed is None:
            return list(existing) + [new_attachment(f, {}) for f in files]
        existing_by_id = {str(a["id"]): a for a in existing}
        result: list[dict[str, Any]] = []
        used: set[int] = set()
        for meta in listed:
            ident = str(meta.get("id"))
            if ident in existing_by_id:
                result.append(existing_by_id[ident])
            elif ident.isdigit() and int(ident) in by_index:
                used.add(int(ident))
                result.append(new_attachment(by_index[int(ident)], meta))
        for idx, f in sorted(by_index.items()):
            if idx not in used:
                result.append(new_attachment(f, {}))
        if len(result) > self.limits.max_attachments:
            raise _ApiError(400, 30015, "Maximum number of attachments in a message reached (10)")
        return result

    @staticmethod
    def _resolve_embeds(embeds: list[dict[str, Any]], attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Discord answers with the CDN URL where the request said attachment://name.
        urls = {a["filename"]: a["url"] for a in attachments}
        out = []
        for embed in copy.deepcopy(embeds):
            embed.setdefault("type", "rich")
            for key in ("image", "thumbnail", "footer", "author"):
                sub = embed.get(key)
                if not isinstance(sub, dict):
                    continue
                for url_key in ("url", "icon_url"):
                    url = sub.get(url_key)
                    if isinstance(url, str) and url.startswith("attachment://"):
                        resolved = urls.get(url[len("attachment://") :])
                        if resolved:
                            sub[url_key] = resolved
                            sub["proxy_" + url_key] = resolved
            out.append(embed)
        return out

    def _create_message(
        self,
        channel_id: int,
        body: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        flags: int = 0,
        msg_type: int = 0,
        interaction: FakeInteraction | None = None,
    ) -> dict[str, Any]:
        flags |= int(body.get("flags") or 0)
        ephemeral = bool(flags & FLAG_EPHEMERAL)
        attachments = self._build_attachments(channel_id, [], body.get("attachments"), files, ephemeral)
        now = self.clock.now()
        msg: dict[str, Any] = {
            "id": str(self.snowflake()),
            "channel_id": str(channel_id),
            "type": msg_type,
            "content": body.get("content") or "",
            "embeds": self._resolve_embeds(body.get("embeds") or [], attachments),
            "components": copy.deepcopy(body.get("components") or []),
            "attachments": attachments,
            "flags": flags,
            "author": self.bot_user.to_dict(),
            "timestamp": _iso(now),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            # Not part of Discord's message object: kept so tests can assert on what the bot asked for.
            "allowed_mentions": copy.deepcopy(body.get("allowed_mentions")),
        }
        if body.get("message_reference"):
            msg["message_reference"] = copy.deepcopy(body["message_reference"])
        if interaction is not None:
            msg["webhook_id"] = str(self.application_id)
            msg["application_id"] = str(self.application_id)
            metadata: dict[str, Any] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.user.to_dict(),
                "authorizing_integration_owners": copy.deepcopy(interaction.payload["authorizing_integration_owners"]),
            }
            if interaction.source_message_id is not None:
                metadata["interacted_message_id"] = str(interaction.source_message_id)
            msg["interaction_metadata"] = metadata
        self.messages[int(msg["id"])] = msg
        return msg

    def _edit_message(self, msg: dict[str, Any], body: Mapping[str, Any], files: list[RecordedFile]) -> dict[str, Any]:
        if "content" in body:
            msg["content"] = body["content"] or ""
        if "components" in body:
            msg["components"] = copy.deepcopy(body["components"] or [])
        if "allowed_mentions" in body:
            msg["allowed_mentions"] = copy.deepcopy(body["allowed_mentions"])
        if "attachments" in body or files:
            msg["attachments"] = self._build_attachments(
                int(msg["channel_id"]),
                msg["attachments"],
                body.get("attachments"),
                files,
                bool(msg["flags"] & FLAG_EPHEMERAL),
            )
        if "embeds" in body:
            msg["embeds"] = self._resolve_embeds(body["embeds"] or [], msg["attachments"])
        # The ephemeral flag cannot change after creation; editing ends the "thinking" state.
        msg["flags"] = int(msg["flags"]) & ~FLAG_LOADING
        msg["edited_timestamp"] = _iso(self.clock.now())
        return msg

    def _message_or_404(self, message_id: int) -> dict[str, Any]:
        msg = self.messages.get(message_id)
        if msg is None:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg

    # ----------------------------------------------------------------------------------------------------------
    # REST: interaction callback and webhooks
    # ----------------------------------------------------------------------------------------------------------

    def _body_dict(self, ctx: _Ctx) -> dict[str, Any]:
        return ctx.body if isinstance(ctx.body, dict) else {}

    async def _r_callback(self, ctx: _Ctx) -> web.StreamResponse:
        inter = self.interactions.get(int(ctx.params["iid"]))
        if inter is None or inter.token != ctx.params["token"]:
            raise _ApiError(404, 10062, "Unknown interaction")
        if inter.acked:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        if self.clock.now() - inter.created_at > self.limits.ack_deadline:
            raise _ApiError(404, 10062, "Unknown interaction")
        body = self._body_dict(ctx)
        cb_type = body.get("type")
        data = body.get("data") or {}
        allowed = {CALLBACK_CHANNEL_MESSAGE, CALLBACK_DEFERRED_CHANNEL_MESSAGE, CALLBACK_MODAL}
        if inter.type == INTERACTION_AUTOCOMPLETE:
            allowed = {CALLBACK_AUTOCOMPLETE_RESULT}  # an autocomplete may only be answered with choices
        if inter.type == INTERACTION_COMPONENT or (
            inter.type == INTERACTION_MODAL_SUBMIT and inter.source_message_id is not None
        ):
            allowed |= {CALLBACK_DEFERRED_UPDATE_MESSAGE, CALLBACK_UPDATE_MESSAGE}
        if inter.type == INTERACTION_MODAL_SUBMIT:
            allowed.discard(CALLBACK_MODAL)
        if cb_type not in allowed:
            raise _ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": "Invalid interaction response type",
                            }
                        ]
                    }
                },
            )

        resource: dict[str, Any] = {"type": cb_type}
        if cb_type in (CALLBACK_CHANNEL_MESSAGE, CALLBACK_UPDATE_MESSAGE):
            self._check_files(ctx.files, inter.attachment_size_limit)
            _validate_message_body(data, self.limits.max_content)
        if cb_type == CALLBACK_CHANNEL_MESSAGE:
            if _is_empty_message(data, ctx.files):
                raise _ApiError(400, 50006, "Cannot send an empty message")
            msg = self._create_message(
                inter.channel.id, data, ctx.files, msg_type=self._response_message_type(inter), interaction=inter
            )
            inter.original_message_id = int(msg["id"])
            resource["message"] = msg
        elif cb_type == CALLBACK_DEFERRED_CHANNEL_MESSAGE:
            # Discord shows a "thinking" message straight away; it becomes @original.
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            msg = self._create_message(
                inter.channel.id, {}, [], flags=flags, msg_type=self._response_message_type(inter), interaction=inter
            )
            inter.original_message_id = int(msg["id"])
            inter.original_loading = True
        elif cb_type in (CALLBACK_DEFERRED_UPDATE_MESSAGE, CALLBACK_UPDATE_MESSAGE):
            # For component interactions @original is the message that carries the component.
            inter.original_message_id = inter.source_message_id
            if cb_type == CALLBACK_UPDATE_MESSAGE and inter.source_message_id is not None:
                msg = self._message_or_404(inter.source_message_id)
                self._edit_message(msg, data, ctx.files)
                resource["message"] = msg
        elif cb_type == CALLBACK_MODAL:
            inter.modal = copy.deepcopy(data)
        elif cb_type == CALLBACK_AUTOCOMPLETE_RESULT:
            errors = uploads.choices_errors(data.get("choices"))
            if errors:
                raise _ApiError(400, 50035, "Invalid Form Body", errors={"data": errors})
            inter.choices = copy.deepcopy(data["choices"])
        inter.ack_type = cb_type

        original = inter.original
        interaction_obj: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        if original is not None:
            interaction_obj.update(
                {
                    "response_message_id": original["id"],
                    "response_message_loading": bool(int(original["flags"]) & FLAG_LOADING),
                    "response_message_ephemeral": bool(int(original["flags"]) & FLAG_EPHEMERAL),
                }
            )
        if ctx.record.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        # discord.py reads data['interaction'] unconditionally: a 204 here would crash it.
        return _json_response(200, {"interaction": interaction_obj, "resource": resource})

    @staticmethod
    def _response_message_type(inter: FakeInteraction) -> int:
        # 20 = CHAT_INPUT_COMMAND reply; component and modal responses are plain messages.
        return 20 if inter.type == INTERACTION_APPLICATION_COMMAND else 0

    def _webhook_interaction(self, ctx: _Ctx) -> tuple[FakeInteraction, dict[str, str]]:
        """Token checks shared by all /webhooks/{app}/{token} routes; returns the interaction and the
        rate-limit headers for a successful answer."""
        inter = self._by_token.get(ctx.params["token"])
        if inter is None or int(ctx.params["app"]) != self.application_id:
            raise _ApiError(404, 10015, "Unknown Webhook")
        if self.clock.now() - inter.created_at > self.limits.token_lifetime:
            raise _ApiError(401, 50027, "Invalid Webhook Token")
        headers = self._take_rate_limit(inter.token)
        if not inter.acked:
            # Without an acknowledgement within 3 s the token never became usable.
            raise _ApiError(404, 10015, "Unknown Webhook")
        return inter, headers

    def _take_rate_limit(self, token: str) -> dict[str, str]:
        """Sliding-window 5 requests / 2 s per webhook token; raises a retryable 429 when exceeded."""
        now = self.clock.now()
        window = self._rate_windows.setdefault(token, deque())
        limit, period = self.limits.webhook_rate_limit, self.limits.webhook_rate_window
        while window and window[0] <= now - period:
            window.popleft()
        bucket = "fake" + token[:12]
        if len(window) >= limit:
            retry_after = max(0.001, round(window[0] + period - now, 3))
            raise _ApiError(
                429,
                0,
                "You are being rate limited.",
                body={"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
                headers={
                    # discord.py only retries a 429 that carries Via (otherwise it assumes a Cloudflare ban).
                    "Via": "1.1 google",
                    "Retry-After": str(math.ceil(retry_after)),
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{now + retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Bucket": bucket,
                    "X-RateLimit-Scope": "user",
                },
            )
        window.append(now)
        if not self.limits.advertise_rate_limit_headers:
            return {}
        reset_after = max(0.001, round(window[0] + period - now, 3))
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(limit - len(window)),
            "X-RateLimit-Reset": f"{now + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    def _webhook_message(self, inter: FakeInteraction, mid: str) -> dict[str, Any]:
        if mid == "@original":
            if inter.original_message_id is None:
                raise _ApiError(404, 10008, "Unknown Message")
            return self._message_or_404(inter.original_message_id)
        message_id = int(mid)
        if message_id != inter.original_message_id and message_id not in inter.followup_ids:
            raise _ApiError(404, 10008, "Unknown Message")
        return self._message_or_404(message_id)

    async def _r_webhook_get(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        return _json_response(200, self._webhook_message(inter, ctx.params["mid"]), headers)

    async def _r_webhook_patch(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        msg = self._webhook_message(inter, ctx.params["mid"])
        body = self._body_dict(ctx)
        self._check_files(ctx.files, inter.attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        self._edit_message(msg, body, ctx.files)
        if int(msg["id"]) == inter.original_message_id:
            inter.original_loading = False
        return _json_response(200, msg, headers)

    async def _r_webhook_delete(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        msg = self._webhook_message(inter, ctx.params["mid"])
        del self.messages[int(msg["id"])]
        return web.Response(status=204, headers=headers)

    async def _r_webhook_post(self, ctx: _Ctx) -> web.StreamResponse:
        inter, headers = self._webhook_interaction(ctx)
        body = self._body_dict(ctx)
        self._check_files(ctx.files, inter.attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        if _is_empty_message(body, ctx.files):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        if inter.original_loading and inter.original_message_id is not None:
            # Deprecated but live Discord behaviour: the first followup after a type-5 defer edits the
            # loading message instead of creating a new one (its ephemeral state stays that of the defer).
            msg = self._edit_message(self._message_or_404(inter.original_message_id), body, ctx.files)
            inter.original_loading = False
        else:
            msg = self._create_message(inter.channel.id, body, ctx.files, interaction=inter)
            inter.followup_ids.append(int(msg["id"]))
        if ctx.record.query.get("wait") not in ("1", "true", "True"):
            return web.Response(status=204, headers=headers)
        return _json_response(200, msg, headers)

    # ----------------------------------------------------------------------------------------------------------
    # REST: channels, DMs, guilds, CDN
    # ----------------------------------------------------------------------------------------------------------

    def _channel_or_404(self, ctx: _Ctx) -> FakeChannel:
        channel = self.channels.get(int(ctx.params["cid"]))
        if channel is None:
            raise _ApiError(404, 10003, "Unknown Channel")
        if not contexts.bot_can_access(channel, self._guild_of(channel)):
            # a guild without the bot, or a DM / group DM it is not in: only the interaction webhook works there
            raise _ApiError(403, 50001, "Missing Access")
        return channel

    def _channel_message_or_404(self, ctx: _Ctx, channel: FakeChannel) -> dict[str, Any]:
        msg = self._message_or_404(int(ctx.params["mid"]))
        # Ephemeral messages are invisible to the bot's own channel routes.
        if int(msg["channel_id"]) != channel.id or int(msg["flags"]) & FLAG_EPHEMERAL:
            raise _ApiError(404, 10008, "Unknown Message")
        return msg

    def _check_can_post(self, channel: FakeChannel) -> None:
        if channel.type == 1:
            assert channel.recipient is not None
            if not channel.recipient.accepts_dms:
                raise _ApiError(403, 50007, "Cannot send messages to this user")
        elif not channel.bot_can_post:
            raise _ApiError(403, 50013, "Missing Permissions")

    async def _r_channel_post(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        self._check_can_post(channel)
        body = self._body_dict(ctx)
        self._check_files(ctx.files, self.limits.channel_attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        if _is_empty_message(body, ctx.files):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        # Only SUPPRESS_EMBEDS / SUPPRESS_NOTIFICATIONS may be set here; ephemeral is interaction-only.
        body = dict(body)
        body["flags"] = int(body.get("flags") or 0) & ~FLAG_EPHEMERAL
        msg = self._create_message(channel.id, body, ctx.files)
        return _json_response(200, msg)

    async def _r_channel_history(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        limit = int(ctx.record.query.get("limit", "50"))
        visible = [m for m in self.channel_messages(channel.id) if not int(m["flags"]) & FLAG_EPHEMERAL]
        return _json_response(200, list(reversed(visible))[:limit])

    async def _r_channel_get_message(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        return _json_response(200, self._channel_message_or_404(ctx, channel))

    async def _r_channel_patch(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        msg = self._channel_message_or_404(ctx, channel)
        body = self._body_dict(ctx)
        self._check_files(ctx.files, self.limits.channel_attachment_size_limit)
        _validate_message_body(body, self.limits.max_content)
        return _json_response(200, self._edit_message(msg, body, ctx.files))

    async def _r_channel_delete(self, ctx: _Ctx) -> web.StreamResponse:
        channel = self._channel_or_404(ctx)
        msg = self._channel_message_or_404(ctx, channel)
        del self.messages[int(msg["id"])]
        return web.Response(status=204)

    async def _r_typing(self, ctx: _Ctx) -> web.StreamResponse:
        self._channel_or_404(ctx)
        return web.Response(status=204)

    async def _r_get_channel(self, ctx: _Ctx) -> web.StreamResponse:
        return _json_response(200, self._channel_dict(self._channel_or_404(ctx)))

    async def _r_create_dm(self, ctx: _Ctx) -> web.StreamResponse:
        body = self._body_dict(ctx)
        user = self.users.get(int(body.get("recipient_id") or 0))
        if user is None:
            raise _ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={"recipient_id": {"_errors": [{"code": "USER_UNKNOWN", "message": "Unknown user"}]}},
            )
        return _json_response(200, self._channel_dict(self.dm_channel(user)))

    async def _r_get_user(self, ctx: _Ctx) -> web.StreamResponse:
        user = self.users.get(int(ctx.params["uid"]))
        if user is None:
            raise _ApiError(404, 10013, "Unknown User")
        return _json_response(200, user.to_dict())

    async def _r_get_guild(self, ctx: _Ctx) -> web.StreamResponse:
        guild = self.guilds.get(int(ctx.params["gid"]))
        if guild is None:
            raise _ApiError(404, 10004, "Unknown Guild")
        if not guild.bot_member:
            raise _ApiError(403, 50001, "Missing Access")
        return _json_response(200, self._guild_dict(guild, full=False))

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        att_id = int(request.match_info["attachment_id"])
        data = self._attachment_data.get(att_id)
        if att_id in self.fail_downloads:
            return web.Response(status=self.fail_downloads[att_id], text="CDN error")
        if data is None:
            return web.Response(status=404, text="Not Found")
        ctype = mimetypes.guess_type(request.match_info["filename"])[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype)

    # ----------------------------------------------------------------------------------------------------------
    # Gateway
    # ----------------------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether some bot has an identified or resumed gateway connection right now."""
        return any(c.session is not None for c in self._connections)

    async def _send(self, conn: _Connection, frame: dict[str, Any]) -> None:
        async with conn.lock:
            if conn.ws.closed:
                return
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await conn.ws.send_str(json.dumps(frame))

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        # discord.py asks for zlib-stream compression; it inflates only binary frames, so plain text JSON
        # frames are fine and the query string is ignored.
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws=ws, request=request)
        self._connections.append(conn)
        self._notify()
        try:
            await self._send(conn, {"op": OP_HELLO, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload")
                    break
                self.gateway_received.append(payload)
                await self._on_gateway_payload(conn, payload)
                self._notify()
        finally:
            self._connections.remove(conn)
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
                # A client that closes with 1000/1001 ends its session (Discord invalidates it); anything else
                # (abrupt loss, discord.py's 4000 on reconnect) leaves it resumable.
                clean_close = not conn.dropped_by_server and ws.close_code in (1000, 1001)
                if clean_close or not session.resumable:
                    session.ended = True
            self._notify()
        return ws

    async def _on_gateway_payload(self, conn: _Connection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == OP_HEARTBEAT:
            await self._send(conn, {"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            await self._identify(conn, data or {})
        elif op == OP_RESUME:
            await self._resume(conn, data or {})
        elif op == OP_REQUEST_GUILD_MEMBERS:
            d = data or {}
            await self._dispatch_to(
                conn.session,
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": d.get("guild_id"),
                    "members": [],
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "nonce": d.get("nonce"),
                },
            )
        # Presence updates and anything else need no answer.

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if self.token is not None and data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identify_count += 1
        session = _Session(id=secrets.token_hex(16), intents=int(data.get("intents") or 0))
        self._sessions[session.id] = session
        session.connection = conn
        conn.session = session
        ready = {
            "v": 10,
            "user": self.bot_user.to_dict() | {"verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self.guilds.values() if g.bot_member],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        await self._dispatch_to(session, "READY", ready)
        if session.intents & INTENT_GUILDS:
            # GUILD_CREATE belongs to the GUILDS intent: without it Discord leaves READY's guilds unavailable,
            # and so does the emulator, so a bot that relies on guild names without the intent fails here too.
            for guild in self.guilds.values():
                if guild.bot_member:
                    await self._dispatch_to(session, "GUILD_CREATE", self._guild_dict(guild, full=True))

    async def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        self.resume_count += 1
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or session.ended or not session.resumable:
            self.invalid_session_count += 1
            await self._send(conn, {"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        old = session.connection
        if old is not None and old is not conn:
            old.session = None
            old.dropped_by_server = True
            with contextlib.suppress(Exception):
                await old.ws.close(code=4000)
        session.connection = conn
        conn.session = session
        last_seq = int(data.get("seq") or 0)
        for seq, frame in list(session.history):
            if seq > last_seq:
                await self._send(conn, frame)
        self.resumed_count += 1
        await self._dispatch_to(session, "RESUMED", {"_trace": ["fake-discord"]})

    async def _dispatch_to(self, session: _Session | None, event: str, data: dict[str, Any]) -> None:
        if session is None:
            return
        session.seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        session.history.append((session.seq, frame))
        if session.connection is not None:
            await self._send(session.connection, frame)

    def _live_sessions(self) -> list[_Session]:
        return [s for s in self._sessions.values() if not s.ended]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway dispatch to every live bot session (buffered for replay if disconnected)."""
        sessions = self._live_sessions()
        if not sessions:
            raise RuntimeError(f"cannot dispatch {event}: no bot session is connected to the emulator")
        for session in sessions:
            await self._dispatch_to(session, event, data)
        self._notify()

    async def drop_gateway(self, code: int | None = None, timeout: float = 5.0) -> None:
        """Cut every gateway connection: abruptly (``code=None``, like a network loss) or with a close frame.

        Sessions stay resumable (unless :meth:`invalidate_sessions` was called), so discord.py RESUMEs.
        Returns once the emulator has seen the connections go.
        """
        conns = list(self._connections)
        for conn in conns:
            conn.dropped_by_server = True
            if code is None:
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
            else:
                # Do not wait for the client's close reply here; the handler finishes when it arrives.
                asyncio.ensure_future(conn.ws.close(code=code))
        await self.wait_until(
            lambda: all(c not in self._connections for c in conns), timeout=timeout, what="gateway drop"
        )

    def invalidate_sessions(self) -> None:
        """Make every existing session non-resumable: the next RESUME gets op 9 (d=false), forcing IDENTIFY."""
        for session in self._sessions.values():
            session.resumable = False
            if session.connection is None:
                session.ended = True

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT on every connection (discord.py then reconnects and resumes)."""
        for conn in list(self._connections):
            await self._send(conn, {"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    # ----------------------------------------------------------------------------------------------------------
    # Interactions
    # ----------------------------------------------------------------------------------------------------------

    def _resolve_place(self, user: FakeUser, guild_id: Any, channel_id: Any) -> FakeChannel:
        if channel_id is not DEFAULT and channel_id is not None:
            channel = self.channels.get(int(channel_id))
            if channel is None:
                raise LookupError(f"unknown channel {channel_id}; declare it with add_channel()")
            if guild_id is not DEFAULT and (None if guild_id is None else int(guild_id)) != channel.guild_id:
                raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
            contexts.check_invoker(channel, user)
            return channel
        if guild_id is None:
            return self.dm_channel(user)
        gid = self.default_guild.id if guild_id is DEFAULT else int(guild_id)
        guild = self.guilds.get(gid)
        if guild is None:
            raise LookupError(f"unknown guild {guild_id}; declare it with add_guild()")
        if not guild.channels:
            raise LookupError(f"guild {gid} has no channels; declare one with add_channel()")
        return guild.channels[0]

    def _base_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        permissions: int | str | None,
        attachment_size_limit: int | None,
        locale: str,
        owners: dict[str, str],
    ) -> tuple[dict[str, Any], int]:
        size_limit = (
            self.limits.default_attachment_size_limit if attachment_size_limit is None else attachment_size_limit
        )
        payload: dict[str, Any] = {
            "id": str(self.snowflake()),
            "application_id": str(self.application_id),
            "type": itype,
            # Long, URL-safe and unique, like Discord's tokens.
            "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48),
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": self._channel_dict(channel),
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": size_limit,
            "app_permissions": str(
                contexts.app_permissions(channel, self._guild_of(channel), self._channel_permissions_for_bot(channel))
            ),
            "authorizing_integration_owners": dict(owners),
            "context": contexts.interaction_context(channel),
        }
        if channel.guild_id is not None:
            perms = DEFAULT_MEMBER_PERMISSIONS if permissions is None else int(permissions)
            if perms & ADMINISTRATOR:
                # Discord sends the member's computed channel permissions, and administrators have them all.
                perms = ALL_PERMISSIONS
            payload["channel"]["permissions"] = str(perms)
            payload.update(
                {
                    "guild_id": str(channel.guild_id),
                    "guild": {"id": str(channel.guild_id), "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "member": self._member_dict(user, perms),
                }
            )
        else:
            payload["user"] = user.to_dict()
            if payload["context"] == contexts.CONTEXT_PRIVATE_CHANNEL:
                payload["channel"] = contexts.private_channel_dict(channel, user)  # as the invoking user sees it
        return payload, size_limit

    def _guild_of(self, channel: FakeChannel) -> FakeGuild | None:
        return None if channel.guild_id is None else self.guilds.get(channel.guild_id)

    def _component_owners(self, user: FakeUser, channel: FakeChannel, msg: dict[str, Any] | None) -> dict[str, str]:
        # A component or modal on a message sent through an interaction is authorized by that interaction's
        # installs (so a click on a user-installed command's message keeps the installing user's key "1"); on the
        # bot's own channel messages, by the guild install that let the bot post there.
        metadata = (msg or {}).get("interaction_metadata") or {}
        if "authorizing_integration_owners" in metadata:
            return dict(metadata["authorizing_integration_owners"])
        installs = [contexts.GUILD_INSTALL] if msg is not None else [contexts.GUILD_INSTALL, contexts.USER_INSTALL]
        return contexts.authorizing_owners(contexts.interaction_context(channel), self._guild_of(channel), user,
                                           installs)

    async def _send_interaction(
        self,
        payload: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        size_limit: int,
        source_message_id: int | None = None,
    ) -> FakeInteraction:
        inter = FakeInteraction(
            self,
            payload=payload,
            user=user,
            channel=channel,
            attachment_size_limit=size_limit,
            created_at=self.clock.now(),
            source_message_id=source_message_id,
        )
        self.interactions[inter.id] = inter
        self._by_token[inter.token] = inter
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    def _find_command(self, name: str, guild_id: int | None, ctype: int = 1) -> tuple[dict[str, Any], int | None]:
        if guild_id is not None:
            for cmd in self._commands.get(guild_id, []):
                if cmd["name"] == name and cmd.get("type", 1) == ctype:
                    return cmd, guild_id
        for cmd in self._commands.get(None, []):
            if cmd["name"] == name and cmd.get("type", 1) == ctype:
                return cmd, None
        raise LookupError(
            f"command {name!r} is not registered (globally or in guild {guild_id}); sync it or register_commands()"
        )

    @staticmethod
    def _option_type(value: Any) -> int:
        if isinstance(value, bool):  # bool is an int subclass: check it first
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        if isinstance(value, str):
            return 3
        raise TypeError(f"unsupported option value {value!r}")

    def _build_options(self, definitions: list[dict[str, Any]], values: Mapping[str, Any]) -> list[dict[str, Any]]:
        defs = {d["name"]: d for d in definitions or []}
        options = []
        for name, value in values.items():
            definition = defs.get(name)
            otype = (
                int(definition["type"])
                if definition and definition.get("type") not in (1, 2)
                else self._option_type(value)
            )
            options.append({"name": name, "type": otype, "value": value})
        return options

    async def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: FakeUser | None = None,
        guild_id: Any = DEFAULT,
        channel_id: Any = DEFAULT,
        permissions: int | str | None = None,
        attachment_size_limit: int | None = None,
        locale: str = "en-US",
        focused: str | None = None,
    ) -> FakeInteraction:
        """Dispatch a CHAT_INPUT interaction for the registered command ``name`` ("group sub" for subcommands).

        ``options`` maps option names to values (type from the registered definition, else str 3, int 4,
        bool 5, float 10). Defaults: the default user in the default guild's first channel with ordinary
        member permissions; ``guild_id=None`` sends it from the user's DM with the bot, ``channel_id`` from any
        declared channel (a guild without the bot, or a private channel from ``add_private_channel``).
        ``data.guild_id`` is set only when the command is registered for that guild, as Discord does.
        ``context`` and ``authorizing_integration_owners`` follow from the channel, the command's
        ``integration_types``/``contexts`` and whether the user installed the app (discord_contexts.py); where no
        install authorizes the command, LookupError is raised, since a client would not offer it.
        An attachment option (type 11) takes an object from :meth:`upload_attachment`. With ``focused`` (an
        option name) it is an AUTOCOMPLETE interaction (type 4) for that option instead (discord_uploads.py).
        """
        user = user or self.default_user
        channel = self._resolve_place(user, guild_id, channel_id)
        parts = name.split()
        command, command_guild = self._find_command(parts[0], channel.guild_id)
        leaf_defs: list[dict[str, Any]] = command.get("options") or []
        chain: list[tuple[str, int]] = []
        for sub in parts[1:]:
            match = next((o for o in leaf_defs if o["name"] == sub and o.get("type") in (1, 2)), None)
            if match is None:
                raise LookupError(f"{name!r}: no subcommand {sub!r} registered")
            chain.append((sub, int(match["type"])))
            leaf_defs = match.get("options") or []
        built = self._build_options(leaf_defs, options or {})
        resolved = uploads.resolve_attachment_options(built, {str(k): {} for k in self._attachment_data})
        if focused is not None:
            built = uploads.focus(built, focused)
        for sub, stype in reversed(chain):
            built = [{"name": sub, "type": stype, "options": built}]
        data: dict[str, Any] = {"id": command["id"], "name": parts[0], "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if command_guild is not None:
            data["guild_id"] = str(command_guild)
        owners = contexts.command_owners(command, channel, self._guild_of(channel), user)
        if not owners:
            # no install authorizes it here (e.g. a guild-only install in a group DM): a client would not offer it
            installs, where = sorted(contexts.declared_installs(command)), sorted(contexts.declared_contexts(command))
            raise LookupError(
                f"/{parts[0]} is not available to {user.username} in context {contexts.interaction_context(channel)}"
                f" (integration_types {installs}, contexts {where})"
            )
        itype = INTERACTION_APPLICATION_COMMAND if focused is None else INTERACTION_AUTOCOMPLETE
        payload, size_limit = self._base_interaction(
            itype, data, user, channel, permissions, attachment_size_limit, locale, owners
        )
        return await self._send_interaction(payload, user, channel, size_limit)

    def upload_attachment(
        self, filename: str, data: bytes, *, content_type: str | None = None, channel_id: int | None = None,
        limit: int = uploads.USER_UPLOAD_LIMIT
    ) -> dict[str, Any]:
        """A user's upload (for an attachment option or :meth:`post_user_message`), served from the emulator's CDN.

        ValueError where Discord would refuse the upload: over ``limit``, the user's upload limit (10 MiB;
        Nitro raises it to ``uploads.NITRO_UPLOAD_LIMIT``; discord_uploads.py).
        """
        att_id = self.snowflake()
        channel = self.default_channel.id if channel_id is None else int(channel_id)
        att = uploads.attachment_object(self.base_url, channel, att_id, filename, data, content_type, limit=limit)
        self._attachment_data[att_id] = data
        return att

    def post_user_message(
        self, content: str = "", *, user: FakeUser | None = None, channel_id: int | None = None,
        attachments: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """A message a user posted (with uploads from :meth:`upload_attachment`), for message commands."""
        user = user or self.default_user
        channel = self.channels[self.default_channel.id if channel_id is None else int(channel_id)]
        msg = self._create_message(channel.id, {"content": content}, [])
        msg.update({"author": user.to_dict(), "attachments": copy.deepcopy(attachments or [])})
        return msg

    async def message_command(
        self, name: str, message_id: int, *, user: FakeUser | None = None, permissions: int | str | None = None,
        attachment_size_limit: int | None = None, locale: str = "en-US"
    ) -> FakeInteraction:
        """Dispatch a MESSAGE command (context menu, command type 3) ``name`` on stored message ``message_id``."""
        user = user or self.default_user
        msg = self._message_or_404(int(message_id))
        channel = self.channels[int(msg["channel_id"])]
        command, command_guild = self._find_command(name, channel.guild_id, uploads.COMMAND_MESSAGE)
        owners = contexts.command_owners(command, channel, self._guild_of(channel), user)
        if not owners:
            raise LookupError(f"message command {name!r} is not available to {user.username} here")
        data = uploads.message_command_data(command, msg)
        if command_guild is not None:
            data["guild_id"] = str(command_guild)
        payload, size_limit = self._base_interaction(
            INTERACTION_APPLICATION_COMMAND, data, user, channel, permissions, attachment_size_limit, locale, owners
        )
        return await self._send_interaction(payload, user, channel, size_limit)

    async def click(
        self,
        custom_id: str,
        message_id: int,
        *,
        user: FakeUser | None = None,
        values: list[str] | None = None,
        permissions: int | str | None = None,
        attachment_size_limit: int | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Dispatch a component (type 3) interaction for ``custom_id`` on stored message ``message_id``.

        The full stored message, ``components`` included, is sent (discord.py's DynamicItem needs it). The
        component must exist on the message and not be disabled, as in a real client. ``values`` is for
        select menus.
        """
        user = user or self.default_user
        msg = self.messages.get(int(message_id))
        if msg is None:
            raise LookupError(f"unknown message {message_id}")
        component = next((c for c in _walk_components(msg["components"]) if c.get("custom_id") == custom_id), None)
        if component is None:
            raise LookupError(f"message {message_id} has no component with custom_id {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled and cannot be used")
        channel = self.channels[int(msg["channel_id"])]
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": int(component["type"])}
        if values is not None:
            data["values"] = list(values)
        payload, size_limit = self._base_interaction(
            INTERACTION_COMPONENT, data, user, channel, permissions, attachment_size_limit, locale,
            self._component_owners(user, channel, msg),
        )
        payload["message"] = {k: v for k, v in copy.deepcopy(msg).items() if k != "allowed_mentions"}
        return await self._send_interaction(payload, user, channel, size_limit, source_message_id=int(msg["id"]))

    async def submit_modal(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: FakeUser | None = None,
        guild_id: Any = DEFAULT,
        channel_id: Any = DEFAULT,
        message_id: int | None = None,
        permissions: int | str | None = None,
        attachment_size_limit: int | None = None,
    ) -> FakeInteraction:
        """Dispatch a MODAL_SUBMIT (type 5) interaction with text-input ``values`` (custom_id -> text)."""
        user = user or self.default_user
        if message_id is not None:
            channel_id = int(self._message_or_404(int(message_id))["channel_id"])
        channel = self._resolve_place(user, guild_id, channel_id)
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        source = None if message_id is None else self._message_or_404(int(message_id))
        payload, size_limit = self._base_interaction(
            INTERACTION_MODAL_SUBMIT,
            {"custom_id": custom_id, "components": rows},
            user,
            channel,
            permissions,
            attachment_size_limit,
            "en-US",
            self._component_owners(user, channel, source),
        )
        if message_id is not None:
            payload["message"] = {
                k: v for k, v in copy.deepcopy(self.messages[int(message_id)]).items() if k != "allowed_mentions"
            }
        return await self._send_interaction(payload, user, channel, size_limit, source_message_id=message_id)


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
