"""Where a Discord job's result goes, stored with the job so that a restarted bot can still deliver it.

The record is written once, when the job is submitted (``requester_for``), into the engine's opaque
``Requester.delivery``; the trackers read it back through ``Address``. Both sides live here so the
keys are defined in one place. Records written by earlier versions lack some keys; ``Address``
falls back the way those versions did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.i18n.speech import locale_of
from bot.installs import may_post_in_channel, place_of
from engine.gpu.safety import ImageAction, image_actions, recorded_policy
from engine.jobs.records import Job, JobRequest, Requester

if TYPE_CHECKING:
    from engine.service import Engine

# the engine's name for jobs of this front door (it keeps their results until delivered)
SOURCE = "discord"


def needs_delivery(job: Job) -> bool:
    """Whether the bot delivers this job: it came through Discord with an interaction to answer."""
    return job.requester.source == SOURCE and "token" in job.requester.delivery


def requester_for(interaction: discord.Interaction, *, private: bool = False,
                  message_id: int | None = None) -> Requester:
    """Who asked, and everything delivery needs later; ``private``: the result reaches only the member (the
    interaction's ephemeral response, or a DM once its token has expired, never the channel); ``message_id``: the
    interaction's followup message that shows this job (one /imagine of several jobs), else its original response.

    The engine adds ``nsfw`` and ``nsfw_threshold`` to the record when it admits the job: the NSFW policy in
    force where it was asked and the score from which images count as NSFW (engine/gpu/safety.py's
    ``recorded_actions`` applies both).
    """
    guild_id = str(interaction.guild_id) if interaction.guild_id else None
    channel_id = str(interaction.channel_id) if interaction.channel_id else None
    return Requester(
        user_id=str(interaction.user.id), user_name=interaction.user.display_name, guild_id=guild_id,
        channel_id=channel_id, source=SOURCE,
        delivery={
            # the interaction's webhook (app id + token) works for 15 minutes, also after a restart
            "app_id": str(interaction.application_id), "token": interaction.token,
            "interaction_id": str(interaction.id), "created": interaction.created_at.timestamp(),
            "channel_id": channel_id, "user_id": str(interaction.user.id),
            "filesize_limit": interaction.filesize_limit,
            # decided now, from the interaction's installs and context, because a late delivery (even after a
            # restart) has nothing else to go on: a user install without the bot, or a group DM, has no
            # channel the bot may post in, so the fallback goes by DM
            "post_in_channel": may_post_in_channel(interaction) and not private,
            "private": private,
            "message_id": str(message_id) if message_id else None,
            # the language its messages are written in: the member's
            "locale": locale_of(interaction),
        },
    )


@dataclass(frozen=True)
class Address:
    """The typed view of a job's delivery record."""

    job_id: int
    app_id: int
    token: str
    created: float  # when the interaction was created (epoch seconds): its token lives 15 minutes
    channel_id: int | None  # the fallback channel; None where the bot may not post (the fallback is a DM)
    user_id: int  # the requester: the fallback mention and DM
    filesize_limit: int
    nsfw: str  # the NSFW policy in force where the job was asked for: allow, spoiler or block
    message: int | str = "@original"  # the interaction's message that shows the job: a followup's id, or @original
    locale: str = ""  # a Discord locale code ("": English, as records from before languages)

    @classmethod
    def of(cls, job: Job) -> Address:
        """Read the record of a job for which ``needs_delivery`` holds."""
        info: dict[str, Any] = job.requester.delivery
        channel = info.get("channel_id") or job.requester.channel_id
        if not info.get("post_in_channel", True):  # records from before install types could always post
            channel = None
        return cls(
            job_id=job.id, app_id=int(info["app_id"]), token=str(info["token"]),
            created=float(info.get("created", 0)), channel_id=int(channel) if channel else None,
            user_id=int(info.get("user_id") or job.requester.user_id),
            filesize_limit=int(info.get("filesize_limit") or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES),
            nsfw=recorded_policy(job), message=int(info["message_id"]) if info.get("message_id") else "@original",
            locale=str(info.get("locale") or ""),
        )


def shown_here(engine: Engine, interaction: discord.Interaction, job: Job) -> tuple[ImageAction, ...]:
    """What happens to each of the job's images posted again where ``interaction`` was made (/show, U): that place's
    deny list, blocklist and pictures rule must allow the job (``Admission.may_show``; Refused says why not), and
    its NSFW rule, not the one of the place the job was made in, decides post, spoiler or withhold."""
    place = place_of(interaction)
    engine.admission.may_show(JobRequest(job.params, requester_for(interaction), place))
    guild = str(interaction.guild_id) if interaction.guild_id else None
    policy, threshold = engine.policy.nsfw_rule(guild, place)
    return image_actions(policy, job.safety, len(job.results), threshold)


def upload_name(job: Job, index: int, action: ImageAction) -> str:
    """An image's attachment name without its suffix; Discord blurs files whose name starts with SPOILER_."""
    return f"{'SPOILER_' if action == 'spoiler' else ''}imagine-{job.id}-{index}"
