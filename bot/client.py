"""The discord.py client: loads the cogs, answers command errors, and syncs slash commands when they changed."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.bot_settings import BotSettings
from bot.cogs.forms import FormsCog
from bot.cogs.help import HelpCog
from bot.cogs.imagine import ImagineCog
from bot.cogs.prefer import PreferCog
from bot.cogs.quota import QuotaCog
from bot.cogs.settings import SettingsCog
from bot.cogs.show import ShowCog
from bot.cogs.status import StatusCog
from bot.i18n.translator import CatalogueTranslator
from bot.installs import command_contexts, command_installs
from bot.invite import invite_url
from bot.rate_limits import RateLimitCounter
from bot.replies import missing_permissions_text, reply_ephemeral
from engine.service import Engine

log = logging.getLogger(__name__)


def point_at_discord(settings: BotSettings) -> None:
    """Send REST and gateway traffic to DISCORD_API_BASE / DISCORD_GATEWAY_URL (a proxy, or a test server).

    discord.py reads both class attributes when it builds each request and connection.
    """
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class ImagineTree(app_commands.CommandTree["ImagineBot"]):
    """Answers command errors without a traceback: a refused check says why, anything else is logged."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.MissingPermissions):
            text = missing_permissions_text(interaction, error)
        else:
            name = interaction.command.name if interaction.command else "?"
            log.error("command /%s failed (interaction %s)", name, interaction.id, exc_info=error)
            text = ("Something went wrong on our side. Please try again; if it keeps happening, tell the "
                    "server's operator (it is in their log).")
        try:
            await reply_ephemeral(interaction, text)
        except discord.HTTPException:
            pass


class ImagineBot(commands.AutoShardedBot):
    """The bot. ``engine`` is shared with the admin panel; the cogs hold everything else.

    Sharded automatically: Discord closes a single gateway connection of a bot in more than 2 500 servers
    (4011), so the bot asks Discord how many shards it needs and opens one connection per shard.
    """

    def __init__(self, engine: Engine, settings: BotSettings, *, force_sync: bool = False, gallery_url: str = "",
                 **options: Any) -> None:
        options.setdefault("intents", discord.Intents(guilds=True))
        options.setdefault("allowed_mentions", render.NO_MENTIONS)
        # the tree's defaults: every command declares them unless it narrows them itself (/settings does)
        options.setdefault("allowed_installs", command_installs(settings.user_installs))
        options.setdefault("allowed_contexts", command_contexts(settings.user_installs))
        super().__init__(command_prefix=commands.when_mentioned, tree_cls=ImagineTree, help_command=None, **options)
        self.engine = engine
        self.settings = settings
        self.force_sync = force_sync
        self.gallery_url = gallery_url  # the members' gallery, where the operator set it up (/help names it)
        self._rate_limits = RateLimitCounter(engine.metrics.discord_rate_limits)

    async def setup_hook(self) -> None:
        self._rate_limits.attach()
        await self.tree.set_translator(CatalogueTranslator())  # the commands in members' languages
        await self.add_cog(ImagineCog(self, self.engine, self.settings))
        await self.add_cog(FormsCog(self))
        await self.add_cog(SettingsCog(self, self.engine))
        await self.add_cog(StatusCog(self.engine))
        await self.add_cog(QuotaCog(self.engine))
        await self.add_cog(HelpCog(self, self.gallery_url))
        await self.add_cog(ShowCog(self.engine))
        await self.add_cog(PreferCog(self, self.engine))
        await self.sync_commands_if_changed()
        if self.application_id is not None:
            log.info("invite the bot to a server with %s", invite_url(self.application_id))

    async def close(self) -> None:
        """Stop counting rate limits, then close as discord.py does (cogs unload first)."""
        self._rate_limits.detach()
        await super().close()

    def guild_names(self) -> dict[str, str]:
        """Guild id -> name, for the admin panel."""
        return {str(g.id): g.name for g in self.guilds if getattr(g, "name", None)}

    async def _command_hash(self, guild: discord.abc.Snowflake | None) -> str:
        # what Discord is sent, translations included (new ones must reach Discord too); sorted by name: the order
        # in which the cogs add their commands is not part of their definition
        translator = self.tree.translator
        payload = [await c.get_translated_payload(self.tree, translator) if translator else c.to_dict(self.tree)
                   for c in self.tree.get_commands(guild=guild)]
        payload.sort(key=lambda c: str(c["name"]))
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    async def sync_commands_if_changed(self) -> None:
        """Sync the command tree only when its definitions changed (or when asked).

        Discord allows 200 command creates a day per guild, so every start must not sync.
        """
        guild = discord.Object(self.settings.discord_guild_id) if self.settings.discord_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        await self._remove_other_scopes(str(guild.id) if guild else "global")
        digest = await self._command_hash(guild)
        key = f"commands:{self.application_id}:{guild.id if guild else 'global'}"
        if await self.engine.kv_get(key) == digest and not self.force_sync:
            log.info("slash commands unchanged; not syncing")
            return
        await self.tree.sync(guild=guild)
        await self.engine.kv_set(key, digest)
        log.info("slash commands synced %s", f"to guild {guild.id}" if guild else "globally")

    async def _remove_other_scopes(self, scope: str) -> None:
        """Commands live in one scope (global, or DISCORD_GUILD_ID's guild): copies synced earlier to the other
        scope are removed, or every command would show twice in that server."""
        app = self.application_id
        known = f"commands:{app}:scopes"
        stored = await self.engine.kv_get(known)
        # before this list was kept, the digest of the scope synced last is all there is to go by
        scopes = json.loads(stored) if stored else [s for s in ("global", scope)
                                                    if await self.engine.kv_get(f"commands:{app}:{s}")]
        for old in scopes:
            if old == scope:
                continue
            if old == "global":
                await self.http.bulk_upsert_global_commands(app, [])  # type: ignore[arg-type]
            else:
                await self.http.bulk_upsert_guild_commands(app, int(old), [])  # type: ignore[arg-type]
            await self.engine.kv_set(f"commands:{app}:{old}", "")
            log.info("removed the slash commands left %s", "globally" if old == "global" else f"in guild {old}")
        await self.engine.kv_set(known, json.dumps([scope]))
