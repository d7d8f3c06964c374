"""Routing engine events to per-job trackers, and delivering what finished while the bot was away."""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.bot_settings import BotSettings
from bot.delivery.address import SOURCE, needs_delivery
from bot.delivery.sender import Sender
from bot.delivery.tracker import Tracker
from engine.jobs.events import EventStream
from engine.jobs.records import Job, JobEvent
from engine.service import Engine

log = logging.getLogger(__name__)

_FINAL = ("done", "failed", "cancelled")
# finished job ids remembered so a late event or the start-up recovery cannot deliver a job twice; those
# arrive within seconds of the finish, so the newest few thousand are plenty and memory stays bounded
FINISHED_MEMORY = 4096
# waiting members' positions and ETAs are refreshed this often, at most POSITION_EDITS per round, front of the
# queue first: with thousands waiting the edits stay a few per second, far below Discord's global limit
POSITION_REFRESH_S = 15.0
POSITION_EDITS = 45


class Delivery:
    """Subscribes to the engine and hands each Discord job's events to that job's tracker."""

    def __init__(self, client: discord.Client, engine: Engine, settings: BotSettings) -> None:
        self.client = client
        self.engine = engine
        self.settings = settings
        self.sender = Sender(client, settings, engine.metrics)
        self.trackers: dict[int, Tracker] = {}
        self._task: asyncio.Task[None] | None = None
        self._stream: EventStream | None = None
        self._final_tasks: set[asyncio.Task[None]] = set()
        self._finished_ids: dict[int, None] = {}  # insertion-ordered: the oldest is forgotten first

    def start(self) -> None:
        """Subscribe to the engine and deliver what finished while the bot was away."""
        self._stream = self.engine.subscribe()
        self._task = asyncio.create_task(self._run(), name="delivery")
        refresh = asyncio.create_task(self._refresh_positions(), name="queue-positions")
        self._final_tasks.add(refresh)
        refresh.add_done_callback(self._final_tasks.discard)
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
            if task.get_name() == "queue-positions":
                task.cancel()
        for task in list(self._final_tasks):
            try:
                await asyncio.wait_for(task, 30)  # a cut-off delivery would be posted again on restart
            except (TimeoutError, asyncio.CancelledError, Exception):
                pass

    def tracker(self, job: Job) -> Tracker | None:
        """The tracker of a job this bot delivers (created on first use, also for recovered jobs).

        None for jobs of other front doors and for jobs whose final state was already handled here,
        so a late "queued" edit can never overwrite a delivered result.
        """
        if not needs_delivery(job) or job.id in self._finished_ids:
            return None
        tracker = self.trackers.get(job.id)
        if tracker is None:
            tracker = self.trackers[job.id] = Tracker(job, engine=self.engine, sender=self.sender,
                                                      interval=self.settings.progress_edit_interval)
        return tracker

    async def _run(self) -> None:
        assert self._stream is not None
        async for event in self._stream:
            try:
                self._route(event)
            except Exception:  # one bad event must not stop delivery of the others
                log.exception("job %s: routing %s failed", event.job.id, event.kind)

    async def _refresh_positions(self) -> None:
        """Every POSITION_REFRESH_S: the waiting members whose place or ETA moved get their message edited, the
        front of the queue first, at most POSITION_EDITS a round (one fair order computed for all of them)."""
        while True:
            await asyncio.sleep(POSITION_REFRESH_S)
            waiting = [t for t in self.trackers.values() if t.waiting]
            if not waiting:
                continue
            positions = self.engine.positions()
            due = sorted((positions[t.job.id], t.job.id, t) for t in waiting
                         if t.job.id in positions and t.moved(*positions[t.job.id]))
            for (position, eta), _, tracker in due[:POSITION_EDITS]:
                try:
                    await tracker.requeued(position, eta)
                except Exception:  # one failed edit must not stop the others' refresh
                    log.exception("job %s: refreshing its queue position failed", tracker.job.id)

    def _route(self, event: JobEvent) -> None:
        tracker = self.tracker(event.job)
        if tracker is None:
            return
        if event.kind in ("started", "progress"):
            tracker.progress(event.step, event.total or event.job.params.steps, event.preview)
        elif event.kind in _FINAL:
            self._start_finish(tracker, event.job)

    def _start_finish(self, tracker: Tracker, job: Job) -> None:
        # claimed before any await, so a live event and start-up recovery cannot both deliver one job
        self._finished_ids[job.id] = None
        while len(self._finished_ids) > FINISHED_MEMORY:
            del self._finished_ids[next(iter(self._finished_ids))]
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
        await self.client.wait_until_ready()
        for job in await self.engine.undelivered(SOURCE):
            tracker = self.tracker(job)
            if tracker is not None:
                log.info("job %s: delivering a result that finished while the bot was away", job.id)
                self._start_finish(tracker, job)
