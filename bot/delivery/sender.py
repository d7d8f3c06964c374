"""Sending a job's messages: through the interaction's webhook while its token lives, else to the
channel as a normal message that pings only the requester (where the bot may post), else by DM.

Nothing here knows about the engine's state: the trackers decide what to send and record what was
delivered.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import discord

from bot import render
from bot.bot_settings import BotSettings
from bot.delivery.address import Address, upload_name
from engine.gpu.safety import ImageAction
from engine.jobs.records import Job
from engine.media.images import fit_under
from engine.ops.metrics import Metrics
from engine.requests.checks import Phrase

log = logging.getLogger(__name__)

MAX_FILES = 10  # Discord's per-message attachment limit
_TOKEN_GONE = {10062, 10015, 50027}  # unknown interaction, unknown webhook, invalid webhook token
# connection failures that discord.py does not turn into HTTPException
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

class Upload(NamedTuple):
    """A file to post: its content, its attachment name, and its alt text (read by screen readers)."""

    data: bytes
    name: str
    description: str


def size_text(size: int) -> str:
    """``12.3 MB`` or ``850 KB`` (Discord counts in units of 1024)."""
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{max(1, round(size / 1024))} KB"


def discord_files(chunk: list[Upload]) -> list[discord.File]:
    """Uploads as discord.py files, fresh for each attempt (a failed upload leaves a File's stream consumed)."""
    return [discord.File(io.BytesIO(u.data), filename=u.name, description=u.description) for u in chunk]


def read_uploads(job: Job, limit: int, actions: Sequence[ImageAction]) -> tuple[list[Upload], tuple[Phrase, ...]]:
    """The job's images as uploads under ``limit`` bytes each (blocking), and a note for each one that had to be
    sent as a smaller encoding (a 2048x2048 upscale can be over it).

    ``actions`` (``engine.gpu.safety.recorded_actions``, or the rule where the images are shown) say which are
    spoilered and which are withheld (not read). Raises OSError or ValueError when a result cannot be read back.
    """
    out, notes = [], []
    for index, (path, action) in enumerate(zip(job.delivery_paths, actions, strict=True)):
        if action == "withhold":
            continue
        # a little headroom under the limit for multipart overhead
        data, suffix = fit_under(path, limit - 1024)
        out.append(Upload(data, f"{upload_name(job, index, action)}{suffix}", render.alt_text(job, index)))
        size = Path(path).stat().st_size
        if len(data) != size:  # fit_under re-encoded it
            notes.append(Phrase.of("Image {image} is {size}, over the {limit} upload limit here, so it is sent as a "
                                   "smaller JPEG ({sent}).", image=index + 1, size=size_text(size),
                                   limit=size_text(limit), sent=size_text(len(data))))
    return out, tuple(notes)


class Sender:
    """Posts and edits the messages of Discord jobs for one client."""

    def __init__(self, client: discord.Client, settings: BotSettings, metrics: Metrics) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics

    def token_alive(self, address: Address) -> bool:
        """Whether the interaction token can still be used (with the TOKEN_SAFE_SECONDS margin)."""
        return time.time() - address.created < self.settings.token_safe_seconds

    def webhook(self, address: Address) -> discord.Webhook:
        """The interaction's webhook (works after a restart: it needs only the app id and token)."""
        return discord.Webhook.partial(address.app_id, address.token, client=self.client)

    async def edit_original(self, address: Address, **kwargs: Any) -> bool:
        """Edit the job's message (the original response, or its followup); False when the token is gone or Discord
        refused."""
        if not self.token_alive(address):
            return False
        try:
            await self.webhook(address).edit_message(  # type: ignore[arg-type]
                address.message, allowed_mentions=render.NO_MENTIONS, **kwargs)
            return True
        except discord.HTTPException as exc:
            log.warning("job %s: editing the response failed: %s %s", address.job_id, exc.status, exc.code)
            return False
        except NETWORK_ERRORS as exc:
            log.warning("job %s: editing the response failed: %r", address.job_id, exc)
            return False

    async def read_files(self, job: Job, address: Address,
                         actions: Sequence[ImageAction]) -> tuple[list[Upload], tuple[str, ...]]:
        """The job's images as uploads that fit the interaction's size limit (``read_uploads``, off the event loop)."""
        return await asyncio.to_thread(read_uploads, job, address.filesize_limit, actions)

    async def post_result(self, address: Address, *, content: str | None, embed: discord.Embed,
                          view: discord.ui.View, uploads: list[Upload]) -> bool:
        """Post a result (10 files per message): the original response, else channel or DM. True once accepted."""
        chunks = [uploads[i:i + MAX_FILES] for i in range(0, len(uploads), MAX_FILES)] or [[]]
        if self.token_alive(address) and await self._edit_with_retries(address, content, embed, view, chunks):
            return True
        delivered = await self.send_fallback(address, embed=embed, view=view, files=discord_files(chunks[0]))
        for chunk in chunks[1:]:
            delivered = delivered and await self.send_fallback(address, files=discord_files(chunk), mention=False)
        return delivered

    async def _edit_with_retries(self, address: Address, content: str | None, embed: discord.Embed,
                                 view: discord.ui.View, chunks: list[list[Upload]]) -> bool:
        delay = 1.0
        for attempt in range(4):
            try:
                webhook = self.webhook(address)
                await webhook.edit_message(  # type: ignore[arg-type]
                    address.message, content=content, embed=embed, attachments=discord_files(chunks[0]), view=view,
                    allowed_mentions=render.NO_MENTIONS)
                for chunk in chunks[1:]:
                    await webhook.send(files=discord_files(chunk), allowed_mentions=render.NO_MENTIONS, wait=True)
                return True
            except NETWORK_ERRORS as exc:
                log.warning("job %s: result upload failed (%r), attempt %d", address.job_id, exc, attempt + 1)
                self.metrics.delivery_retries.inc()
                await asyncio.sleep(delay)
                delay *= 2
                continue
            except discord.HTTPException as exc:
                if exc.code in _TOKEN_GONE or exc.status in (401, 404):
                    log.info("job %s: interaction token no longer valid (%s); using the channel", address.job_id,
                             exc.code)
                    return False
                if not self.token_alive(address):
                    return False
                log.warning("job %s: result upload failed (%s %s), attempt %d", address.job_id, exc.status,
                            exc.code, attempt + 1)
                self.metrics.delivery_retries.inc()
                await asyncio.sleep(delay)
                delay *= 2
        return False

    async def send_fallback(self, address: Address, *, content: str | None = None,
                            embed: discord.Embed | None = None, view: discord.ui.View | None = None,
                            files: list[discord.File] | None = None, mention: bool = True) -> bool:
        """Post to the job's channel mentioning only the requester; if that is refused, DM them.

        Jobs from places where the bot may not post (``address.channel_id`` is None: a user install in a
        server without the bot, a group DM) go straight to the DM, without touching the channel.
        """
        text = content if content is not None else "your image is ready."
        if mention:
            text = f"<@{address.user_id}> {text}"
        kwargs: dict[str, Any] = {"content": text[:2000], "allowed_mentions": render.requester_only(address.user_id)}
        if embed is not None:
            kwargs["embed"] = embed
        if view is not None:
            kwargs["view"] = view
        if files:
            kwargs["files"] = files
        dm_text = "Your image is ready (I could not post in the channel)."
        if address.channel_id:
            try:
                await self.client.get_partial_messageable(address.channel_id).send(**kwargs)
                self.metrics.delivery_fallbacks.labels("channel").inc()
                return True
            except (discord.HTTPException, *NETWORK_ERRORS) as exc:
                log.warning("job %s: channel message failed (%r); trying a DM", address.job_id, exc)
                for f in files or []:
                    f.reset()
        else:
            dm_text = "Your /imagine result is ready."
        if not self.settings.dm_fallback:
            return False
        try:
            user = await self.client.fetch_user(address.user_id)
            kwargs["content"] = (content or dm_text)[:2000]
            await user.send(**kwargs)
            self.metrics.delivery_fallbacks.labels("dm").inc()
            return True
        except (discord.HTTPException, *NETWORK_ERRORS) as exc:
            log.warning("job %s: DM failed too (%r)", address.job_id, exc)
            return False
