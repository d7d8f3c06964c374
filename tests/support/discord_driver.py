"""FakeDiscord's test driver: slash commands, button clicks, message commands, modal submits and user
messages, sent to the bot as a Discord client would. A mixin: the state lives in ``FakeDiscord.__init__``."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from typing import Any

from . import discord_contexts as contexts
from . import discord_uploads as uploads
from .discord_interaction import FakeInteraction
from .discord_protocol import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    DEFAULT,
    DEFAULT_MEMBER_PERMISSIONS,
    INTERACTION_APPLICATION_COMMAND,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
)
from .discord_records import (
    FakeChannel,
    FakeGuild,
    FakeUser,
    _walk_components,
)


class DriverMixin:
    """Methods of :class:`FakeDiscord`; see the module docstring."""

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
        if isinstance(value, FakeUser):
            return 6
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
            if definition:
                _check_range(name, value, definition)
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
        resolved.update(uploads.resolve_user_options(built))
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


def _check_range(name: str, value: Any, definition: Mapping[str, Any]) -> None:
    """Refuse a number outside the option's declared min_value/max_value, as Discord's client does (it never
    sends one; the API answers 50035 too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = definition.get("min_value"), definition.get("max_value")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"option {name!r}: {value} is outside {low}..{high}; Discord would not send it")
