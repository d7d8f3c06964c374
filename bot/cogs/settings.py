"""The Settings cog: the /settings group shows or changes a server's defaults, limits, quotas and moderation
(Manage Server only).

Every number option declares its minimum and maximum, so Discord itself refuses an out-of-range value
before the bot sees it; the bounds are the deployment's (MAX_STEPS, MAX_COUNT, ...), so the group is built
per instance. Annotations are evaluated here at definition time (no ``from __future__ import annotations``):
discord.py reads the ``Range`` bounds from them, and they come from this instance's settings.
"""

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.cogs.options import (
    PICTURE_RULE_NAMES,
    model_completer,
    nsfw_policy_choices,
    picture_rule_choices,
    size_choices,
    style_completer,
)
from bot.i18n.speech import locale_of, say, spoken
from bot.replies import MISSING_PERMISSIONS_TEXT, reply_ephemeral, reply_error
from engine.engine_settings import EngineSettings
from engine.gpu.safety import policy_summary
from engine.requests.params import ParamError
from engine.rules.deny import MAX_DAYS
from engine.rules.policy import PER_USER_CAP_MAX, QUOTA_MAX
from engine.service import Engine

NEEDS_MANAGE_SERVER = {MISSING_PERMISSIONS_TEXT: "You need the Manage Server permission to change these settings."}


def _actor(interaction: discord.Interaction) -> str:
    """Who made a change, for the moderation log."""
    return f"{interaction.user.name} ({interaction.user.id})"


def _given(**values: Any) -> dict[str, Any]:
    """The options the member filled in."""
    return {name: value for name, value in values.items() if value is not None}


class SettingsCog(commands.Cog, name="Settings"):
    """Per-server defaults, limits, quotas and moderation, changed from Discord by members with Manage Server."""

    def __init__(self, bot: commands.AutoShardedBot, engine: Engine) -> None:
        self.bot = bot
        self.engine = engine
        self.settings_group = self._build_group(engine.settings)

    async def cog_load(self) -> None:
        """Add /settings to the tree (built in ``__init__``)."""
        self.bot.tree.add_command(self.settings_group)

    async def cog_unload(self) -> None:
        """Take /settings away again."""
        self.bot.tree.remove_command(self.settings_group.name)

    def _build_group(self, settings: EngineSettings) -> app_commands.Group:
        # default_permissions hides the group from members without the permission (servers can change that);
        # each subcommand's check enforces it, and the tree's on_error answers with the text in its extras.
        # A server's settings belong to servers that installed the bot, never to a user install.
        group = app_commands.Group(
            name="settings", description="Show or change this server's image defaults, limits, quotas and moderation",
            guild_only=True, default_permissions=discord.Permissions(manage_guild=True),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False))
        manage = app_commands.checks.has_permissions(manage_guild=True)
        max_steps, max_guidance, max_count = settings.max_steps, float(settings.max_guidance), settings.max_count

        @group.command(name="show", description="Show this server's defaults, limits, quotas and blocked words",
                       extras=NEEDS_MANAGE_SERVER)
        @manage
        async def show(interaction: discord.Interaction) -> None:
            await self.apply(interaction, {})

        @group.command(name="defaults", description="Defaults for /imagine on this server", extras=NEEDS_MANAGE_SERVER)
        @manage
        @app_commands.describe(
            steps="Default steps", guidance="Default guidance", negative_prompt="Default negative prompt",
            size="Default size", count="Default number of images", fast="Use fast mode by default",
            style="Default style preset for /imagine here (none: no style)", model="Default model for /imagine here")
        @app_commands.choices(size=size_choices(settings))
        @app_commands.autocomplete(style=style_completer(self.engine.styles), model=model_completer(self.engine))
        async def defaults(interaction: discord.Interaction,
                           steps: app_commands.Range[int, 1, max_steps] | None = None,
                           guidance: app_commands.Range[float, 0.0, max_guidance] | None = None,
                           negative_prompt: str | None = None, size: str | None = None,
                           count: app_commands.Range[int, 1, max_count] | None = None, fast: bool | None = None,
                           style: str | None = None, model: str | None = None) -> None:
            await self.apply(interaction, _given(steps=steps, guidance=guidance, negative_prompt=negative_prompt,
                                                 size=size, count=count, fast=fast, style=style, model=model))

        @group.command(name="limits", description="What members may ask for on this server", extras=NEEDS_MANAGE_SERVER)
        @manage
        @app_commands.describe(max_steps="Most steps a member may ask for", max_count="Most images per request",
                               per_user_cap="Jobs one member may have waiting or running",
                               models="The models members may choose here, by name (all: every offered one)",
                               loras="The LoRAs members may choose here, by name (all: every offered one)")
        async def limits(interaction: discord.Interaction,
                         max_steps: app_commands.Range[int, 1, max_steps] | None = None,
                         max_count: app_commands.Range[int, 1, max_count] | None = None,
                         per_user_cap: app_commands.Range[int, 1, PER_USER_CAP_MAX] | None = None,
                         models: str | None = None, loras: str | None = None) -> None:
            await self.apply(interaction, _given(max_steps=max_steps, max_count=max_count, per_user_cap=per_user_cap,
                                                 models_allowed=models, loras_allowed=loras))

        @group.command(name="quota", description="Images per UTC day and clock hour on this server",
                       extras=NEEDS_MANAGE_SERVER)
        @manage
        @app_commands.describe(
            member_daily="Images one member may make per UTC day (0 = no limit)",
            member_hourly="Images one member may make per clock hour (0 = no limit)",
            server_daily="Images the whole server may make per UTC day (0 = no limit)",
            server_hourly="Images the whole server may make per clock hour (0 = no limit)",
            exempt_role="Toggle a role whose members have no quota")
        async def quota(interaction: discord.Interaction,
                        member_daily: app_commands.Range[int, 0, QUOTA_MAX] | None = None,
                        member_hourly: app_commands.Range[int, 0, QUOTA_MAX] | None = None,
                        server_daily: app_commands.Range[int, 0, QUOTA_MAX] | None = None,
                        server_hourly: app_commands.Range[int, 0, QUOTA_MAX] | None = None,
                        exempt_role: discord.Role | None = None) -> None:
            changes = _given(quota_member_day=member_daily, quota_member_hour=member_hourly,
                             quota_server_day=server_daily, quota_server_hour=server_hourly)
            if exempt_role is not None:
                roles = set(self.engine.policy.defaults(str(interaction.guild_id)).quota_exempt_roles)
                changes["quota_exempt_roles"] = tuple(sorted(roles ^ {str(exempt_role.id)}))
            await self.apply(interaction, changes)

        @group.command(name="moderation", description="NSFW policy and blocked words on this server",
                       extras=NEEDS_MANAGE_SERVER)
        @manage
        @app_commands.describe(
            nsfw_policy="Outside NSFW channels: allow posts all; spoiler blurs / block withholds NSFW images",
            nsfw_threshold="Image safety score (0.01-1) from which an image counts as NSFW here; lower is stricter",
            block="Words to add to this server's blocklist (comma-separated)",
            unblock="Words to remove from this server's blocklist (comma-separated)",
            pictures="May members start from their own picture (image:, Vary with Imagine)")
        @app_commands.choices(nsfw_policy=nsfw_policy_choices(), pictures=picture_rule_choices())
        async def moderation(interaction: discord.Interaction, nsfw_policy: str | None = None,
                             nsfw_threshold: app_commands.Range[float, 0.01, 1.0] | None = None,
                             block: str | None = None, unblock: str | None = None,
                             pictures: str | None = None) -> None:
            await self.apply(interaction, _given(nsfw_policy=nsfw_policy, nsfw_threshold=nsfw_threshold,
                                                 pictures=pictures), block=block or "", unblock=unblock or "")

        @group.command(name="deny", description="Keep a member from making images on this server",
                       extras=NEEDS_MANAGE_SERVER)
        @manage
        @app_commands.describe(member="The member", days="For how many days (0: until you lift it)",
                               reason="Why (shown in the panel's moderation log)")
        async def deny(interaction: discord.Interaction, member: discord.User,
                       days: app_commands.Range[int, 0, MAX_DAYS] = 0, reason: str = "") -> None:
            entry = await self.engine.deny_list.deny(str(interaction.guild_id), str(member.id), days=days,
                                                     reason=reason, by_whom=_actor(interaction))
            locale = locale_of(interaction)
            text = say(locale, "{member} may not make images here until you lift it. `/settings undeny` lifts it.",
                       member=f"<@{member.id}>") if entry.until is None else \
                say(locale, "{member} may not make images here until {when}. `/settings undeny` lifts it.",
                    member=f"<@{member.id}>", when=f"<t:{int(entry.until)}:f>")
            await reply_ephemeral(interaction, "\u2705 " + text)

        @group.command(name="undeny", description="Let a denied member make images on this server again",
                       extras=NEEDS_MANAGE_SERVER)
        @manage
        @app_commands.describe(member="The member")
        async def undeny(interaction: discord.Interaction, member: discord.User) -> None:
            lifted = await self.engine.deny_list.undeny(str(interaction.guild_id), str(member.id),
                                                        by_whom=_actor(interaction))
            locale, who = locale_of(interaction), f"<@{member.id}>"
            await reply_ephemeral(interaction, "\u2705 " + say(locale, "{member} may make images here again.",
                                                               member=who) if lifted else
                                  say(locale, "{member} was not denied on this server.", member=who))

        @group.command(name="reset", description="Drop all of this server's own values (the blocklist stays)",
                       extras=NEEDS_MANAGE_SERVER)
        @manage
        async def reset(interaction: discord.Interaction) -> None:
            await self.apply(interaction, {}, reset=True)

        return group

    async def apply(self, interaction: discord.Interaction, changes: dict[str, Any], *, block: str = "",
                    unblock: str = "", reset: bool = False) -> None:
        """Reset, change, edit the blocklist (in that order), then show the server's settings."""
        guild = str(interaction.guild_id)
        actor = _actor(interaction)
        try:
            if reset:
                await self.engine.policy.reset_defaults(guild, actor=actor)
            if changes:
                await self.engine.policy.set_defaults(guild, changes, actor=actor)
        except ParamError as exc:
            await reply_error(interaction, exc)
            return
        if block or unblock:
            words = await self.engine.policy.edit_blocklist(guild, block=block, unblock=unblock, actor=actor)
        else:
            words = self.engine.policy.blocklist(guild)
        changed = bool(changes or reset or block or unblock)
        await reply_ephemeral(interaction, self.settings_text(guild, words, changed=changed,
                                                              locale=locale_of(interaction)))

    def settings_text(self, guild: str, words: list[str], *, changed: bool, locale: str = "") -> str:
        """A server's effective defaults, limits and blocked words, in ``locale`` (values as they are)."""
        d = self.engine.policy.defaults(guild)
        head = "\u2705 " + say(locale, "Saved.") + " " if changed else ""
        none = say(locale, "(none)")
        every = say(locale, "all offered")
        blocked = ", ".join(render.safe(w, 40) for w in words[:30]) or none
        checking = bool(self.engine.settings.safety_model_id)
        threshold = " \u00b7 " + say(locale, "NSFW from score {score}", score=f"{d.nsfw_threshold:g}") \
            if checking else ""

        def item(label: str, value: object) -> str:
            return f"{say(locale, label)} {value}"

        most = say(locale, "(max {limit})", limit=d.max_steps), say(locale, "(max {limit})", limit=d.max_count)
        on_off = say(locale, "on" if d.fast else "off")
        style = render.safe(d.style or say(locale, "none"), 40)
        model = d.model or self.engine.policy.limits.models[0].name
        return (f"{head}**{say(locale, 'Defaults for this server')}**\n" + " \u00b7 ".join((
                    item("Size", d.size), item("Steps", f"{d.steps} {most[0]}"), item("Guidance", f"{d.guidance:g}"),
                    item("Images", f"{d.count} {most[1]}"), item("Sampler", d.scheduler), item("Fast mode", on_off),
                    item("Style", style), item("Model", model))) + "\n" +
                say(locale, "Models members may choose: {models} \u00b7 LoRAs: {loras}",
                    models=", ".join(d.models_allowed) or every, loras=", ".join(d.loras_allowed) or every) + "\n" +
                say(locale, "Negative prompt: {words}", words=render.safe(d.negative_prompt, 300) or none) + "\n" +
                say(locale, "Per-member cap: {cap} \u00b7 NSFW policy: {policy} ({summary})", cap=d.per_user_cap,
                    policy=d.nsfw_policy, summary=say(locale, policy_summary(d.nsfw_policy, checking))) + threshold +
                " \u00b7 " + say(locale, "Members' own pictures: {rule}",
                                  rule=say(locale, PICTURE_RULE_NAMES[d.pictures])) + "\n" +
                say(locale, "Quotas (images; 0 = none): member {member_day}/day, {member_hour}/hour \u00b7 server "
                            "{server_day}/day, {server_hour}/hour \u00b7 exempt roles: {roles}",
                    member_day=d.quota_member_day, member_hour=d.quota_member_hour, server_day=d.quota_server_day,
                    server_hour=d.quota_server_hour,
                    roles=", ".join(f"<@&{r}>" for r in d.quota_exempt_roles) or none) + "\n" +
                say(locale, "Blocked words: {words}", words=blocked) + self._denied_text(guild, locale) +
                self._capped_text(guild, locale))

    def _denied_text(self, guild: str, locale: str) -> str:
        """The members denied on this server, and until when."""
        entries = self.engine.deny_list.entries(guild)
        if not entries:
            return ""
        shown = [f"<@{e.user_id}>" + ("" if e.until is None else " " + say(locale, "until {when}",
                                                                             when=f"<t:{int(e.until)}:d>"))
                 for e in entries[:20]]
        more = " " + say(locale, "and {count} more", count=len(entries) - 20) if len(entries) > 20 else ""
        return "\n" + say(locale, "Denied members: {members}", members=", ".join(shown) + more)

    def _capped_text(self, guild: str, locale: str) -> str:
        """The server's own values that the operator's ceilings hold down, and what applies instead."""
        notes = self.engine.policy.capped(guild)
        if not notes:
            return ""
        capped = say(locale, "Capped by the bot's operator (a server may lower these, not raise them):")
        return f"\n\u26a0\ufe0f {capped} " + "; ".join(render.safe(spoken(n, locale), 200) for n in notes) + "."
