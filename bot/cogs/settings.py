"""The Settings cog: /settings shows or changes a server's defaults, limits and blocklist (Manage Server only)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.cogs.options import nsfw_policy_choices, size_choices, style_completer
from bot.replies import MISSING_PERMISSIONS_TEXT, reply_ephemeral
from engine.params import ParamError
from engine.safety import policy_summary
from engine.service import Engine
from engine.settings import EngineSettings

SettingsCommand = app_commands.Command[Any, ..., None]


class SettingsCog(commands.Cog, name="Settings"):
    """Per-server defaults and blocklists, changed from Discord by members with Manage Server."""

    def __init__(self, bot: commands.Bot, engine: Engine) -> None:
        self.bot = bot
        self.engine = engine
        # the size choices are the deployment's, so the command is built per instance
        self.settings_command = self._build_settings(engine.settings)

    async def cog_load(self) -> None:
        """Add /settings to the tree (built in ``__init__``)."""
        self.bot.tree.add_command(self.settings_command)

    async def cog_unload(self) -> None:
        """Take /settings away again."""
        self.bot.tree.remove_command(self.settings_command.name)

    def _build_settings(self, settings: EngineSettings) -> SettingsCommand:
        # default_permissions hides the command from members without the permission (servers can change
        # that); the check enforces it, and the tree's on_error answers with the text in extras
        @app_commands.command(name="settings", description="Show or change this server's image defaults and limits",
                              extras={MISSING_PERMISSIONS_TEXT: "You need the Manage Server permission to change "
                                                                "these settings."})
        @app_commands.guild_only()
        # a server's settings belong to servers that installed the bot, never to a user install
        @app_commands.allowed_installs(guilds=True, users=False)
        @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
        @app_commands.default_permissions(manage_guild=True)
        @app_commands.checks.has_permissions(manage_guild=True)
        @app_commands.describe(
            steps="Default steps", guidance="Default guidance", negative_prompt="Default negative prompt",
            size="Default size", count="Default number of images", max_steps="Most steps a user may ask for",
            max_count="Most images per request", per_user_cap="Jobs one member may have waiting or running",
            nsfw_policy="Outside NSFW channels: allow posts all; spoiler blurs / block withholds NSFW images",
            nsfw_threshold="Image safety score (0.01-1) from which an image counts as NSFW here; lower is stricter",
            fast="Use fast mode by default",
            style="Default style preset for /imagine here (none: no style)",
            block="Words to add to this server's blocklist (comma-separated)",
            unblock="Words to remove from this server's blocklist (comma-separated)",
            reset="Drop all of this server's overrides",
            member_daily="Images one member may make per UTC day (0 = no limit)",
            member_hourly="Images one member may make per clock hour (0 = no limit)",
            server_daily="Images the whole server may make per UTC day (0 = no limit)",
            server_hourly="Images the whole server may make per clock hour (0 = no limit)",
            exempt_role="Toggle a role whose members have no quota",
        )
        @app_commands.choices(size=size_choices(settings), nsfw_policy=nsfw_policy_choices())
        @app_commands.autocomplete(style=style_completer(self.engine.styles))
        async def settings_cmd(interaction: discord.Interaction, steps: int | None = None,
                               guidance: float | None = None, negative_prompt: str | None = None,
                               size: str | None = None, count: int | None = None, max_steps: int | None = None,
                               max_count: int | None = None, per_user_cap: int | None = None,
                               nsfw_policy: str | None = None,
                               nsfw_threshold: app_commands.Range[float, 0.01, 1.0] | None = None,
                               fast: bool | None = None, block: str | None = None,
                               unblock: str | None = None, reset: bool | None = None,
                               member_daily: int | None = None, member_hourly: int | None = None,
                               server_daily: int | None = None, server_hourly: int | None = None,
                               exempt_role: discord.Role | None = None, style: str | None = None) -> None:
            changes = {k: v for k, v in dict(steps=steps, guidance=guidance, negative_prompt=negative_prompt,
                                             size=size, count=count, max_steps=max_steps, max_count=max_count,
                                             per_user_cap=per_user_cap, nsfw_policy=nsfw_policy,
                                             nsfw_threshold=nsfw_threshold, fast=fast,
                                             quota_member_day=member_daily, quota_member_hour=member_hourly,
                                             quota_server_day=server_daily,
                                             quota_server_hour=server_hourly, style=style).items()
                       if v is not None}
            if exempt_role is not None:
                roles = set(self.engine.policy.defaults(str(interaction.guild_id)).quota_exempt_roles)
                changes["quota_exempt_roles"] = tuple(sorted(roles ^ {str(exempt_role.id)}))
            await self.apply(interaction, changes, block=block or "", unblock=unblock or "", reset=bool(reset))

        return settings_cmd

    async def apply(self, interaction: discord.Interaction, changes: dict[str, Any], *, block: str, unblock: str,
                    reset: bool) -> None:
        """Reset, change, edit the blocklist (in that order), then show the server's settings."""
        guild = str(interaction.guild_id)
        try:
            if reset:
                await self.engine.policy.reset_defaults(guild)
            if changes:
                await self.engine.policy.set_defaults(guild, changes)
        except ParamError as exc:
            await reply_ephemeral(interaction, f"\u274c {render.safe(str(exc), 1500)}")
            return
        if block or unblock:
            words = await self.engine.policy.edit_blocklist(guild, block=block, unblock=unblock)
        else:
            words = self.engine.policy.blocklist(guild)
        changed = bool(changes or reset or block or unblock)
        await reply_ephemeral(interaction, self.settings_text(guild, words, changed=changed))

    def settings_text(self, guild: str, words: list[str], *, changed: bool) -> str:
        """A server's effective defaults, limits and blocked words."""
        d = self.engine.policy.defaults(guild)
        head = "\u2705 Saved. " if changed else ""
        blocked = ", ".join(render.safe(w, 40) for w in words[:30]) or "(none)"
        checking = bool(self.engine.settings.safety_model_id)
        threshold = f" \u00b7 NSFW from score {d.nsfw_threshold:g}" if checking else ""
        return (f"{head}**Defaults for this server**\n"
                f"Size {d.size} \u00b7 Steps {d.steps} (max {d.max_steps}) \u00b7 Guidance {d.guidance:g} \u00b7 "
                f"Images {d.count} (max {d.max_count}) \u00b7 Sampler {d.scheduler} \u00b7 "
                f"Fast {'on' if d.fast else 'off'} \u00b7 Style {render.safe(d.style or 'none', 40)}\n"
                f"Negative prompt: {render.safe(d.negative_prompt, 300) or '(none)'}\n"
                f"Per-member cap: {d.per_user_cap} \u00b7 NSFW policy: {d.nsfw_policy} "
                f"({policy_summary(d.nsfw_policy, checking)}){threshold}\n"
                f"Quotas (images; 0 = none): member {d.quota_member_day}/day, {d.quota_member_hour}/hour \u00b7 "
                f"server {d.quota_server_day}/day, {d.quota_server_hour}/hour \u00b7 exempt roles: "
                f"{', '.join(f'<@&{r}>' for r in d.quota_exempt_roles) or '(none)'}\n"
                f"Blocked words: {blocked}")
