"""The Quota cog: /quota shows a member what is left of this server's image quotas and when they reset."""

from __future__ import annotations

import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.installs import place_of
from bot.replies import reply_ephemeral
from engine.requests.params import Defaults
from engine.rules.quota import Usage, has_quota, windows
from engine.service import Engine


def _line(label: str, used: int, limit: int, reset: float) -> str:
    if not limit:
        return f"**{label}:** no limit"
    return f"**{label}:** {max(0, limit - used)} of {limit} images left \u00b7 resets <t:{int(reset)}:R>"


def quota_text(defaults: Defaults, usage: Usage, *, exempt: bool, now: float) -> str:
    """What /quota answers: each quota with what is left and when it resets."""
    if not has_quota(defaults):
        return "This server has no image quotas."
    w = windows(now)
    lines = ["**Your images on this server**" + (" \u2014 your role makes you exempt from quotas" if exempt else ""),
             _line("Today", usage.member_day, defaults.quota_member_day, w.day_end),
             _line("This hour", usage.member_hour, defaults.quota_member_hour, w.hour_end),
             "**The whole server**",
             _line("Today", usage.server_day, defaults.quota_server_day, w.day_end),
             _line("This hour", usage.server_hour, defaults.quota_server_hour, w.hour_end)]
    return "\n".join(lines)


class QuotaCog(commands.Cog, name="Quota"):
    """Quotas as members see them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @app_commands.command(name="quota", description="How many images you may still make here, and when that resets")
    async def quota(self, interaction: discord.Interaction) -> None:
        """Answer with this member's and this server's quotas, only for the member."""
        if interaction.guild_id is None:
            await reply_ephemeral(interaction, "Quotas apply in servers; there is none here.")
            return
        guild = str(interaction.guild_id)
        defaults = self.engine.policy.defaults(guild)
        now = time.time()
        usage = await self.engine.quota_usage(guild, str(interaction.user.id))
        exempt = self.engine.policy.quota_exempt(guild, place_of(interaction).role_ids)
        await reply_ephemeral(interaction, quota_text(defaults, usage, exempt=exempt, now=now))
