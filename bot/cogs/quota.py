"""The Quota cog: /quota shows a member what is left of this server's image quotas and when they reset."""

from __future__ import annotations

import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.i18n.speech import locale_of, say
from bot.installs import place_of
from bot.replies import reply_ephemeral
from engine.requests.params import Defaults
from engine.rules.quota import Usage, has_quota, windows
from engine.service import Engine


def _line(label: str, used: int, limit: int, reset: float, locale: str) -> str:
    if not limit:
        return f"**{say(locale, label)}:** " + say(locale, "no limit")
    # <t:...:R> is written out by each member's Discord client, in their language ("in 3 hours")
    return f"**{say(locale, label)}:** " + say(locale, "{left} of {limit} images left \u00b7 resets {when}",
                                              left=max(0, limit - used), limit=limit, when=f"<t:{int(reset)}:R>")


def quota_text(defaults: Defaults, usage: Usage, *, exempt: bool, now: float, in_server: bool = True,
               locale: str = "") -> str:
    """What /quota answers, in ``locale``: each quota with what is left and when it resets (outside servers: the
    member's own)."""
    if not has_quota(defaults):
        return say(locale, "This server has no image quotas." if in_server else
                   "There are no image quotas outside servers.")
    w = windows(now)
    head = say(locale, "Your images on this server" if in_server else "Your images outside servers (DMs and group DMs)")
    lines = [f"**{head}**" + (" \u2014 " + say(locale, "your role makes you exempt from quotas") if exempt else ""),
             _line("Today", usage.member_day, defaults.quota_member_day, w.day_end, locale),
             _line("This hour", usage.member_hour, defaults.quota_member_hour, w.hour_end, locale)]
    if in_server:
        lines += [f"**{say(locale, 'The whole server')}**",
                  _line("Today", usage.server_day, defaults.quota_server_day, w.day_end, locale),
                  _line("This hour", usage.server_hour, defaults.quota_server_hour, w.hour_end, locale)]
    return "\n".join(lines)


class QuotaCog(commands.Cog, name="Quota"):
    """Quotas as members see them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @app_commands.command(name="quota", description="How many images you may still make here, and when that resets")
    async def quota(self, interaction: discord.Interaction) -> None:
        """Answer with the quotas in force here (this server's, or the member's own outside servers), only for
        the member."""
        guild = str(interaction.guild_id) if interaction.guild_id else None
        place = place_of(interaction)
        defaults = self.engine.policy.quota_defaults(guild, place)
        now = time.time()
        usage = await self.engine.quota_usage(guild, str(interaction.user.id))
        exempt = self.engine.policy.quota_exempt(guild, place.role_ids)
        await reply_ephemeral(interaction, quota_text(defaults, usage, exempt=exempt, now=now, in_server=bool(guild),
                                                      locale=locale_of(interaction)))
