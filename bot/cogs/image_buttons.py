"""The per-image buttons, one DynamicItem per behaviour: under a grid V<n> (vary) and U<n> (the image alone, with
its own buttons); under that single image Vary (Subtle), Vary (Strong), Upscale (Subtle) and Upscale (Creative).

Like the job buttons (bot/cogs/buttons.py, whose ``actions`` they use), they are rebuilt from each click's
``custom_id``, so they keep working after a restart; every new job goes through the same submit flow as /imagine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import Any

import discord

from bot import render
from bot.cogs.buttons import Button, actions, opened_remix
from bot.components import (
    SELECT,
    UPSCALE,
    UPSCALE_CREATIVE,
    VARY,
    VARY_SUBTLE,
    image_template,
    per_image_button,
    select_button,
    single_view,
    vary_button,
)
from bot.delivery.address import shown_here
from bot.delivery.sender import discord_files, read_uploads
from bot.i18n.speech import locale_of
from bot.replies import reply_ephemeral, reply_error, reply_privately
from engine.jobs.records import Job, Refused
from engine.requests.params import GenerationParams, ParamError


def _image_of(match: re.Match[str]) -> tuple[int, int]:
    return int(match["job"]), int(match["image"])


async def _vary(interaction: discord.Interaction, job_id: int, image: int, *, subtle: bool) -> None:
    flow = actions(interaction)
    try:
        params = await flow.engine.variation(job_id, image, subtle=subtle)
    except ParamError as exc:
        await reply_error(interaction, exc)
        return
    if await opened_remix(interaction, job_id, image, params, subtle):
        return
    await flow.submit(interaction, params)


async def queue_made(interaction: discord.Interaction, made: Awaitable[GenerationParams]) -> None:
    """Queue the job ``made`` gives for whoever clicked, through the same submit flow as /imagine; its ParamError
    (the image is gone, the edit cannot be made) is the member's answer."""
    flow = actions(interaction)
    try:
        params = await made
    except ParamError as exc:
        await reply_error(interaction, exc)
        return
    await flow.submit(interaction, params)


async def _upscale(interaction: discord.Interaction, job_id: int, image: int, *, creative: bool) -> None:
    await queue_made(interaction, actions(interaction).engine.remix.upscale(job_id, image, creative=creative))


def private_message(interaction: discord.Interaction) -> bool:
    """Whether the message clicked on is private (ephemeral): what is posted from it is private too."""
    return bool(interaction.message is not None and interaction.message.flags.ephemeral)


async def place_rule(interaction: discord.Interaction, job_id: int, image: int) -> tuple[Job, str] | None:
    """Finished job ``job_id`` and the rule (``post`` or ``spoiler``) under which its image ``image`` may be shown
    where the member clicked: the place's NSFW rule, deny list and blocklist (a grid may have been /show-n
    elsewhere). None when it may not, or is gone; the member has been told why."""
    engine = actions(interaction).engine
    job = await engine.get_job(job_id)
    if job is None or image >= len(job.results):
        await reply_ephemeral(interaction, f"Image {image + 1} of job {job_id} is no longer there "
                                           f"(deleted, or removed by the retention rule).")
        return None
    try:
        rule = shown_here(engine, interaction, job)[image]
    except Refused as exc:
        await reply_error(interaction, exc)
        return None
    if rule == "withhold":
        await reply_ephemeral(interaction, f"Image {image + 1} of job {job_id} is withheld here by this server's "
                                           f"NSFW rule.")
        return None
    return job, rule


class VaryButton(discord.ui.DynamicItem[Button], template=image_template(VARY)):
    """V<n> under a grid, and Vary (Strong) under a single image: new images at VARY_STRENGTH."""

    def __init__(self, job_id: int, image: int) -> None:
        super().__init__(vary_button(job_id, image))
        self.job_id, self.image = job_id, image  # image: 0-based

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> VaryButton:
        return cls(*_image_of(match))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _vary(interaction, self.job_id, self.image, subtle=False)


class VarySubtleButton(discord.ui.DynamicItem[Button], template=image_template(VARY_SUBTLE)):
    """Vary (Subtle): new images close to this one, at VARY_SUBTLE_STRENGTH."""

    def __init__(self, job_id: int, image: int) -> None:
        super().__init__(per_image_button(VARY_SUBTLE, job_id, image))
        self.job_id, self.image = job_id, image

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> VarySubtleButton:
        return cls(*_image_of(match))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _vary(interaction, self.job_id, self.image, subtle=True)


class UpscaleButton(discord.ui.DynamicItem[Button], template=image_template(UPSCALE)):
    """Upscale (Subtle) (and the U<n> of messages from before the single-image message): 2x at UPSCALE_STRENGTH."""

    def __init__(self, job_id: int, image: int) -> None:
        super().__init__(per_image_button(UPSCALE, job_id, image))
        self.job_id, self.image = job_id, image

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> UpscaleButton:
        return cls(*_image_of(match))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _upscale(interaction, self.job_id, self.image, creative=False)


class UpscaleCreativeButton(discord.ui.DynamicItem[Button], template=image_template(UPSCALE_CREATIVE)):
    """Upscale (Creative): 2x at UPSCALE_CREATIVE_STRENGTH, more new detail."""

    def __init__(self, job_id: int, image: int) -> None:
        super().__init__(per_image_button(UPSCALE_CREATIVE, job_id, image))
        self.job_id, self.image = job_id, image

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> UpscaleCreativeButton:
        return cls(*_image_of(match))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _upscale(interaction, self.job_id, self.image, creative=True)


class SelectButton(discord.ui.DynamicItem[Button], template=image_template(SELECT)):
    """U<n> under a grid: the image alone, in a message of its own with the single-image buttons (no new job)."""

    def __init__(self, job_id: int, image: int) -> None:
        super().__init__(select_button(job_id, image))
        self.job_id, self.image = job_id, image

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> SelectButton:
        return cls(*_image_of(match))

    async def callback(self, interaction: discord.Interaction) -> None:
        allowed = await place_rule(interaction, self.job_id, self.image)
        if allowed is None:
            return
        job, rule = allowed
        only = tuple(rule if i == self.image else "withhold" for i in range(len(job.results)))
        private = private_message(interaction)
        await interaction.response.defer(thinking=True, ephemeral=private)  # reading the file can take a while
        try:
            uploads, notes = await asyncio.to_thread(read_uploads, job, interaction.filesize_limit, only)
        except (OSError, ValueError):  # removed since the grid was posted
            await reply_privately(interaction, f"\u274c Image {self.image + 1} of job {self.job_id} could not be read "
                                               f"back (removed since); Reroll makes new ones.")
            return
        await interaction.followup.send(
            render.notes_text(notes, locale_of(interaction)) or discord.utils.MISSING,
            embed=render.image_embed(job, self.image, image_name=uploads[0].name if rule == "post" else None,
                                     locale=locale_of(interaction)),
            files=discord_files(uploads), view=single_view(job.id, self.image, locale_of(interaction)),
            ephemeral=private,
            allowed_mentions=render.NO_MENTIONS)


IMAGE_BUTTONS = (VaryButton, VarySubtleButton, UpscaleButton, UpscaleCreativeButton, SelectButton)
