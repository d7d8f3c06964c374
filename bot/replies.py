"""Answers that only the interacting user sees."""

from __future__ import annotations

import discord
from discord import app_commands

from bot import render
from bot.i18n.speech import locale_of, localized, spoken
from bot.render import NO_MENTIONS
from engine.jobs.records import Refused
from engine.requests.checks import phrase_of

# key of a command's ``extras``: what to tell a member who lacks the permissions its checks require
MISSING_PERMISSIONS_TEXT = "missing_permissions_text"


async def reply_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer only the user (in their language where the reply has a translation: bot/i18n), whether or not the
    interaction was acknowledged already."""
    text = localized(text, locale_of(interaction))[:2000]
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


def error_text(error: Exception, locale: str) -> str:
    """What a member reads for the engine's refusal or a wrong input: 🚫 for a refusal of what was asked
    (blocked words, NSFW), ✋ for the other refusals, ❌ for an input error; in their language where the
    catalogue has its words, escaped (it may quote theirs)."""
    mark = "❌"
    if isinstance(error, Refused):
        mark = "🚫" if error.reason in ("blocked", "nsfw_channel") else "✋"
    phrase = phrase_of(error)
    if not phrase.fields:  # a finished text whose parts cannot be told apart: inert as a whole
        return f"{mark} {render.safe(spoken(phrase, locale), 1800)}"
    return f"{mark} {spoken(phrase, locale, escape=lambda value: render.safe(value, 600))}"[:1900]


async def reply_error(interaction: discord.Interaction, error: Exception) -> None:
    """Answer only the user with ``error_text``."""
    await reply_ephemeral(interaction, error_text(error, locale_of(interaction)))


async def reply_privately(interaction: discord.Interaction, text: str) -> None:
    """Answer only the user; after a public acknowledgement ("thinking..."), take that placeholder away.

    The first followup after a deferral would fill the public placeholder, so the placeholder is ended
    first, the private answer sent as a message of its own, and then the placeholder deleted.
    """
    if not interaction.response.is_done() or interaction.response.type is not \
            discord.InteractionResponseType.deferred_channel_message:
        await reply_ephemeral(interaction, text)
        return
    text = localized(text, locale_of(interaction))
    await interaction.edit_original_response(content="\u2026", allowed_mentions=NO_MENTIONS)
    await interaction.followup.send(text[:2000], ephemeral=True, allowed_mentions=NO_MENTIONS)
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:  # already gone (deleted by a moderator): nothing left to take away
        pass


def missing_permissions_text(interaction: discord.Interaction, error: app_commands.MissingPermissions) -> str:
    """The command's own answer to a member without its permissions, else discord.py's generic one."""
    command = interaction.command
    text = command.extras.get(MISSING_PERMISSIONS_TEXT) if command is not None else None
    return str(text) if text else str(error)
