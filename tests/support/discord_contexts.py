"""Install types and interaction contexts, as the Discord emulator models them.

An app is installed to a server (``GUILD_INSTALL``, 0) or to a user's account (``USER_INSTALL``, 1). A command
declares the installs it works through (``integration_types``) and where it may be used (``contexts``): in a
server (``GUILD``, 0), in the DM with the app's bot user (``BOT_DM``, 1), or in group DMs and DMs between other
users (``PRIVATE_CHANNEL``, 2). From these the rules below decide, for one interaction:

- its context, from the channel it comes from;
- which installations authorize it (``authorizing_integration_owners``): none means a real client would not
  offer the command there, so the emulator refuses to dispatch it;
- what the app may do there (``app_permissions``), and whether the bot user can reach the channel with its own
  token at all. A user install puts no bot in a server or a private channel: Discord answers the bot's channel
  requests there with 403 / 50001 "Missing Access", and only the interaction's webhook works.

Sources: ``developers/interactions/receiving-and-responding.mdx`` (interaction context types, the Authorizing
Integration Owners Object, the ``app_permissions`` footnote) and ``developers/interactions/application-commands.mdx``
(``integration_types`` and ``contexts``; PRIVATE_CHANNEL only with USER_INSTALL; bulk overwrites default
``contexts`` to all three). This module imports nothing from the emulator, which imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .discord_emulator import FakeChannel, FakeGuild, FakeUser

GUILD_INSTALL = 0
USER_INSTALL = 1
CONTEXT_GUILD = 0
CONTEXT_BOT_DM = 1
CONTEXT_PRIVATE_CHANNEL = 2
ALL_CONTEXTS = frozenset({CONTEXT_GUILD, CONTEXT_BOT_DM, CONTEXT_PRIVATE_CHANNEL})

# channel types
GUILD_TEXT = 0
DM = 1
GROUP_DM = 3

# app_permissions outside servers where the bot is a member (the footnote in receiving-and-responding.mdx):
# "ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE for (G)DMs with other users, and additionally
# USE_EXTERNAL_EMOJIS for DMs with the app's bot user". A user install in a server without the bot gets the
# private-channel set here too: Discord documents no value for it, and the bot must not rely on channel rights
# there anyway.
_EMBED_LINKS = 1 << 14
_ATTACH_FILES = 1 << 15
_MENTION_EVERYONE = 1 << 17
_USE_EXTERNAL_EMOJIS = 1 << 18
PRIVATE_APP_PERMISSIONS = _ATTACH_FILES | _EMBED_LINKS | _MENTION_EVERYONE
BOT_DM_APP_PERMISSIONS = PRIVATE_APP_PERMISSIONS | _USE_EXTERNAL_EMOJIS


def interaction_context(channel: FakeChannel) -> int:
    """GUILD for a server channel, BOT_DM for the bot's own DM, PRIVATE_CHANNEL for any other DM or group DM."""
    if channel.guild_id is not None:
        return CONTEXT_GUILD
    if channel.type == DM and channel.recipient is not None:
        return CONTEXT_BOT_DM
    return CONTEXT_PRIVATE_CHANNEL


def bot_can_access(channel: FakeChannel, guild: FakeGuild | None) -> bool:
    """Whether the bot user can use the channel routes: a server it is a member of, or its own DM."""
    context = interaction_context(channel)
    if context == CONTEXT_GUILD:
        return guild is not None and guild.bot_member
    return context == CONTEXT_BOT_DM


def app_permissions(channel: FakeChannel, guild: FakeGuild | None, in_channel: int) -> int:
    """The interaction's ``app_permissions``: ``in_channel`` (the bot's channel permissions) where it is a member."""
    context = interaction_context(channel)
    if context == CONTEXT_GUILD and guild is not None and guild.bot_member:
        return in_channel
    return BOT_DM_APP_PERMISSIONS if context == CONTEXT_BOT_DM else PRIVATE_APP_PERMISSIONS


def declared_installs(command: Mapping[str, Any]) -> frozenset[int]:
    """The installs a registered command works through (Discord's default: guild install only)."""
    if command.get("guild_id") is not None:
        return frozenset({GUILD_INSTALL})  # integration_types apply to global commands only
    return frozenset(command.get("integration_types") or [GUILD_INSTALL])


def declared_contexts(command: Mapping[str, Any]) -> frozenset[int]:
    """The contexts a registered command may be used in."""
    if command.get("guild_id") is not None:
        return frozenset({CONTEXT_GUILD})  # a guild command exists in its guild only
    contexts = command.get("contexts")
    if contexts is None:
        # a bulk overwrite without contexts allows all three; the deprecated dm_permission=false still hides DMs
        return ALL_CONTEXTS - {CONTEXT_BOT_DM} if command.get("dm_permission") is False else ALL_CONTEXTS
    return frozenset(contexts)


def authorizing_owners(context: int, guild: FakeGuild | None, user: FakeUser,
                       installs: Iterable[int]) -> dict[str, str]:
    """``authorizing_integration_owners`` for ``user`` in ``context``, through the given ``installs``.

    Key "0" (guild install) holds the server's id, or "0" in the bot's DM; a guild install never reaches a
    private channel. Key "1" (user install) holds the id of the user who installed the app, when they did.
    """
    installs = set(installs)
    owners: dict[str, str] = {}
    if GUILD_INSTALL in installs:
        if context == CONTEXT_GUILD and guild is not None and guild.bot_member:
            owners[str(GUILD_INSTALL)] = str(guild.id)
        elif context == CONTEXT_BOT_DM:
            owners[str(GUILD_INSTALL)] = "0"
    if USER_INSTALL in installs and user.app_installed:
        owners[str(USER_INSTALL)] = str(user.id)
    return owners


def command_owners(command: Mapping[str, Any], channel: FakeChannel, guild: FakeGuild | None,
                   user: FakeUser) -> dict[str, str]:
    """The owners that authorize ``command`` for ``user`` in ``channel``; empty where a client would not offer it."""
    context = interaction_context(channel)
    if context not in declared_contexts(command):
        return {}
    return authorizing_owners(context, guild, user, declared_installs(command))


def check_invoker(channel: FakeChannel, user: FakeUser) -> None:
    """Raise ValueError when ``user`` is not in the private channel they would act from."""
    if interaction_context(channel) == CONTEXT_PRIVATE_CHANNEL and user.id not in {u.id for u in channel.participants}:
        raise ValueError(f"user {user.username} is not in private channel {channel.id}")


def private_channel_dict(channel: FakeChannel, viewer: FakeUser | None) -> dict[str, Any]:
    """A DM between other users (type 1) or a group DM (type 3), with the participants other than ``viewer``."""
    others = [u.to_dict() for u in channel.participants if viewer is None or u.id != viewer.id]
    data: dict[str, Any] = {"id": str(channel.id), "type": channel.type, "last_message_id": None, "flags": 0,
                            "recipients": others}
    if channel.type == GROUP_DM:
        data.update({"name": channel.name or None, "icon": None, "owner_id": str(channel.participants[0].id)})
    return data


def command_field_errors(command: Mapping[str, Any]) -> dict[str, Any]:
    """``integration_types`` and ``contexts`` errors of one command, shaped like a 50035 body ({} when valid).

    PRIVATE_CHANNEL without USER_INSTALL is refused as the docs state the rule ("can only be included in
    contexts if USER_INSTALL is included in integration_types"); real Discord may be laxer.
    """
    errors: dict[str, Any] = {}
    types = command.get("integration_types")
    contexts = command.get("contexts")
    if types is not None and (not isinstance(types, list) or not set(types) <= {GUILD_INSTALL, USER_INSTALL}):
        errors["integration_types"] = _enum_error("integration_types")
    if contexts is not None and (not isinstance(contexts, list) or not set(contexts) <= ALL_CONTEXTS):
        errors["contexts"] = _enum_error("contexts")
    elif contexts and CONTEXT_PRIVATE_CHANNEL in contexts and USER_INSTALL not in (types or [GUILD_INSTALL]):
        errors["contexts"] = {"_errors": [{"code": "APPLICATION_COMMAND_CONTEXTS_INVALID",
                                           "message": "PRIVATE_CHANNEL requires the USER_INSTALL integration type"}]}
    return errors


def _enum_error(name: str) -> dict[str, Any]:
    return {"_errors": [{"code": "ENUM_TYPE_COERCE", "message": f"Invalid value in {name}."}]}
