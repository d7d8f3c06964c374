"""What happens when someone runs a command or clicks a button.

Validation happens before the acknowledgement (so refusals can be ephemeral and instant); the
acknowledgement (defer) comes before any disk or queue work, so it always lands within 3 s.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.inline import parse_inline
from engine.jobs import Refused, Requester
from engine.params import MAX_SEED, GenerationParams, ParamError, ParamRequest

if TYPE_CHECKING:
    from bot.client import ImagineBot

log = logging.getLogger(__name__)

_OPTION_FIELDS = ("negative_prompt", "size", "steps", "guidance", "seed", "count", "scheduler", "fast")
_INLINE_NAMES = {"negative_prompt": "--no", "size": "--ar", "steps": "--steps", "guidance": "--cfg",
                 "seed": "--seed", "count": "--count", "scheduler": "--scheduler", "fast": "--fast"}


async def reply_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer only the user, whether or not the interaction was acknowledged already."""
    text = text[:2000]
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=render.NO_MENTIONS)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_MENTIONS)


def _channel_is_nsfw(interaction: discord.Interaction) -> bool:
    channel = interaction.channel
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


class Actions:
    """Command and button handlers, shared by the slash commands and the dynamic buttons."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self.engine = bot.engine

    # --- /imagine -------------------------------------------------------------------------------

    def build_request(self, prompt: str, options: dict[str, Any]) -> tuple[ParamRequest, tuple[str, ...]]:
        """Merge inline ``--`` parameters and explicit options (an explicit option wins)."""
        inline = parse_inline(prompt)
        values: dict[str, Any] = dict(inline.values)
        notes: list[str] = []
        for key in _OPTION_FIELDS:
            explicit = options.get(key)
            if explicit is None:
                continue
            if key in values and str(values[key]).lower() != str(explicit).lower():
                notes.append(f"{_INLINE_NAMES[key]} {values[key]} in the prompt was replaced by the {key} option "
                             f"({explicit}).")
            values[key] = explicit
        if "fast" in values:
            values["fast"] = str(values["fast"]).lower() in ("true", "1", "yes", "on")
        req = ParamRequest(prompt=inline.prompt, **{k: v for k, v in values.items() if k in _OPTION_FIELDS})
        return req, tuple(notes)

    def _fast_defaults(self, req: ParamRequest, guild_id: str | None) -> ParamRequest:
        """Fast mode means the LCM recipe unless the user set steps or guidance themselves."""
        fast = req.fast if req.fast is not None else self.engine.defaults(guild_id).fast
        if not fast:
            return req
        return replace(req, fast=True, steps=req.steps if req.steps is not None else self.engine.settings.fast_steps,
                       guidance=req.guidance if req.guidance is not None else 1.0)

    async def imagine(self, interaction: discord.Interaction, prompt: str, **options: Any) -> None:
        """Validate, acknowledge, queue, and hand the job to delivery."""
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        try:
            req, notes = self.build_request(prompt, options)
            req = self._fast_defaults(req, guild_id)
            params = self.engine.resolve(req, guild_id)
        except ParamError as exc:
            await reply_ephemeral(interaction, f"\u274c {render.safe(str(exc), 1800)}")
            return
        await self.start_job(interaction, params, notes)

    async def start_job(self, interaction: discord.Interaction, params: GenerationParams,
                        notes: tuple[str, ...] = ()) -> None:
        """Shared by /imagine and Reroll: moderation, caps, defer, submit, show the position."""
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        blocked = await self.engine.blocked_words(params.prompt, guild_id)
        if blocked:
            await reply_ephemeral(interaction, "\U0001f6ab Your prompt contains blocked words ("
                                  + ", ".join(render.safe(w, 50) for w in blocked[:5])
                                  + "). Please rephrase it.")
            return
        nsfw_channel = _channel_is_nsfw(interaction)
        policy = self.engine.defaults(guild_id).nsfw_policy if guild_id else "allow"
        if policy == "block" and not nsfw_channel:
            await reply_ephemeral(interaction, "\U0001f6ab On this server, images can only be generated in channels "
                                               "marked NSFW (age-restricted). Try one of those.")
            return
        requester = Requester(
            user_id=str(interaction.user.id), user_name=interaction.user.display_name, guild_id=guild_id,
            channel_id=str(interaction.channel_id) if interaction.channel_id else None, source="discord",
            delivery={
                "app_id": str(interaction.application_id), "token": interaction.token,
                "interaction_id": str(interaction.id), "created": interaction.created_at.timestamp(),
                "channel_id": str(interaction.channel_id) if interaction.channel_id else None,
                "user_id": str(interaction.user.id), "filesize_limit": interaction.filesize_limit,
                "spoiler": policy == "spoiler" and not nsfw_channel,
            },
        )
        try:
            admission = self.engine.admit(requester, fast=params.fast)
        except Refused as exc:
            await reply_ephemeral(interaction, f"\u270b {render.safe(exc.message, 1800)}")
            return
        try:
            await interaction.response.defer(thinking=True)
        except BaseException:
            admission.release()
            raise
        try:
            submission = await self.engine.submit(params, requester, admission=admission)
        except Exception as exc:  # the user already sees "thinking...": always replace it with an answer
            if isinstance(exc, Refused):
                text = f"\u270b {render.safe(exc.message, 1800)}"
            else:
                log.exception("interaction %s: could not queue the job", interaction.id)
                text = "\u274c The job could not be queued because of a problem on our side. Please try again."
            await interaction.edit_original_response(content=text, allowed_mentions=render.NO_MENTIONS)
            return
        tracker = self.bot.delivery.tracker(submission.job)
        if tracker is not None:
            await tracker.queued(submission.position, submission.eta_seconds, notes + submission.notes)

    # --- buttons ------------------------------------------------------------------------------

    async def reroll(self, interaction: discord.Interaction, job_id: int) -> None:
        """Same parameters, new seed, new message, for the clicker."""
        job = await self.engine.get_job(job_id)
        if job is None:
            await reply_ephemeral(interaction, "This image's job no longer exists, so it cannot be rerolled.")
            return
        params = job.params.with_seed(random.SystemRandom().randint(0, MAX_SEED))
        await self.start_job(interaction, params)

    async def vary(self, interaction: discord.Interaction, job_id: int, image: int) -> None:
        """Variations of one image of a finished job (V1..V4): new message, for the clicker."""
        try:
            params = await self.engine.variation(job_id, image)
        except ParamError as exc:
            await reply_ephemeral(interaction, f"\u274c {render.safe(str(exc), 1800)}")
            return
        await self.start_job(interaction, params)

    async def info(self, interaction: discord.Interaction, job_id: int) -> None:
        """Every parameter, only for the clicker."""
        job = await self.engine.get_job(job_id)
        if job is None:
            await reply_ephemeral(interaction, "This image's job no longer exists.")
            return
        await reply_ephemeral(interaction, render.info_text(job))

    async def delete(self, interaction: discord.Interaction, job_id: int) -> None:
        """Delete the result (requester or Manage Messages), message and files."""
        job = await self.engine.get_job(job_id)
        owner = job is not None and job.requester.user_id == str(interaction.user.id)
        perms = interaction.permissions
        if not owner and not (perms.manage_messages or perms.administrator):
            await reply_ephemeral(interaction, "Only the person who asked for this image, or members with the "
                                               "Manage Messages permission, can delete it.")
            return
        await interaction.response.defer()
        await interaction.delete_original_response()
        if job is not None:
            await self.engine.delete_job(job_id)

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        """Cancel a queued or running job (requester only)."""
        outcome = await self.engine.cancel(job_id, user_id=str(interaction.user.id))
        text = {
            "cancelled": f"Cancelled job {job_id}.",
            "not_owner": "Only the person who asked for this image can cancel it.",
            "finished": "This job has already finished.",
            "not_found": "This job no longer exists.",
        }[outcome]
        await reply_ephemeral(interaction, text)
