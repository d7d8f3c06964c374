"""The Forms cog: the "Vary with Imagine" message command, and submitted forms (modals) by ``custom_id``
(bot/modals.py says why).

- Edit form: the words of a job changed, queued as a new job for whoever submits it with the source
  job's size, steps, guidance and seed.
- Remix form (remix mode, a member's /prefer choice): Reroll or a V button asks for new words first; the
  submission is that reroll or variation in those words.
- Custom Zoom and Vary (Region) forms (bot/cogs/canvas_buttons.py): that canvas edit in the form's words.
- "Vary with Imagine" (a message context-menu command): the first picture of any message, with a
  form for the prompt (filled in from the message) and the strength; the submission runs like
  ``/imagine image:``.

Both end in the same submit flow as /imagine (validation, blocklists, NSFW policy, caps, quotas).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.buttons import actions
from bot.i18n.speech import locale_of
from bot.inline import build_request
from bot.modals import (
    EDIT_FORM_RE,
    NEGATIVE_FIELD,
    PROMPT_FIELD,
    REGION_FORM,
    REGION_FORM_RE,
    REMIX_FORM_RE,
    STRENGTH_FIELD,
    VARY_FORM_RE,
    ZOOM_FIELD,
    ZOOM_FORM,
    ZOOM_FORM_RE,
    canvas_subject,
    edit_subject,
    remix_subject,
    submitted_values,
    vary_form,
)
from bot.pictures import Picture, first_picture, job_of_result, refusal
from bot.replies import reply_ephemeral, reply_error
from engine.requests.canvas_edits import REGION, CanvasEdit
from engine.requests.checks import Phrase
from engine.requests.params import GenerationParams, ParamError, ParamRequest

log = logging.getLogger(__name__)

VARY_MENU = "Vary with Imagine"
# a "Vary with Imagine" form waits this long for its submission, and at most this many wait at once
PENDING_SECONDS = 15 * 60
MAX_PENDING = 1000
NOT_YOUR_FORM = ("This form was not opened by you (or it is from before an update of the bot). Open your own: "
                 "press Edit under the result, or use Vary with Imagine on the message.")


class FormsCog(commands.Cog, name="Forms"):
    """Submitted forms, matched by their custom_id, and the message command that opens the Vary form."""

    def __init__(self, bot: commands.AutoShardedBot) -> None:
        self.bot = bot
        # context menus cannot be methods of a cog in discord.py; this one is added to the tree on load
        self.vary_menu = app_commands.ContextMenu(name=VARY_MENU, callback=self.vary_with_imagine)
        # form key -> the picture it names, when it was opened, and the member it was shown to
        self.pending: dict[str, tuple[Picture, float, int]] = {}

    async def cog_load(self) -> None:
        """Add the message command."""
        self.bot.tree.add_command(self.vary_menu)

    async def cog_unload(self) -> None:
        """Take the message command away."""
        self.bot.tree.remove_command(VARY_MENU, type=discord.AppCommandType.message)

    async def vary_with_imagine(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Open the Vary form for the first picture of ``message`` (or say why not)."""
        picture = first_picture(message)
        why = refusal(picture) if picture is not None else (
            Phrase("This message holds no picture (PNG, JPEG, WebP, GIF or BMP attachment) to start from."))
        if why:
            await reply_error(interaction, ParamError(why))
            return
        assert picture is not None
        flow = actions(interaction)
        prompt = message.content
        job_id = job_of_result(message, self.bot.user.id if self.bot.user else None)
        if job_id is not None:  # one of our results: its own words, not the embed's escaped copy
            job = await flow.engine.get_job(job_id)
            prompt = job.params.typed_prompt if job else prompt
        key = self._remember(picture, interaction.user.id)
        await interaction.response.send_modal(vary_form(key, prompt, flow.engine.settings.vary_strength,
                                                        locale_of(interaction)))

    def _remember(self, picture: Picture, user_id: int) -> str:
        now = time.monotonic()
        for key, (_picture, opened, _user) in list(self.pending.items()):
            if now - opened > PENDING_SECONDS or len(self.pending) >= MAX_PENDING:
                del self.pending[key]  # oldest first: dicts keep insertion order
        key = secrets.token_hex(8)
        self.pending[key] = (picture, now, user_id)
        return key

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Route a form submission of ours; discord.py has no stored Modal for it (see bot/modals.py)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        custom_id = str((interaction.data or {}).get("custom_id", ""))
        edit, vary = EDIT_FORM_RE.fullmatch(custom_id), VARY_FORM_RE.fullmatch(custom_id)
        remix = REMIX_FORM_RE.fullmatch(custom_id)
        canvas = ZOOM_FORM_RE.fullmatch(custom_id) or REGION_FORM_RE.fullmatch(custom_id)
        if edit is None and vary is None and remix is None and canvas is None:
            return
        try:
            if edit is not None:
                await self.edited(interaction, int(edit["job"]), edit["key"])
            elif vary is not None:
                await self.varied(interaction, vary["key"])
            elif remix is not None:
                image = None if remix["image"] == "r" else int(remix["image"])
                await self.edited(interaction, int(remix["job"]), remix["key"], remix_image=image,
                                  remix=True, subtle=bool(remix["subtle"]))
            elif canvas is not None:
                await self.canvas_edited(interaction, canvas)
        except Exception:  # discord.py does not log a listener's failure with the interaction; answer the user
            log.exception("form %s failed (interaction %s)", custom_id, interaction.id)
            if not interaction.response.is_done():
                await reply_ephemeral(interaction, "Something went wrong on our side. Please try again.")

    async def edited(self, interaction: discord.Interaction, job_id: int, key: str | None, *,
                     remix: bool = False, remix_image: int | None = None, subtle: bool = False) -> None:
        """The Edit form of job ``job_id`` was submitted: queue the edited job for the member it was shown to. With
        ``remix``, remix mode's form: a reroll (``remix_image`` None) or a variation of that image, in new words."""
        subject = remix_subject(job_id, remix_image, subtle) if remix else edit_subject(job_id)
        maker = actions(interaction).engine.remix

        def made(req: ParamRequest, guild_id: str | None) -> Awaitable[GenerationParams]:
            return (maker.remixed(job_id, remix_image, req, guild_id, subtle=subtle) if remix else
                    maker.edit(job_id, req, guild_id))

        await self._rewritten(interaction, subject, key, made)

    async def canvas_edited(self, interaction: discord.Interaction, form: re.Match[str]) -> None:
        """A Custom Zoom or Vary (Region) form was submitted: that canvas edit in the form's words, for the member it
        was shown to."""
        job_id, image = int(form["job"]), int(form["image"])
        region = "cells" in form.re.groupindex
        cells = int(form["cells"], 16) if region else 0
        # a region form comes from the private grid; whether the image's own message was private is in its id
        private = bool(form["private"]) if region else False
        kind = REGION_FORM if region else ZOOM_FORM
        maker = actions(interaction).engine.remix
        values = submitted_values(interaction.data)

        async def made(req: ParamRequest, guild_id: str | None) -> GenerationParams:
            # a CanvasError (a factor out of range) is a ParamError: the member's answer
            edit = CanvasEdit(REGION, cells=cells) if region else CanvasEdit.zoom_out(values.get(ZOOM_FIELD, ""))
            return await maker.canvas(job_id, image, edit, req, guild_id)

        await self._rewritten(interaction, canvas_subject(kind, job_id, image, cells, private), form["key"], made,
                              origin_private=private if region else None)

    async def _rewritten(self, interaction: discord.Interaction, subject: str, key: str | None,
                         made: Callable[[ParamRequest, str | None], Awaitable[GenerationParams]],
                         origin_private: bool | None = None) -> None:
        """A form with new words (``subject``, ``key``: whose it is): the job ``made`` of them, through the submit
        flow (``origin_private``: whether the result it starts from was private, when the form's own message is not
        that result); a ParamError is the member's answer."""
        if not actions(interaction).form_keys.valid(subject, interaction.user.id, key):
            await reply_ephemeral(interaction, NOT_YOUR_FORM)
            return
        values = submitted_values(interaction.data)
        negative = values.get(NEGATIVE_FIELD, "")
        flow = actions(interaction)
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        try:
            # an empty negative field lets an inline --no in the prompt speak; with neither, there is none
            req, notes = build_request(values.get(PROMPT_FIELD, ""),
                                       {"negative_prompt": negative} if negative.strip() else {})
            if req.negative_prompt is None:
                req = replace(req, negative_prompt="")
            params = await made(req, guild_id)
        except ParamError as exc:
            await reply_error(interaction, exc)
            return
        await flow.submit(interaction, params, notes, origin_private=origin_private)

    async def varied(self, interaction: discord.Interaction, key: str) -> None:
        """A "Vary with Imagine" form was submitted: run it like /imagine with that picture."""
        remembered = self.pending.get(key)
        if remembered is not None and remembered[2] != interaction.user.id:
            await reply_ephemeral(interaction, NOT_YOUR_FORM)
            return
        self.pending.pop(key, None)
        if remembered is None:
            await reply_ephemeral(interaction, "This form has expired (the bot restarted, or it was open for over "
                                               "15 minutes). Use Vary with Imagine on the message again.")
            return
        values = submitted_values(interaction.data)
        strength = values.get(STRENGTH_FIELD, "").strip() or None
        await actions(interaction).imagine(interaction, values.get(PROMPT_FIELD, ""), picture=remembered[0],
                                           strength=strength)
