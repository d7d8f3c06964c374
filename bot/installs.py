"""Where the commands may be used (install types and contexts), and what the bot may do there.

Discord installs an app to a server (guild install: the bot joins it) or to a user's account (user install:
the commands follow the user into servers without the bot, group DMs and DMs with other people). The bot user
can post only where it is: in servers that installed it and in its own DMs. Everywhere else, its only ways
to answer are the interaction itself (its webhook, for 15 minutes) and a DM to the requester.
"""

from __future__ import annotations

import discord
from discord import app_commands

from engine.jobs.records import Place


def command_installs(user_installs: bool) -> app_commands.AppInstallationType:
    """The install types every command declares unless it says otherwise (USER_INSTALLS switches users off)."""
    return app_commands.AppInstallationType(guild=True, user=user_installs)


def command_contexts(user_installs: bool) -> app_commands.AppCommandContext:
    """The contexts every command declares unless it says otherwise.

    Group DMs and other people's DMs are reachable only through a user install (Discord refuses
    PRIVATE_CHANNEL without USER_INSTALL), so they go with it.
    """
    return app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=user_installs)


def may_post_in_channel(interaction: discord.Interaction) -> bool:
    """Whether the bot may post in the interaction's channel as itself, once the interaction's token is gone.

    In a server: only if the server installed the app (``authorizing_integration_owners`` key "0" is that
    server); a user install alone puts no bot there and Discord answers 403 / 50001. Outside servers: only in
    the bot's own DM, never in a group DM or a DM between other users.
    """
    if interaction.guild_id is not None:
        return guild_installed(interaction)
    return not interaction.context.private_channel


def guild_installed(interaction: discord.Interaction) -> bool:
    """Whether the interaction comes from a server that installed the app (where the bot is a member)."""
    # discord.py compares the guild id with authorizing_integration_owners["0"]
    return interaction.guild_id is not None and interaction.is_guild_integration()


def place_of(interaction: discord.Interaction) -> Place:
    """Where an interaction was made, in the engine's terms (its rules decide what follows from it)."""
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    roles = getattr(interaction.user, "roles", None) or []
    return Place(channel_nsfw=bool(is_nsfw()) if callable(is_nsfw) else False,
                 guild_installed=guild_installed(interaction),
                 role_ids=tuple(str(role.id) for role in roles))
