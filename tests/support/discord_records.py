"""The emulator's value types (users, channels, guilds, recorded requests, injected failures) and the
validation of message bodies against Discord's limits."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .discord_protocol import (
    MiB,
)

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
            "flags": 0,
            "primary_guild": None,
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


