"""The Discord side of one job: its queue position, throttled progress, and its final message.

A Tracker serialises its job's edits, coalesces progress to at most one edit per
PROGRESS_EDIT_INTERVAL, and never lets an older state overwrite a newer one. A job is marked
delivered only after Discord accepted its final message.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

import discord

from bot import render
from bot.components import pending_view, result_view
from bot.delivery.address import Address
from bot.delivery.sender import Sender
from bot.i18n.speech import localized
from engine.gpu.safety import recorded_actions
from engine.jobs.records import Job
from engine.requests.checks import Note
from engine.service import Engine

log = logging.getLogger(__name__)

# how far a job's message has got: a lower rank never overwrites a higher one
QUEUED, RUNNING, FINAL = 0, 1, 2


@dataclass
class _Progress:
    step: int
    total: int
    preview: bytes | None


class Tracker:
    """Edits one job's message as the job moves on, and delivers its outcome."""

    def __init__(self, job: Job, *, engine: Engine, sender: Sender, interval: float) -> None:
        self.job = job
        self.address = Address.of(job)
        self.engine = engine
        self.sender = sender
        self.interval = interval  # seconds between progress edits
        self.rank = -1
        self.lock = asyncio.Lock()
        self.last_edit = 0.0
        self.pending: _Progress | None = None
        self.editor: asyncio.Task[None] | None = None
        self.finished = False
        self.notes: tuple[Note, ...] = ()
        self.shown: tuple[int, float | None] | None = None  # the position and ETA the message shows

    async def edit(self, **kwargs: Any) -> bool:
        """Edit the original response; False when the token is gone or Discord refused."""
        ok = await self.sender.edit_original(self.address, **kwargs)
        if ok:
            self.last_edit = time.monotonic()
        return ok

    async def queued(self, position: int, eta: float | None, notes: tuple[Note, ...] = ()) -> None:
        """Show the queue position (ignored once the job has moved on)."""
        self.notes = notes  # shown again with the result, in case the job starts before this edit
        async with self.lock:
            if self.rank > QUEUED or self.finished or position < 0:
                return
            self.rank = QUEUED
            await self._show_queued(position, eta)

    @property
    def waiting(self) -> bool:
        """True while the message shows a queue position."""
        return self.rank == QUEUED and not self.finished

    def moved(self, position: int, eta: float | None) -> bool:
        """Whether the queue moved enough to be worth an edit: another position, or an ETA off by a fifth and
        at least 15 s (small drifts of the seconds-per-image average are not news)."""
        if self.shown is None:
            return False
        old_position, old_eta = self.shown
        if position != old_position:
            return True
        if eta is None or old_eta is None:
            return eta != old_eta
        return abs(eta - old_eta) >= max(15.0, 0.2 * old_eta)

    async def requeued(self, position: int, eta: float | None) -> None:
        """Show a new position and ETA while the job still waits (the refresh of waiting members)."""
        async with self.lock:
            if self.waiting and self.moved(position, eta):
                await self._show_queued(position, eta)

    async def _show_queued(self, position: int, eta: float | None) -> None:
        loading = self.engine.model_state == "loading"
        self.shown = (position, eta)
        await self.edit(content=render.queued_text(position, eta, loading=loading, notes=self.notes,
                                                   locale=self.address.locale),
                        view=pending_view(self.job.id, self.address.locale))

    def progress(self, step: int, total: int, preview: bytes | None) -> None:
        """Remember the newest progress; an editor task sends it no faster than the interval."""
        if self.rank > RUNNING or self.finished:
            return
        keep_preview = preview or (self.pending.preview if self.pending else None)
        self.pending = _Progress(step, total, keep_preview)
        if self.editor is None or self.editor.done():
            self.editor = asyncio.create_task(self._edit_progress(), name=f"progress-{self.job.id}")

    async def _edit_progress(self) -> None:
        while self.pending is not None and not self.finished:
            wait = self.last_edit + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self.lock:
                update, self.pending = self.pending, None
                if update is None or self.finished or self.rank > RUNNING:
                    return
                self.rank = RUNNING
                kwargs: dict[str, Any] = {
                    "content": render.progress_text(update.step, update.total, self.job.params.count,
                                                    self.address.locale),
                    "view": pending_view(self.job.id, self.address.locale),
                }
                # a preview is not checked by the classifier: blurred where the policy spoilers flagged images,
                # left out where it withholds them
                if update.preview and self.address.nsfw != "block":
                    name = "SPOILER_preview.jpg" if self.address.nsfw == "spoiler" else "preview.jpg"
                    kwargs["attachments"] = [discord.File(io.BytesIO(update.preview), filename=name,
                                                          description=render.preview_alt_text(self.job))]
                if not await self.edit(**kwargs):
                    self.last_edit = time.monotonic()  # back off even when the edit failed

    async def finish(self, job: Job) -> None:
        """Deliver the final state (result, failure or cancellation)."""
        self.finished = True
        self.job = job
        # the progress editor stops by itself once `finished` is set; cancelling it could abort an edit
        # already on the wire, which Discord might then apply after the result
        async with self.lock:
            self.rank = FINAL
            if job.state == "done":
                await self._deliver_result(job)
            elif job.state == "failed":
                # the engine's words for a failure, stored in English: in the member's language where known
                why = localized(job.error or "Generation failed.", self.address.locale)
                await self._deliver_text(job, f"\u274c {render.safe(why, 1500)}")
            elif job.state == "cancelled":
                await self.edit(content=f"\u2716\ufe0f Cancelled (job {job.id}).", attachments=[], view=None)

    async def _deliver_text(self, job: Job, text: str) -> None:
        ok = await self.edit(content=text, attachments=[], view=None, embed=None)
        if not ok:
            ok = await self.sender.send_fallback(self.address, content=text)
        if ok:
            await self.engine.mark_delivered(job.id)

    async def _deliver_result(self, job: Job) -> None:
        actions = recorded_actions(job, self.engine.settings.safety_threshold)
        try:
            uploads, shrunk = await self.sender.read_files(job, self.address, actions)
        except (OSError, ValueError) as exc:
            log.error("job %s: result files unreadable: %s", job.id, exc)
            await self._deliver_text(job, "\u274c The result could not be read back from disk. Please try again.")
            return
        withheld = [i for i, action in enumerate(actions) if action == "withhold"]
        if withheld:
            log.info("job %s: images %s withheld by the NSFW policy", job.id, [i + 1 for i in withheld])
        # a spoilered image must not be shown un-blurred inside the embed
        shown = uploads[0].name if uploads and actions[0] == "post" else None
        locale = self.address.locale
        notes = (*shrunk, render.withheld_text(withheld, len(actions), checked=bool(job.safety), locale=locale)) \
            if withheld else shrunk
        delivered = await self.sender.post_result(self.address, content=self.note_text(notes),
                                                  embed=render.result_embed(job, image_name=shown, locale=locale),
                                                  view=result_view(job.id, len(job.results),
                                                                   upscaled=job.params.upscale > 1, withheld=withheld,
                                                                   locale=locale),
                                                  uploads=uploads)
        if delivered:
            for action in actions:
                self.engine.metrics.safety_images.labels(action).inc()
            await self.engine.mark_delivered(job.id)
        else:
            log.error("job %s: could not deliver the result; it stays undelivered and is retried on restart",
                      job.id)

    def note_text(self, shrunk: tuple[Note, ...] = ()) -> str | None:
        """The notes (truncation, replaced options, files sent smaller than they are) that go with the result."""
        return render.notes_text((*self.notes, *shrunk), self.address.locale)
