"""The slash commands: /imagine, /settings, /status, /cancel.

They are built at run time because the size choices and bounds come from the deployment's
settings (SIZES, MAX_STEPS...).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import render
from bot.actions import reply_ephemeral
from engine.moderation import normalize_word
from engine.params import MAX_SEED, NSFW_POLICIES, ParamError
from engine.settings import SCHEDULERS

if TYPE_CHECKING:
    from bot.client import ImagineBot

log = logging.getLogger(__name__)


def build_commands(bot: ImagineBot) -> list[app_commands.Command]:  # type: ignore[type-arg]
    """The command objects for this deployment."""
    settings = bot.engine.settings
    sizes = settings.sizes
    size_choices = [app_commands.Choice(name=f"{s} ({s.aspect_label()})", value=str(s)) for s in sizes[:25]]
    scheduler_choices = [app_commands.Choice(name=n, value=n) for n in SCHEDULERS]

    @app_commands.command(name="imagine", description="Generate images from a text prompt")
    @app_commands.describe(
        prompt="What to draw. Inline parameters work too: --ar 16:9 --seed 42 --no text --steps 30 --count 2",
        negative="What to keep out of the image",
        size="Image size (or use --ar 16:9 in the prompt)",
        steps=f"Denoising steps (1-{settings.max_steps})",
        guidance=f"How closely to follow the prompt (0-{settings.max_guidance:g})",
        seed=f"Seed for reproducible images (0-{MAX_SEED})",
        count=f"Number of images (1-{settings.max_count})",
        scheduler="Sampler",
        fast="Fast mode: 4 steps with LCM-LoRA",
    )
    @app_commands.choices(size=size_choices, scheduler=scheduler_choices)
    async def imagine(interaction: discord.Interaction, prompt: str, negative: str | None = None,
                      size: str | None = None, steps: int | None = None, guidance: float | None = None,
                      seed: int | None = None, count: int | None = None, scheduler: str | None = None,
                      fast: bool | None = None) -> None:
        await bot.actions.imagine(interaction, prompt, negative_prompt=negative, size=size, steps=steps,
                                  guidance=guidance, seed=seed, count=count, scheduler=scheduler, fast=fast)

    @app_commands.command(name="settings", description="Show or change this server's image defaults and limits")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(
        steps="Default steps", guidance="Default guidance", negative_prompt="Default negative prompt",
        size="Default size", count="Default number of images", max_steps="Most steps a user may ask for",
        max_count="Most images per request", per_user_cap="Jobs one member may have waiting or running",
        nsfw_policy="allow: post normally; spoiler: spoiler outside NSFW channels; block: only in NSFW channels",
        fast="Use fast mode by default",
        block="Words to add to this server's blocklist (comma-separated)",
        unblock="Words to remove from this server's blocklist (comma-separated)",
        reset="Drop all of this server's overrides",
    )
    @app_commands.choices(size=size_choices,
                          nsfw_policy=[app_commands.Choice(name=p, value=p) for p in NSFW_POLICIES])
    async def settings_cmd(interaction: discord.Interaction, steps: int | None = None, guidance: float | None = None,
                           negative_prompt: str | None = None, size: str | None = None, count: int | None = None,
                           max_steps: int | None = None, max_count: int | None = None,
                           per_user_cap: int | None = None, nsfw_policy: str | None = None,
                           fast: bool | None = None, block: str | None = None, unblock: str | None = None,
                           reset: bool | None = None) -> None:
        perms = interaction.permissions
        if not (perms.manage_guild or perms.administrator):
            await reply_ephemeral(interaction, "You need the Manage Server permission to change these settings.")
            return
        guild = str(interaction.guild_id)
        changes = {k: v for k, v in dict(steps=steps, guidance=guidance, negative_prompt=negative_prompt, size=size,
                                         count=count, max_steps=max_steps, max_count=max_count,
                                         per_user_cap=per_user_cap, nsfw_policy=nsfw_policy, fast=fast).items()
                   if v is not None}
        try:
            if reset:
                await bot.engine.reset_defaults(guild)
            if changes:
                await bot.engine.set_defaults(guild, changes)
        except ParamError as exc:
            await reply_ephemeral(interaction, f"\u274c {render.safe(str(exc), 1500)}")
            return
        words = await bot.engine.blocklist(guild)
        if block or unblock:
            add = {w.strip() for w in (block or "").split(",") if w.strip()}
            drop = {normalize_word(w) for w in (unblock or "").split(",") if w.strip()}
            words = await bot.engine.set_blocklist(guild, [w for w in words if w not in drop] + sorted(add))
        await reply_ephemeral(interaction, _settings_text(bot, guild, words, changed=bool(changes or reset or block
                                                                                          or unblock)))

    @app_commands.command(name="status", description="Queue length, model and speed")
    async def status_cmd(interaction: discord.Interaction) -> None:
        st = bot.engine.status()
        model = {"ready": "ready", "loading": "loading\u2026", "failed": "failed to load"}[st.model_state]
        device = f"{st.device} {st.dtype}" if st.device else "not loaded yet"
        lines = [f"**Model:** `{render.safe(st.model_id, 100)}` ({model})",
                 f"**Device:** {device}",
                 f"**Queue:** {st.queued} waiting \u00b7 {st.running} running",
                 f"**Speed:** {st.seconds_per_image:.2f} s per image" if st.seconds_per_image else
                 "**Speed:** no images yet",
                 f"**Last hour:** {st.jobs_last_hour} jobs"]
        if st.fast_available:
            lines.append("**Fast mode:** available (`--fast`)")
        await reply_ephemeral(interaction, "\n".join(lines))

    @app_commands.command(name="cancel", description="Cancel your queued image jobs")
    async def cancel_cmd(interaction: discord.Interaction) -> None:
        ids = await bot.engine.cancel_user(str(interaction.user.id))
        text = f"Cancelled {len(ids)} queued job(s)." if ids else "You have no queued jobs."
        await reply_ephemeral(interaction, text)

    return [imagine, settings_cmd, status_cmd, cancel_cmd]


def _settings_text(bot: ImagineBot, guild: str, words: list[str], *, changed: bool) -> str:
    d = bot.engine.defaults(guild)
    head = "\u2705 Saved. " if changed else ""
    blocked = ", ".join(render.safe(w, 40) for w in words[:30]) or "(none)"
    return (f"{head}**Defaults for this server**\n"
            f"Size {d.size} \u00b7 Steps {d.steps} (max {d.max_steps}) \u00b7 Guidance {d.guidance:g} \u00b7 "
            f"Images {d.count} (max {d.max_count}) \u00b7 Sampler {d.scheduler} \u00b7 "
            f"Fast {'on' if d.fast else 'off'}\n"
            f"Negative prompt: {render.safe(d.negative_prompt, 300) or '(none)'}\n"
            f"Per-member cap: {d.per_user_cap} \u00b7 NSFW policy: {d.nsfw_policy}\n"
            f"Blocked words: {blocked}")
