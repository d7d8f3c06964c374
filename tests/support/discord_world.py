"""FakeDiscord's world (users, guilds, channels, commands, stored messages) and its recording and waiting
helpers. A mixin: the state lives in ``FakeDiscord.__init__``."""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import time
from collections.abc import Callable
from typing import Any

from . import discord_contexts as contexts
from .discord_protocol import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_MEMBER_PERMISSIONS,
    DISCORD_EPOCH_MS,
    SEND_MESSAGES,
)
from .discord_records import (
    FakeChannel,
    FakeGuild,
    FakeUser,
    Injection,
    RecordedRequest,
    _iso,
)


class WorldMixin:
    """Methods of :class:`FakeDiscord`; see the module docstring."""

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

