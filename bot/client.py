"""The discord.py client: wiring commands, buttons and delivery to the engine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.actions import Actions, reply_ephemeral
from bot.commands import build_commands
from bot.delivery import Delivery
from bot.settings import BotSettings
from bot.views import DYNAMIC_ITEMS
from engine.service import Engine

log = logging.getLogger(__name__)


def point_at_discord(settings: BotSettings) -> None:
    """Send REST and gateway traffic to DISCORD_API_BASE / DISCORD_GATEWAY_URL (a proxy, or a test server).

    discord.py reads both class attributes when it builds each request and connection.
    """
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class ImagineTree(app_commands.CommandTree["ImagineBot"]):
    """Logs command errors with context and answers the user without a traceback."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        name = interaction.command.name if interaction.command else "?"
        log.error("command /%s failed (interaction %s)", name, interaction.id, exc_info=error)
        try:
            await reply_ephemeral(interaction, "Something went wrong on our side. Please try again; if it keeps "
                                               "happening, tell the server's operator (it is in their log).")
        except discord.HTTPException:
            pass


class ImagineBot(commands.Bot):
    """The bot. ``engine`` is shared with the admin panel; ``delivery`` posts results."""

    def __init__(self, engine: Engine, settings: BotSettings, *, force_sync: bool = False,
                 **options: Any) -> None:
        options.setdefault("intents", discord.Intents(guilds=True))
        options.setdefault("allowed_mentions", render.NO_MENTIONS)
        super().__init__(command_prefix=commands.when_mentioned, tree_cls=ImagineTree, help_command=None, **options)
        self.engine = engine
        self.settings = settings
        self.force_sync = force_sync
        self.actions = Actions(self)
        self.delivery = Delivery(self)
        self.synced = False

    async def setup_hook(self) -> None:
        for command in build_commands(self):
            self.tree.add_command(command)
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self.sync_commands_if_changed()
        self.delivery.start()

    def guild_names(self) -> dict[str, str]:
        """Guild id -> name, for the admin panel."""
        return {str(g.id): g.name for g in self.guilds if getattr(g, "name", None)}

    def _command_hash(self, guild: discord.abc.Snowflake | None) -> str:
        payload = [c.to_dict(self.tree) for c in self.tree.get_commands(guild=guild)]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    async def sync_commands_if_changed(self) -> None:
        """Sync the command tree only when its definitions changed (or when asked).

        Discord allows 200 command creates a day per guild, so every start must not sync.
        """
        guild = discord.Object(self.settings.discord_guild_id) if self.settings.discord_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        digest = self._command_hash(guild)
        key = f"commands:{self.application_id}:{guild.id if guild else 'global'}"
        store = self.engine.store
        assert store is not None
        stored = await asyncio.to_thread(store.kv_get, key)
        if stored == digest and not self.force_sync:
            log.info("slash commands unchanged; not syncing")
            return
        await self.tree.sync(guild=guild)
        await asyncio.to_thread(store.kv_set, key, digest)
        self.synced = True
        log.info("slash commands synced %s", f"to guild {guild.id}" if guild else "globally")

    async def close(self) -> None:
        await self.delivery.stop()
        await super().close()
