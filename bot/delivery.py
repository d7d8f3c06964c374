"""Turning engine events into Discord messages: position, throttled progress, the result.

One Tracker per job serialises that job's edits, coalesces progress to at most one edit per
PROGRESS_EDIT_INTERVAL, and never lets an older state overwrite a newer one. Results go to the
interaction's original response while its token lives, else to the channel (then a DM). A job is
marked delivered only after Discord accepted the message.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot import render
from bot.views import pending_view, result_view
from engine.images import fit_under
from engine.jobs import Job, JobEvent

if TYPE_CHECKING:
    from bot.client import ImagineBot

log = logging.getLogger(__name__)

MAX_FILES = 10  # Discord's per-message attachment limit
_RANK = {"queued": 0, "started": 1, "progress": 1, "done": 2, "failed": 2, "cancelled": 2}
_TOKEN_GONE = {10062, 10015, 50027}  # unknown interaction, unknown webhook, invalid webhook token
# connection failures that discord.py does not turn into HTTPException
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass
class _Progress:
    step: int
    total: int
    preview: bytes | None


class Tracker:
    """The Discord side of one job."""

    def __init__(self, delivery: Delivery, job: Job) -> None:
        self.delivery = delivery
        self.job = job
        self.info: dict[str, Any] = dict(job.requester.delivery)
        self.rank = -1
        self.lock = asyncio.Lock()
        self.last_edit = 0.0
        self.pending: _Progress | None = None
        self.editor: asyncio.Task[None] | None = None
        self.finished = False
        self.notes: tuple[str, ...] = ()

    def token_alive(self) -> bool:
        """Whether the interaction token can still be used (with a safety margin)."""
        created = float(self.info.get("created", 0))
        return time.time() - created < self.delivery.settings.token_safe_seconds

    def webhook(self) -> discord.Webhook:
        """The interaction's webhook (works after a restart: it needs only the app id and token)."""
        return discord.Webhook.partial(int(self.info["app_id"]), self.info["token"], client=self.delivery.bot)

    async def edit(self, **kwargs: Any) -> bool:
        """Edit the original response; False when the token is gone or Discord refused."""
        if not self.token_alive():
            return False
        try:
            await self.webhook().edit_message("@original", allowed_mentions=render.NO_MENTIONS,  # type: ignore[arg-type]
                                              **kwargs)
            self.last_edit = time.monotonic()
            return True
        except discord.HTTPException as exc:
            log.warning("job %s: editing the response failed: %s %s", self.job.id, exc.status, exc.code)
            return False
        except NETWORK_ERRORS as exc:
            log.warning("job %s: editing the response failed: %r", self.job.id, exc)
            return False

    async def queued(self, position: int, eta: float | None, notes: tuple[str, ...] = ()) -> None:
        """Show the queue position (ignored once the job has moved on)."""
        self.notes = notes  # shown again with the result, in case the job starts before this edit
        async with self.lock:
            if self.rank > 0 or self.finished or position < 0:
                return
            self.rank = 0
            loading = self.delivery.engine.model_state == "loading"
            await self.edit(content=render.queued_text(position, eta, loading=loading, notes=notes),
                            view=pending_view(self.job.id))

    def progress(self, step: int, total: int, preview: bytes | None) -> None:
        """Remember the newest progress; an editor task sends it no faster than the interval."""
        if self.rank > 1 or self.finished:
            return
        keep_preview = preview or (self.pending.preview if self.pending else None)
        self.pending = _Progress(step, total, keep_preview)
        if self.editor is None or self.editor.done():
            self.editor = asyncio.create_task(self._edit_progress(), name=f"progress-{self.job.id}")

    async def _edit_progress(self) -> None:
        interval = self.delivery.settings.progress_edit_interval
        while self.pending is not None and not self.finished:
            wait = self.last_edit + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self.lock:
                update, self.pending = self.pending, None
                if update is None or self.finished or self.rank > 1:
                    return
                self.rank = 1
                kwargs: dict[str, Any] = {
                    "content": render.progress_text(update.step, update.total, self.job.params.count),
                    "view": pending_view(self.job.id),
                }
                if update.preview:
                    kwargs["attachments"] = [discord.File(io.BytesIO(update.preview), filename="preview.jpg")]
                if not await self.edit(**kwargs):
                    self.last_edit = time.monotonic()  # back off even when the edit failed

    async def finish(self, job: Job) -> None:
        """Deliver the final state (result, failure or cancellation)."""
        self.finished = True
        self.job = job
        # the progress editor stops by itself once `finished` is set; cancelling it could abort an edit
        # already on the wire, which Discord might then apply after the result
        async with self.lock:
            self.rank = 2
            if job.state == "done":
                await self.delivery.deliver_result(self, job)
            elif job.state == "failed":
                await self._deliver_text(job, f"\u274c {render.safe(job.error or 'Generation failed.', 1500)}")
            elif job.state == "cancelled":
                await self.edit(content=f"\u2716\ufe0f Cancelled (job {job.id}).", attachments=[], view=None)

    async def _deliver_text(self, job: Job, text: str) -> None:
        ok = await self.edit(content=text, attachments=[], view=None, embed=None)
        if not ok:
            ok = await self.delivery.send_fallback(self, content=text)
        if ok:
            await self.delivery.engine.mark_delivered(job.id)


class Delivery:
    """Routes engine events to per-job trackers and delivers results."""

    def __init__(self, bot: ImagineBot) -> None:
        self.bot = bot
        self.engine = bot.engine
        self.settings = bot.settings
        self.trackers: dict[int, Tracker] = {}
        self._task: asyncio.Task[None] | None = None
        self._stream = None
        self._final_tasks: set[asyncio.Task[None]] = set()
        self._finished_ids: set[int] = set()

    def start(self) -> None:
        """Subscribe to the engine and deliver what finished while the bot was away."""
        self._stream = self.engine.subscribe()
        self._task = asyncio.create_task(self._run(), name="delivery")
        recovery = asyncio.create_task(self._recover(), name="delivery-recovery")
        self._final_tasks.add(recovery)
        recovery.add_done_callback(self._final_tasks.discard)

    async def stop(self) -> None:
        """Stop routing events (pending deliveries finish first)."""
        if self._stream is not None:
            self._stream.close()
        if self._task is not None:
            self._task.cancel()
        for task in list(self._final_tasks):
            try:
                await asyncio.wait_for(task, 30)  # a cut-off delivery would be posted again on restart
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                pass

    def tracker(self, job: Job) -> Tracker | None:
        """The tracker of a Discord job (created on first use, also for recovered jobs).

        None for jobs of other front doors and for jobs whose final state was already handled here,
        so a late "queued" edit can never overwrite a delivered result.
        """
        if job.requester.source != "discord" or "token" not in job.requester.delivery:
            return None
        if job.id in self._finished_ids:
            return None
        tracker = self.trackers.get(job.id)
        if tracker is None:
            tracker = self.trackers[job.id] = Tracker(self, job)
        return tracker

    async def _run(self) -> None:
        assert self._stream is not None
        async for event in self._stream:
            try:
                self._route(event)
            except Exception:  # one bad event must not stop delivery of the others
                log.exception("job %s: routing %s failed", event.job.id, event.kind)

    def _route(self, event: JobEvent) -> None:
        tracker = self.tracker(event.job)
        if tracker is None:
            return
        if event.kind in ("started", "progress"):
            tracker.progress(event.step, event.total or event.job.params.steps, event.preview)
        elif event.kind in ("done", "failed", "cancelled"):
            self._start_finish(tracker, event.job)

    def _start_finish(self, tracker: Tracker, job: Job) -> None:
        # claimed before any await, so a live event and start-up recovery cannot both deliver one job
        self._finished_ids.add(job.id)
        task = asyncio.create_task(self._finish(tracker, job), name=f"finish-{job.id}")
        self._final_tasks.add(task)
        task.add_done_callback(self._final_tasks.discard)

    async def _finish(self, tracker: Tracker, job: Job) -> None:
        try:
            await tracker.finish(job)
        except Exception:
            log.exception("job %s: final delivery failed", job.id)
        finally:
            self.trackers.pop(job.id, None)

    async def _recover(self) -> None:
        await self.bot.wait_until_ready()
        for job in await self.engine.undelivered("discord"):
            tracker = self.tracker(job)
            if tracker is not None:
                log.info("job %s: delivering a result that finished while the bot was away", job.id)
                self._start_finish(tracker, job)

    async def _files(self, tracker: Tracker, job: Job) -> list[tuple[bytes, str]]:
        limit = int(tracker.info.get("filesize_limit") or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)
        prefix = "SPOILER_" if tracker.info.get("spoiler") else ""

        def read() -> list[tuple[bytes, str]]:
            out = []
            for index, path in enumerate(job.delivery_paths):
                # a little headroom under the limit for multipart overhead
                data, suffix = fit_under(path, limit - 1024)
                out.append((data, f"{prefix}imagine-{job.id}-{index}{suffix}"))
            return out

        return await asyncio.to_thread(read)

    async def deliver_result(self, tracker: Tracker, job: Job) -> None:
        """Post the images, embed and buttons; fall back to a channel message or DM when needed."""
        try:
            files = await self._files(tracker, job)
        except (OSError, ValueError) as exc:
            log.error("job %s: result files unreadable: %s", job.id, exc)
            await tracker._deliver_text(job, "\u274c The result could not be read back from disk. Please try again.")
            return
        chunks = [files[i:i + MAX_FILES] for i in range(0, len(files), MAX_FILES)] or [[]]
        # a spoilered image must not be shown un-blurred inside the embed
        embed = render.result_embed(job, image_name=files[0][1] if files and not tracker.info.get("spoiler") else None)
        view = result_view(job.id, len(job.results))

        def make(chunk: list[tuple[bytes, str]]) -> list[discord.File]:
            return [discord.File(io.BytesIO(data), filename=name) for data, name in chunk]

        delivered = False
        if tracker.token_alive():
            delivered = await self._edit_with_retries(tracker, job, embed, view, make, chunks)
        if not delivered:
            delivered = await self.send_fallback(tracker, embed=embed, view=view, files=make(chunks[0]))
            for chunk in chunks[1:]:
                delivered = delivered and await self.send_fallback(tracker, files=make(chunk), mention=False)
        if delivered:
            await self.engine.mark_delivered(job.id)
        else:
            log.error("job %s: could not deliver the result; it stays undelivered and is retried on restart",
                      job.id)

    async def _edit_with_retries(self, tracker: Tracker, job: Job, embed: discord.Embed, view: discord.ui.View,
                                 make: Any, chunks: list[list[tuple[bytes, str]]]) -> bool:
        delay = 1.0
        for attempt in range(4):
            try:
                webhook = tracker.webhook()
                await webhook.edit_message(  # type: ignore[arg-type]
                    "@original", content=self.note_text(tracker), embed=embed, attachments=make(chunks[0]),
                    view=view, allowed_mentions=render.NO_MENTIONS)
                for chunk in chunks[1:]:
                    await webhook.send(files=make(chunk), allowed_mentions=render.NO_MENTIONS, wait=True)
                return True
            except NETWORK_ERRORS as exc:
                log.warning("job %s: result upload failed (%r), attempt %d", job.id, exc, attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2
                continue
            except discord.HTTPException as exc:
                if exc.code in _TOKEN_GONE or exc.status in (401, 404):
                    log.info("job %s: interaction token no longer valid (%s); using the channel", job.id, exc.code)
                    return False
                if not tracker.token_alive():
                    return False
                log.warning("job %s: result upload failed (%s %s), attempt %d", job.id, exc.status, exc.code,
                            attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2
        return False

    @staticmethod
    def note_text(tracker: Tracker) -> str | None:
        """The notes (truncation, replaced options) that go with the result, if any."""
        if not tracker.notes:
            return None
        return "\n".join(f"\u2139\ufe0f {render.safe(n, 400)}" for n in tracker.notes)[:1900]

    async def send_fallback(self, tracker: Tracker, *, content: str | None = None, embed: discord.Embed | None = None,
                            view: discord.ui.View | None = None, files: list[discord.File] | None = None,
                            mention: bool = True) -> bool:
        """Post to the job's channel mentioning only the requester; if that is refused, DM them."""
        user_id = int(tracker.info.get("user_id") or tracker.job.requester.user_id)
        text = content if content is not None else "your image is ready."
        if mention:
            text = f"<@{user_id}> {text}"
        kwargs: dict[str, Any] = {"content": text[:2000], "allowed_mentions": render.requester_only(user_id)}
        if embed is not None:
            kwargs["embed"] = embed
        if view is not None:
            kwargs["view"] = view
        if files:
            kwargs["files"] = files
        channel_id = tracker.info.get("channel_id") or tracker.job.requester.channel_id
        if channel_id:
            try:
                await self.bot.get_partial_messageable(int(channel_id)).send(**kwargs)
                return True
            except (discord.HTTPException, *NETWORK_ERRORS) as exc:
                log.warning("job %s: channel message failed (%r); trying a DM", tracker.job.id, exc)
                for f in files or []:
                    f.reset()
        if not self.settings.dm_fallback:
            return False
        try:
            user = await self.bot.fetch_user(user_id)
            kwargs["content"] = (content or "Your image is ready (I could not post in the channel).")[:2000]
            await user.send(**kwargs)
            return True
        except (discord.HTTPException, *NETWORK_ERRORS) as exc:
            log.warning("job %s: DM failed too (%r)", tracker.job.id, exc)
            return False
