"""The Show cog: /show job: posts one of the member's own finished jobs again, with its buttons, where they ask.

Its images follow the NSFW rule of the place where they are shown (a job made in a channel marked NSFW is
spoilered or withheld elsewhere, as a new one would be), and only the member who asked for a job may show it.
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.components import result_view
from bot.delivery.address import shown_here
from bot.delivery.sender import discord_files, read_uploads
from bot.i18n.speech import locale_of, localized, say
from bot.replies import reply_ephemeral, reply_error, reply_privately
from engine.jobs.records import Job, Refused
from engine.rules.preferences import PRIVATE
from engine.service import Engine

log = logging.getLogger(__name__)

_STATE_TEXT = {"queued": "Job {job} is still waiting in the queue; its message updates by itself.",
               "running": "Job {job} is being made right now; its message updates by itself.",
               "cancelled": "Job {job} was cancelled, so it has no images; its message updates by itself."}


def refusal(job: Job | None, job_id: int, user_id: str, locale: str = "") -> str | None:
    """Why ``job`` cannot be shown to ``user_id`` (said privately, in ``locale``), or None when it can."""
    if job is None or job.requester.user_id != user_id:
        return say(locale, "You have no job {job}. /show takes the number of one of your own jobs: pick one from the "
                           "list as you type, or read it under one of your results (\"Job 123\").", job=job_id)
    if job.state in _STATE_TEXT:
        return say(locale, _STATE_TEXT[job.state], job=job_id)
    if job.state == "failed":
        # the engine's words for a failure are stored in English: said in ``locale`` where known, as the tracker does
        why = localized(job.error, locale) if job.error else say(locale, "no reason was recorded")
        return say(locale, "Job {job} failed: {why}", job=job_id, why=render.safe(why, 1500))
    if not job.results:
        return say(locale, "The images of job {job} were removed by this bot's retention rule; its parameters are "
                           "still known: Reroll makes new ones from a result of the same prompt, or run /imagine "
                           "again.", job=job_id)
    return None


class ShowCog(commands.Cog, name="Show"):
    """/show, for a member's own jobs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @app_commands.command(name="show", description="Post one of your earlier images again, with its buttons")
    @app_commands.describe(job="The job number (pick one of yours as you type)",
                           private="Only you see it (default: your /prefer choice, else public)")
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[int, 1],
                   private: bool | None = None) -> None:
        """Post the job's images, embed and buttons here, under this place's NSFW rule (only to the member when
        private)."""
        found = await self.engine.get_job(job)
        why = refusal(found, job, str(interaction.user.id), locale_of(interaction))
        if why is not None:
            await reply_ephemeral(interaction, why)
            return
        assert found is not None  # refusal() said why otherwise
        try:  # the rules of this place hold for what is shown here too
            actions = shown_here(self.engine, interaction, found)
        except Refused as exc:
            await reply_error(interaction, exc)
            return
        if private is None:  # a private job stays private unless asked otherwise; else the member's choice
            private = bool(found.requester.delivery.get("private")) or \
                bool((await self.engine.preferences.get(str(interaction.user.id))).get(PRIVATE, False))
        # reading several MB (and maybe re-encoding one over the limit) can outlast the 3 s Discord allows
        await interaction.response.defer(thinking=True, ephemeral=private)
        try:
            uploads, shrunk = await asyncio.to_thread(read_uploads, found, interaction.filesize_limit, actions)
        except (OSError, ValueError) as exc:
            log.error("job %s: result files unreadable for /show: %s", found.id, exc)
            await reply_privately(interaction, f"\u274c The images of job {found.id} could not be read back.")
            return
        withheld = [i for i, action in enumerate(actions) if action == "withhold"]
        locale = locale_of(interaction)
        notes = [*shrunk, render.withheld_text(withheld, len(actions), checked=bool(found.safety), locale=locale)] \
            if withheld else list(shrunk)
        shown = uploads[0].name if uploads and actions[0] == "post" else None
        await interaction.followup.send(
            render.notes_text(notes, locale) or discord.utils.MISSING,
            embed=render.result_embed(found, image_name=shown, locale=locale), files=discord_files(uploads),
            view=result_view(found.id, len(found.results), upscaled=found.params.upscale > 1, withheld=withheld,
                             locale=locale),
            allowed_mentions=render.NO_MENTIONS, ephemeral=private)

    @show.autocomplete("job")
    async def _own_jobs(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        """The member's newest finished jobs whose number or prompt contains what they typed."""
        mine = await self.engine.history(owner=str(interaction.user.id), limit=100)
        typed = current.strip().lower()
        choices = [app_commands.Choice(name=render.safe(f"{j.id}: {j.params.prompt}", 100)[:100], value=j.id)
                   for j in mine if j.requester.user_id == str(interaction.user.id) and j.results
                   and (not typed or typed in str(j.id) or typed in j.params.prompt.lower())]
        return choices[:25]
