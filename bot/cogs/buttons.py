"""The job buttons: one DynamicItem per behaviour, matched by the custom_id templates of ``bot.components`` (the
per-image ones are bot/cogs/image_buttons.py's).

DynamicItems are rebuilt from each click's ``custom_id``, so buttons on messages from before a
restart keep working. They reach the engine and the submit flow through the cog that registers them
(``IMAGINE_COG``), which must provide ``JobActions``; this module never imports that cog.

discord.py calls a DynamicItem's ``interaction_check`` before its callback and, when it returns False
(or raises), drops the click without answering and without logging. So the checks below answer the
refused user themselves, and log their own errors.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import discord
from discord.ext import commands

from bot import render
from bot.components import (
    CANCEL,
    DELETE,
    EDIT,
    INFO,
    PNG,
    REROLL,
    job_button,
    job_template,
)
from bot.delivery.address import shown_here
from bot.delivery.originals import originals_text, pack_originals
from bot.i18n.speech import locale_of
from bot.modals import FormKeys, edit_form, edit_subject, remix_form, remix_subject
from bot.replies import reply_ephemeral
from engine.gpu.safety import recorded_actions
from engine.jobs.records import Job, Refused
from engine.media.images import tile_preview
from engine.requests.checks import Note
from engine.requests.params import MAX_SEED, GenerationParams
from engine.rules.preferences import REMIX
from engine.service import Engine

log = logging.getLogger(__name__)

# the name of the cog that registers these buttons and answers for them (see JobActions)
IMAGINE_COG = "Imagine"

Button = discord.ui.Button[discord.ui.View]
ItemT = TypeVar("ItemT", bound=discord.ui.Item[Any])


@runtime_checkable
class JobActions(Protocol):
    """What the buttons need from the cog named IMAGINE_COG."""

    engine: Engine
    form_keys: FormKeys  # binds each form to the member it was shown to

    async def submit(self, interaction: discord.Interaction, params: GenerationParams,
                     notes: tuple[Note, ...] = (), *, origin_private: bool | None = None) -> bool:
        """Moderation, caps, acknowledgement, queueing and the first message of a new job; False when refused."""
        ...

    async def imagine(self, interaction: discord.Interaction, prompt: str, *, picture: Any = None,
                      **options: Any) -> None:
        """What /imagine does with its text and options (and a picture to start from)."""
        ...


def actions(interaction: discord.Interaction) -> JobActions:
    """The loaded cog that answers for the job buttons."""
    client = interaction.client
    cog = client.get_cog(IMAGINE_COG) if isinstance(client, commands.bot.BotBase) else None
    if not isinstance(cog, JobActions):
        raise RuntimeError(f"the {IMAGINE_COG} cog is not loaded, so job buttons cannot be answered")
    return cog


async def opened_remix(interaction: discord.Interaction, job_id: int, image: int | None,
                       params: GenerationParams, subtle: bool = False) -> bool:
    """In remix mode (the member's /prefer choice), open the form for new words before a Reroll (``image`` None)
    or a variation of image ``image``; True when it was opened (its submission is bot/cogs/forms.py's)."""
    flow = actions(interaction)
    if not (await flow.engine.preferences.get(str(interaction.user.id))).get(REMIX):
        return False
    key = flow.form_keys.key(remix_subject(job_id, image, subtle), interaction.user.id)
    await interaction.response.send_modal(remix_form(job_id, image, params, key, subtle, locale_of(interaction)))
    return True


def logs_errors(check: Callable[[ItemT, discord.Interaction], Awaitable[bool]]
                ) -> Callable[[ItemT, discord.Interaction], Awaitable[bool]]:
    """Log an interaction_check's exception (discord.py would drop it silently) and refuse the click."""

    @functools.wraps(check)
    async def wrapper(self: ItemT, interaction: discord.Interaction) -> bool:
        try:
            return await check(self, interaction)
        except Exception:
            custom_id = (interaction.data or {}).get("custom_id")
            log.exception("the check of button %s failed (interaction %s)", custom_id, interaction.id)
            return False

    return wrapper


def _is_requester(job: Job, interaction: discord.Interaction) -> bool:
    return job.requester.user_id == str(interaction.user.id)


class RerollButton(discord.ui.DynamicItem[Button], template=job_template(REROLL)):
    """Reroll: the same parameters with a new seed, as a new job (and message) for whoever clicks."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_button(REROLL, job_id))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RerollButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        flow = actions(interaction)
        job = await flow.engine.get_job(self.job_id)
        if job is None:
            await reply_ephemeral(interaction, "This image's job no longer exists, so it cannot be rerolled.")
            return
        if await opened_remix(interaction, job.id, None, job.params):
            return
        await flow.submit(interaction, job.params.with_seed(random.SystemRandom().randint(0, MAX_SEED)))


class InfoButton(discord.ui.DynamicItem[Button], template=job_template(INFO)):
    """Info: every parameter and a line that reproduces the images, only for the clicker."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_button(INFO, job_id))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> InfoButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        engine = actions(interaction).engine
        job = await engine.get_job(self.job_id)
        if job is None:
            await reply_ephemeral(interaction, "This image's job no longer exists.")
            return
        # the /imagine line must say --style none where this server's default style would wrap it
        guild = str(interaction.guild_id) if interaction.guild_id else None
        default = engine.styles.pick(None, engine.policy.defaults(guild).style)
        text = render.info_text(job, default.name if default else "")
        previews = await _tile_previews(engine, interaction, job) if job.params.tile and job.results else []
        if not previews:
            await reply_ephemeral(interaction, text)
            return
        await interaction.response.send_message(text[:2000], files=previews, ephemeral=True,
                                                allowed_mentions=render.NO_MENTIONS)


async def _tile_previews(engine: Engine, interaction: discord.Interaction, job: Job) -> list[discord.File]:
    """Each image of a --tile job repeated 2x2 (Info shows that it joins itself), under the NSFW rule of the place
    where Info was clicked; none where that place would not show the job at all, or its files are gone."""
    try:
        rules = shown_here(engine, interaction, job)
        previews = await asyncio.to_thread(lambda: [(i, tile_preview(path)) for i, (path, rule) in
                                                    enumerate(zip(job.delivery_paths, rules, strict=True))
                                                    if rule != "withhold"])
    except (Refused, OSError, ValueError):
        return []
    return [discord.File(io.BytesIO(data), filename=f"tile-{job.id}-{i + 1}.jpg", spoiler=rules[i] == "spoiler",
                         description=f"Image {i + 1} repeated 2x2: a seamless tile") for i, data in previews]


class DeleteButton(discord.ui.DynamicItem[Button], template=job_template(DELETE)):
    """Delete: removes the message, the job and its files (the requester or Manage Messages only)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_button(DELETE, job_id))
        self.job_id = job_id
        self.job: Job | None = None  # read by the check, used by the callback (one instance per click)

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> DeleteButton:
        return cls(int(match["job"]))

    @logs_errors
    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        self.job = await actions(interaction).engine.get_job(self.job_id)
        perms = interaction.permissions
        if (self.job is not None and _is_requester(self.job, interaction)) or perms.manage_messages \
                or perms.administrator:
            return True
        await reply_ephemeral(interaction, "Only the person who asked for this image, or members with the "
                                           "Manage Messages permission, can delete it.")
        return False

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.delete_original_response()
        if self.job is not None:
            await actions(interaction).engine.delete_job(self.job_id)


class CancelButton(discord.ui.DynamicItem[Button], template=job_template(CANCEL)):
    """Cancel: stops a queued or running job (the requester only)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_button(CANCEL, job_id))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> CancelButton:
        return cls(int(match["job"]))

    @logs_errors
    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        job = await actions(interaction).engine.get_job(self.job_id)
        if job is None or _is_requester(job, interaction):
            return True  # a job that is gone gets its answer from the callback
        await reply_ephemeral(interaction, "Only the person who asked for this image can cancel it.")
        return False

    async def callback(self, interaction: discord.Interaction) -> None:
        # the engine checks the requester again: the job's owner cannot change, but this keeps the rule
        # enforced where the cancellation happens
        outcome = await actions(interaction).engine.cancel(self.job_id, user_id=str(interaction.user.id))
        text = {
            "cancelled": f"Cancelled job {self.job_id}.",
            "not_owner": "Only the person who asked for this image can cancel it.",
            "finished": "This job has already finished.",
            "not_found": "This job no longer exists.",
        }[outcome]
        await reply_ephemeral(interaction, text)


class EditButton(discord.ui.DynamicItem[Button], template=job_template(EDIT)):
    """Edit: a form with the prompt and negative prompt; its submission is a new job (bot/cogs/forms.py)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_button(EDIT, job_id))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> EditButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        job = await actions(interaction).engine.get_job(self.job_id)
        if job is None:
            await reply_ephemeral(interaction, "This image's job no longer exists, so it cannot be edited.")
            return
        key = actions(interaction).form_keys.key(edit_subject(job.id), interaction.user.id)
        await interaction.response.send_modal(edit_form(job.id, job.params, key, locale_of(interaction)))


class PngButton(discord.ui.DynamicItem[Button], template=job_template(PNG)):
    """PNG: the lossless originals with their parameters, privately to whoever clicks."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_button(PNG, job_id))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> PngButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        engine = actions(interaction).engine
        job = await engine.get_job(self.job_id)
        if job is None or not job.results:
            await reply_ephemeral(interaction, "This image's job no longer exists, so its PNG cannot be sent.")
            return
        # reading (and maybe re-encoding) several MB can take longer than the 3 s Discord allows for an answer
        await interaction.response.defer(ephemeral=True, thinking=True)
        originals = await asyncio.to_thread(pack_originals, job, interaction.filesize_limit,
                                            recorded_actions(job, engine.settings.safety_threshold))
        await interaction.followup.send(originals_text(job, originals, locale_of(interaction)), files=[
            discord.File(io.BytesIO(u.data), filename=u.name, description=u.description) for u in originals.uploads],
            ephemeral=True, allowed_mentions=render.NO_MENTIONS)


JOB_BUTTONS = (RerollButton, InfoButton, DeleteButton, CancelButton, EditButton, PngButton)
