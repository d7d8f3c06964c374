"""The bot's invite link: the scopes and the least permissions it needs, in one place."""

from __future__ import annotations

import discord

# View Channels, Send Messages (and in threads), Embed Links, Attach Files, Read Message History: a result is
# posted as a channel message, in a thread too, once its 15-minute interaction token has expired; everything
# else goes through the interaction itself
INVITE_PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True,
                                         embed_links=True, attach_files=True, read_message_history=True)
INVITE_SCOPES = ("bot", "applications.commands")


def invite_url(application_id: int) -> str:
    """The server-install link of the application ``application_id``."""
    return discord.utils.oauth_url(application_id, permissions=INVITE_PERMISSIONS, scopes=INVITE_SCOPES)
