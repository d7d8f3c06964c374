"""The bot host's side of scale-out: the fair queue stays here; batches go to GPU workers over NATS.

The dispatcher takes one batch at a time from the JobQueue (so round-robin, caps, positions, ETA
and cancel keep working) and only while the live workers have room: a window of their slots plus
one per worker, so each worker has the next batch at hand. Results come back on a durable stream;
SQLite decides what was delivered: a result is recorded only while its job is still active, so a
result seen twice (a redelivered batch, a worker cut off past AckWait) is delivered once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from nats.js.errors import NoKeysError

from engine.engine_settings import EngineSettings
from engine.gpu.safety import picture_threshold
from engine.jobs.events import EventBus
from engine.jobs.ledger import JobLedger
from engine.jobs.queue import JobQueue
from engine.jobs.records import Job, JobEvent
from engine.jobs.store import JobStore
from engine.media.saving import save_error
from engine.media.sources import source_path
from engine.ops.metrics import Metrics
from engine.ops.status import WorkerInfo
from engine.ops.throughput import Stats
from engine.remote import wire
from engine.remote.intake import ResultIntake
from engine.remote.nats_link import (
    Link,
    connect,
    dead_letters_consumer_config,
    publish,
    retry,
    safe_url,
)
from engine.requests.params import ParamError
from engine.requests.prompt_length import PromptLength

log = logging.getLogger(__name__)

POLL_S = 1.0


class RemoteDispatcher:
    """Sends batches to remote workers and turns their results into stored outcomes and events."""

    def __init__(self, settings: EngineSettings, store: JobStore, queue: JobQueue, ledger: JobLedger,
                 events: EventBus, stats: Stats, *, on_ready: Any = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self._store = store  # reads; changes of state go through the ledger
        self._queue = queue
        self._ledger = ledger
        self._metrics = metrics
        self._events = events  # progress only
        self._stats = stats
        self._link: Link | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: dict[str, set[int]] = {}  # batch id -> its jobs without a result yet
        self._room = asyncio.Condition()
        self._intake = ResultIntake(settings, store, queue, ledger, refused=self._refused, finished=self._finished)
        self._workers: dict[str, wire.Heartbeat] = {}
        self.stopping = False
        self._on_ready = on_ready  # called once, when the first worker is ready
        self.prompt_length: PromptLength | None = None  # the model's tokenizer, loaded here for the notes

    # --- what the engine reads ------------------------------------------------------------------

    def live_workers(self) -> list[wire.Heartbeat]:
        """Workers whose heartbeat is recent, by name."""
        limit = time.time() - self.settings.remote.worker_heartbeat * wire.HEARTBEAT_MISSES
        return sorted((w for w in self._workers.values() if w.at >= limit), key=lambda w: w.name)

    @property
    def state(self) -> str:
        """``ready`` while at least one worker is ready, else ``loading`` (jobs wait for one)."""
        return "ready" if any(w.state == "ready" for w in self.live_workers()) else "loading"

    @property
    def fast_available(self) -> bool:
        """True when a live worker has the fast-mode LoRA."""
        return any(w.fast and w.state == "ready" for w in self.live_workers())

    @property
    def error(self) -> str | None:
        """None: a worker whose model failed says so in its own row of /status, and others may serve."""
        return None

    @property
    def model(self) -> None:
        """None: the models are on the GPU workers."""
        return None

    def recover(self, store: JobStore) -> None:
        """Dispatched jobs are safe in JetStream: their results arrive (or they are redelivered), so they stay
        running (blocking)."""
        for job in store.in_states(["running"]):
            self._queue.add(job, running=True)

    def fail_queued(self, message: str) -> None:
        """Nothing here: without workers, jobs wait for one instead of failing."""

    def workers(self) -> tuple[WorkerInfo, ...]:
        """The live workers as status views show them."""
        now = time.time()
        return tuple(WorkerInfo(w.name, w.device, w.dtype, w.state, w.error, w.slots, w.busy, w.fast,
                                w.seconds_per_image, round(now - w.at, 1)) for w in self.live_workers())

    def window(self) -> int:
        """Batches that may be out at once: every ready worker's slots plus one each."""
        ready = [w for w in self.live_workers() if w.state == "ready"]
        return sum(w.slots for w in ready) + len(ready)

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background (jobs wait while NATS is unreachable), then run the dispatch,
        results, dead-letter, progress and heartbeat loops."""
        self._tasks.append(asyncio.create_task(self._connect(), name="nats-connect"))
        self._tasks.append(asyncio.create_task(self._load_prompt_length(), name="tokenizer"))

    async def _load_prompt_length(self) -> None:
        """The model's tokenizer, for the same prompt notes the in-process worker gives (none if it cannot load)."""
        try:
            self.prompt_length = await asyncio.to_thread(PromptLength.of_model, self.settings.model_id)
        except Exception as exc:  # offline without the files: requests go on, without the note
            log.warning("prompt length notes are off: the tokenizer of %s could not be loaded (%s)",
                        self.settings.model_id, exc)

    async def _connect(self) -> None:
        url = safe_url(self.settings.remote.nats_url)
        self._link = link = await retry(lambda: connect(self.settings.remote, name="imagine bot"),
                                        f"connecting to NATS at {url}", lambda: self.stopping)
        log.info("connected to NATS at %s; dispatching to GPU workers", url)
        await link.nc.subscribe("imagine.progress.*", cb=self._on_progress)
        loops = (("dispatch", self._dispatch_loop), ("results", lambda: self._intake.run(link, lambda: self.stopping)),
                 ("dead-letters", self._dead_loop), ("heartbeats", self._heartbeat_loop))
        for name, loop in loops:
            self._tasks.append(asyncio.create_task(self._guard(name, loop), name=f"nats-{name}"))

    async def stop(self) -> bool:
        """Stop the loops and close the connection (jobs out with workers finish there)."""
        self.stopping = True
        self._queue.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._link is not None:
            await self._link.close()
        return True

    async def _guard(self, name: str, loop: Any) -> None:
        while not self.stopping:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # a loop must survive NATS outages and bad messages
                log.exception("NATS %s loop failed; restarting it", name)
                await asyncio.sleep(POLL_S)

    def _refused(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.remote_refused.labels(reason).inc()

    def cancel_running(self, job_id: int) -> None:
        """Tell the workers a dispatched job was cancelled (it stops at its next step)."""
        if self._link is not None:
            asyncio.ensure_future(self._link.nc.publish(wire.CANCEL_SUBJECT, str(job_id).encode()))

    # --- dispatch ---------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self.stopping:
            async with self._room:
                await self._room.wait_for(lambda: len(self._in_flight) < self.window() or self.stopping)
            jobs = await asyncio.to_thread(self._queue.next_batch, self.settings.max_batch,
                                           window=self.settings.batch_window, timeout=POLL_S)
            if jobs is None:
                return
            if jobs:
                await self._send(jobs)

    async def _send(self, jobs: list[Job]) -> None:
        assert self._link is not None
        live: list[Job] = []
        wired: list[wire.WireJob] = []
        for job in jobs:
            if self._queue.is_cancelled(job.id):
                continue
            try:
                source = await self._upload_source(job)
            except (ParamError, OSError) as exc:  # deleted, or cleaned up, since the job was queued
                await self._fail(job, str(exc) if isinstance(exc, ParamError) else save_error(exc))
                continue
            live.append(job)
            wired.append(wire.WireJob(id=job.id, params=job.params.to_dict(), source=source,
                                      picture_threshold=picture_threshold(job)))
        self._queue.finish([j for j in jobs if j not in live])
        if not live:
            return
        batch = wire.BatchMessage(batch=uuid.uuid4().hex[:12], jobs=wired,
                                  delivery_format=self.settings.delivery_format,  # type: ignore[arg-type]
                                  delivery_quality=self.settings.delivery_quality)
        self._in_flight[batch.batch] = {j.id for j in live}
        # published before it is marked running: a crash in between re-sends it (a duplicate result is
        # dropped), while the other order could leave a job running that no worker ever got
        await publish(self._link.js, wire.jobs_subject(self.settings.model_id), batch.model_dump_json().encode(),
                      msg_id=f"batch-{batch.batch}", stopping=lambda: self.stopping)
        await asyncio.to_thread(self._ledger.start, live)

    async def _upload_source(self, job: Job) -> str | None:
        """Put an image-to-image job's source (an earlier result, or the user's picture) in the Object Store."""
        p = job.params
        if not p.is_image_to_image:
            return None
        assert self._link is not None
        path = await asyncio.to_thread(source_path, self._store, self.settings.data_dir, p)
        data = await asyncio.to_thread(path.read_bytes)
        name = wire.source_object(job.id)
        await retry(lambda: self._link.images.put(name, data), f"upload source of job {job.id}",  # type: ignore[union-attr]
                    lambda: self.stopping)
        return name

    async def _fail(self, job: Job, message: str) -> None:
        await asyncio.to_thread(self._ledger.fail, job, message)
        self._finished(job.id)

    def _finished(self, job_id: int) -> None:
        job = self._queue.get(job_id)
        if job is not None:
            self._queue.finish([job])
        if job is None or job.params.is_image_to_image:  # its source in the Object Store is needed no more
            asyncio.ensure_future(self._forget_source(job_id))
        for batch, ids in list(self._in_flight.items()):
            ids.discard(job_id)
            if not ids:
                del self._in_flight[batch]
        asyncio.ensure_future(self._notify())

    async def _forget_source(self, job_id: int) -> None:
        if self._link is None:
            return
        try:
            await self._link.images.delete(wire.source_object(job_id))
        except Exception:  # never uploaded (a text job after a restart), or already gone
            pass

    async def _notify(self) -> None:
        async with self._room:
            self._room.notify_all()

    # --- dead letters, progress, heartbeats -------------------------------------------------------------

    async def _dead_loop(self) -> None:
        """A batch that hit NATS_MAX_DELIVER tries (a poison job, or one that kills workers) fails here."""
        assert self._link is not None
        js = self._link.js
        sub = await js.pull_subscribe(">", durable=wire.DEAD_CONSUMER, stream=wire.DEAD_STREAM,
                                      config=dead_letters_consumer_config())
        while not self.stopping:
            try:
                msgs = await sub.fetch(10, timeout=POLL_S)
            except asyncio.TimeoutError:
                continue
            for msg in msgs:
                try:
                    seq = int(json.loads(msg.data)["stream_seq"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("dropping a malformed dead-letter advisory: %s", exc)
                    await msg.term()
                    continue
                try:
                    stored = await js.get_msg(wire.JOBS_STREAM, seq)
                    batch = wire.BatchMessage.model_validate_json(stored.data or b"")
                except Exception as exc:  # already removed by an earlier pass
                    log.info("dead letter %s: batch no longer in the stream (%s)", seq, exc)
                else:
                    for w in batch.jobs:
                        log.error("job %s: set aside after %d tries on GPU workers", w.id,
                                  self.settings.remote.nats_max_deliver)
                        job = self._queue.get(w.id) or await asyncio.to_thread(self._store.get, w.id)
                        if job is not None:
                            await self._fail(job, f"Generation failed {self.settings.remote.nats_max_deliver} times "
                                                  f"on the GPU workers, so this job was set aside. The operator can "
                                                  f"find the details in the workers' logs under job {w.id}.")
                    await js.delete_msg(wire.JOBS_STREAM, seq)
                await msg.ack()

    async def _on_progress(self, msg: Any) -> None:
        try:
            job_id = int(msg.subject.rsplit(".", 1)[1])
            step, total = int(msg.headers["step"]), int(msg.headers["total"])
        except (ValueError, KeyError, TypeError, IndexError):
            return
        job = self._queue.get(job_id)
        if job is None or self._queue.is_cancelled(job_id):
            return
        self._queue.set_progress(job_id, step, total)
        self._events.publish(JobEvent("progress", job, step, total, msg.data or None))

    async def _heartbeat_loop(self) -> None:
        assert self._link is not None
        kv = self._link.workers
        while not self.stopping:
            seen: dict[str, wire.Heartbeat] = {}
            try:
                for key in await kv.keys():
                    entry = await kv.get(key)
                    if entry.value:
                        beat = wire.Heartbeat.model_validate_json(entry.value)
                        if beat.model == self.settings.model_id:
                            seen[key] = beat
            except NoKeysError:
                pass
            except Exception as exc:  # reconnecting; keep the last view until it goes stale
                log.debug("heartbeat read: %s", exc)
                seen = self._workers
            before = len(self._in_flight) < self.window()
            self._workers = seen
            if len(self._in_flight) < self.window() and not before:
                await self._notify()
            if self._on_ready is not None and self.state == "ready":
                self._on_ready()
                self._on_ready = None
            await asyncio.sleep(POLL_S / 2)
