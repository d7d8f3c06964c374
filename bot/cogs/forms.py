"""The Forms cog: answers submitted forms (modals) by their ``custom_id`` (bot/forms.py says why).

Edit form: the words of a job changed, queued as a new job for whoever submits it with the source
job's size, steps, guidance and seed, through the same submit flow as /imagine (validation, blocklists,
NSFW policy, caps, quotas).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import discord
from discord.ext import commands

from bot import render
from bot.cogs.buttons import actions
from bot.forms import EDIT_FORM_RE, NEGATIVE_FIELD, PROMPT_FIELD, submitted_values
from bot.inline import build_request
from bot.replies import reply_ephemeral
from engine.params import ParamError

log = logging.getLogger(__name__)


class FormsCog(commands.Cog, name="Forms"):
    """Submitted forms, matched by their custom_id, so they work across a restart of the bot."""

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Route a form submission of ours; discord.py has no stored Modal for it (see bot/forms.py)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        custom_id = str((interaction.data or {}).get("custom_id", ""))
        edit = EDIT_FORM_RE.fullmatch(custom_id)
        if edit is None:
            return
        try:
            await self.edited(interaction, int(edit["job"]))
        except Exception:  # discord.py does not log a listener's failure with the interaction; answer the user
            log.exception("form %s failed (interaction %s)", custom_id, interaction.id)
            if not interaction.response.is_done():
                await reply_ephemeral(interaction, "Something went wrong on our side. Please try again.")

    async def edited(self, interaction: discord.Interaction, job_id: int) -> None:
        """The Edit form of job ``job_id`` was submitted: queue the edited job for the submitter."""
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
            params = await flow.engine.remix.edit(job_id, req, guild_id)
        except ParamError as exc:
            await reply_ephemeral(interaction, f"\u274c {render.safe(str(exc), 1800)}")
            return
        await flow.submit(interaction, params, notes)
