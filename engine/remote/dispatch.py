"""The bot host's side of scale-out: the fair queue stays here; batches go to GPU workers over NATS.

The dispatcher takes one batch at a time from the JobQueue (so round-robin, caps, positions, ETA and cancel keep
working) and only while the live workers have room: their slots plus one per worker. Each batch is recorded (jobs
marked running, its flight and deadline kept) before it is published, and signed: each job carries a token only the
worker that takes it learns. A sweep sends a batch past its deadline once more, then fails its jobs with a message.
SQLite decides what was delivered: a result seen twice is delivered once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.safety import picture_threshold
from engine.jobs.events import EventBus
from engine.jobs.ledger import JobLedger
from engine.jobs.queue import JobQueue
from engine.jobs.records import Job
from engine.jobs.store import JobStore
from engine.media.sources import source_path
from engine.ops.metrics import Metrics
from engine.ops.status import WorkerInfo
from engine.ops.throughput import Stats
from engine.remote import wire
from engine.remote.dead_letters import dead_letter_loop
from engine.remote.flights import Flight, FlightBoard, upload_error
from engine.remote.intake import ResultIntake
from engine.remote.nats_link import (
    Link,
    StoreFull,
    connect,
    declare_all,
    declare_consumer,
    exists,
    publish,
    retry,
    safe_url,
    warn_unencrypted,
)
from engine.remote.reports import WorkerReports
from engine.remote.signing import Signer
from engine.requests.models import Offer, offered_models
from engine.requests.params import ParamError
from engine.requests.prompt_length import PromptLength

log = logging.getLogger(__name__)

POLL_S = 1.0
SWEEP_S = 1.0
STORE_CHECK_S = 10.0  # how often the sweep checks that the server still has the deployment's streams


class RemoteDispatcher:
    """Sends batches to remote workers, keeps each one's deadline, and turns results into stored outcomes."""

    def __init__(self, settings: EngineSettings, store: JobStore, queue: JobQueue, ledger: JobLedger,
                 events: EventBus, stats: Stats, *, on_ready: Any = None, metrics: Metrics | None = None,
                 offer: Callable[[], Offer] | None = None) -> None:
        self.settings = settings
        self._remote = settings.remote
        env = Offer(offered_models(settings.models, settings.model_id), settings.loras)
        self._offer = offer or (lambda: env)  # the catalogue: a batch goes to its model's workers only
        self._declared = {e.source for e in self._offer().models}  # the workers' consumers, one per model source
        self._store = store  # reads; changes of state go through the ledger
        self._queue, self._ledger = queue, ledger
        self._metrics = metrics
        self._stats = stats
        self._link: Link | None = None
        self._tasks: list[asyncio.Task[None]] = []
        remote = settings.remote
        self._flights = FlightBoard(remote.nats_ack_wait, remote.nats_max_deliver, remote.batch_deadline_base,
                                    remote.batch_seconds_per_step)
        self._preparing: set[int] = set()  # jobs taken from the queue whose flight is being recorded
        self._room = asyncio.Condition()
        self._signer = Signer.for_data_dir(settings.data_dir)
        self._intake = ResultIntake(settings, store, queue, ledger, self._signer, refused=self._refused,
                                    finished=self._finished, current=self._flights.current_batch)
        self._reports = WorkerReports(settings.model_id, self._remote.worker_heartbeat, queue, events, self._signer,
                                      refused=self._refused, taken=self._flights.taken)
        self._redeclare = False  # set on reconnect: the server may have come back without its store
        self.stopping = False
        self._on_ready = on_ready  # called once, when the first worker is ready
        self.prompt_length: PromptLength | None = None  # the model's tokenizer, loaded here for the notes

    # --- what the engine reads ------------------------------------------------------------------

    def live_workers(self) -> list[wire.Heartbeat]:
        """Workers whose heartbeat is recent, by name."""
        return self._reports.live()

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
        """Jobs dispatched before a restart stay running (their results may be waiting in the stream), each with
        a deadline: one nobody reports on is sent again, then failed (blocking)."""
        for job in store.in_states(["running"]):
            self._queue.add(job, running=True)
            self._flights.adopt(job)

    def fail_queued(self, message: str) -> None:
        """Nothing here: without workers, jobs wait for one instead of failing."""

    def workers(self) -> tuple[WorkerInfo, ...]:
        """The live workers as status views show them."""
        now = time.time()
        return tuple(WorkerInfo(w.name, w.device, w.dtype, w.state, w.error, w.slots, w.busy, w.fast,
                                w.seconds_per_image, round(now - w.at, 1), w.models) for w in self.live_workers())

    def loaded_models(self) -> tuple[str, ...]:
        """None here: each worker's heartbeat says what it has loaded (``workers``)."""
        return ()

    def window(self) -> int:
        """Batches that may be out at once: every ready worker's slots plus one each."""
        ready = [w for w in self.live_workers() if w.state == "ready"]
        return sum(w.slots for w in ready) + len(ready)

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background (jobs wait while NATS is unreachable), then run the dispatch,
        results, dead-letter, sweep and heartbeat loops."""
        warn_unencrypted(self._remote)
        self._tasks.append(asyncio.create_task(self._guard("connect", self._connect), name="nats-connect"))
        self._tasks.append(asyncio.create_task(self._load_prompt_length(), name="tokenizer"))

    async def _load_prompt_length(self) -> None:
        """The model's tokenizer, for the same prompt notes the in-process worker gives (none if it cannot load)."""
        self.prompt_length = await asyncio.to_thread(PromptLength.of_model, self.settings.model_id)

    async def _connect(self) -> None:
        url = safe_url(self._remote.nats_url)
        self._link = link = await retry(
            lambda: connect(self._remote, "imagine bot", sorted(self._declared), declare=True,
                            reconnected=self._reconnected), f"connecting to NATS at {url}", lambda: self.stopping)
        log.info("connected to NATS at %s (prefix %s); dispatching to GPU workers", url, link.names.prefix)
        await self._reports.subscribe(link)
        loops = (("dispatch", self._dispatch_loop), ("results", lambda: self._intake.run(link, lambda: self.stopping)),
                 ("dead-letters", lambda: dead_letter_loop(link, self._remote.nats_max_deliver, self._dead,
                                                           lambda: self.stopping)),
                 ("heartbeats", lambda: self._reports.heartbeat_loop(link, lambda: self.stopping, self._workers_seen)),
                 ("sweep", self._sweep_loop))
        for name, loop in loops:
            self._tasks.append(asyncio.create_task(self._guard(name, loop), name=f"nats-{name}"))

    def _reconnected(self) -> None:
        self._redeclare = True

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
        """Tell the worker holding a dispatched job that it was cancelled (it stops at its next step); the cancel
        carries the job's token, so nobody else can send one."""
        flight = self._flights.of(job_id)
        if self._link is not None and flight is not None and not flight.recovered:
            asyncio.ensure_future(self._publish_cancel(flight.batch, job_id))

    async def _publish_cancel(self, batch: str, job_id: int) -> None:
        """Tell the worker holding ``batch`` to stop ``job_id``, signed with the job's token in that batch."""
        assert self._link is not None
        message = wire.CancelMessage(job_id=job_id, token=self._signer.token(batch, job_id))
        await self._link.nc.publish(self._link.names.cancel_subject, message.model_dump_json().encode())

    # --- dispatch ---------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self.stopping:
            async with self._room:
                await self._room.wait_for(lambda: self._flights.out() < self.window() or self.stopping)
            jobs = await asyncio.to_thread(self._queue.next_batch, self.settings.max_batch,
                                           window=self.settings.batch_window, timeout=POLL_S)
            if jobs is None:
                return
            if jobs:
                self._preparing.update(j.id for j in jobs)
                try:
                    await self._send(jobs, tries=1)
                finally:
                    self._preparing.difference_update(j.id for j in jobs)

    async def _send(self, jobs: list[Job], *, tries: int) -> None:
        """Record and publish one batch: sources uploaded, the flight kept and (first try) the jobs marked running
        in the store before the message leaves, so a result can never arrive for a job not yet running."""
        assert self._link is not None
        batch = uuid.uuid4().hex[:16]
        live: list[Job] = []
        for job in jobs:
            if self._queue.is_cancelled(job.id):  # recorded cancelled already: it leaves the queue, its source too
                self._finished(job.id)
                continue
            try:
                await self._upload_source(job)
            except (ParamError, OSError, StoreFull) as exc:  # deleted or cleaned up since it was queued, or full
                await self._fail(job, upload_error(exc))
                continue
            live.append(job)
        if not live:
            return
        flight = self._flights.sent(batch, live, tries)
        offer, p = self._offer(), live[0].params
        source = (offer.model(p.model) or offer.models[0]).source
        if tries == 1:
            await asyncio.to_thread(self._ledger.start, live)
        message = wire.BatchMessage(
            batch=batch, taken_token=self._signer.token(batch, "taken"),
            jobs=[wire.WireJob(id=j.id, params=j.params.to_dict(), picture_threshold=picture_threshold(j),
                               source=wire.source_object(j.id) if j.params.is_image_to_image else None,
                               token=self._signer.token(batch, j.id)) for j in live],
            delivery_format=self.settings.delivery_format,  # type: ignore[arg-type]
            delivery_quality=self.settings.delivery_quality, entries=wire.entries_of(offer, p.model, dict(p.loras)))
        try:
            link = self._link
            if source not in self._declared:  # a model the panel added since: its workers' consumer first
                await retry(lambda: declare_consumer(link.js, self._remote, source), "declaring", lambda: self.stopping)
                self._declared.add(source)
            ack = await publish(link.js, link.names.jobs_subject(source), message.model_dump_json().encode(),
                                msg_id=f"batch-{batch}", stopping=lambda: self.stopping)
        except StoreFull as exc:
            self._flights.remove(batch)
            for job in live:
                await self._fail(job, upload_error(exc))
            return
        flight.seq = ack.seq

    async def _upload_source(self, job: Job) -> None:
        """Put an image-to-image job's source (an earlier result, or the user's picture) in the Object Store."""
        p = job.params
        if not p.is_image_to_image:
            return
        assert self._link is not None
        path = await asyncio.to_thread(source_path, self._store, self.settings.data_dir, p)
        data = await asyncio.to_thread(path.read_bytes)
        await retry(lambda: self._link.images.put(wire.source_object(job.id), data),  # type: ignore[union-attr]
                    f"upload source of job {job.id}", lambda: self.stopping)

    async def _fail(self, job: Job, message: str) -> None:
        await asyncio.to_thread(self._ledger.fail, job, message)
        self._finished(job.id)

    def _finished(self, job_id: int) -> None:
        job = self._queue.get(job_id)
        if job is not None:
            self._queue.finish([job])
        if job is None or job.params.is_image_to_image:  # its source in the Object Store is needed no more
            asyncio.ensure_future(self._forget_source(job_id))
        self._flights.finished(job_id)
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

    async def _workers_seen(self) -> None:
        """After each heartbeat read: wake the dispatch loop, and say once that a worker is ready."""
        await self._notify()
        if self._on_ready is not None and self.state == "ready":
            self._on_ready()
            self._on_ready = None

    # --- deadlines, dead letters, a lost store ------------------------------------------------------

    async def _sweep_loop(self) -> None:
        """Every SWEEP_S: overdue batches are sent again once, then failed; running jobs nobody holds get a
        deadline; a server that lost the deployment's streams gets them again."""
        assert self._link is not None
        last = checked = time.monotonic()
        while not self.stopping:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            if self._redeclare or now - checked >= STORE_CHECK_S:
                checked = now
                await self._ensure_store()
            ready = self.state == "ready"
            for flight in self._flights.all():
                if not ready:
                    flight.paused(now - last)
                elif flight.overdue(now) and self._flights.get(flight.batch) is flight:
                    await self._overdue(flight)
            last = now
            held = self._flights.held() | self._preparing
            for job_id in self._queue.running_ids():
                job = self._queue.get(job_id)
                if job_id not in held and job is not None:
                    log.warning("job %s is running but no batch holds it; it gets a deadline", job_id)
                    self._flights.adopt(job)

    async def _ensure_store(self) -> None:
        assert self._link is not None
        self._redeclare = False
        if not await exists(self._link.js, self._link.names):
            log.warning("the NATS server has lost the streams of prefix %s (restarted without its store?); "
                        "declaring them again", self._link.names.prefix)
            await declare_all(self._link.js, self._remote, sorted(self._declared))

    async def _overdue(self, flight: Flight) -> None:
        self._flights.remove(flight.batch)
        jobs = [j for j in flight.jobs.values() if self._queue.is_active(j.id)]
        await self._withdraw(flight)
        if flight.tries >= 2:
            for job in jobs:
                log.error("job %s: past its deadline twice on the GPU workers (%.0f s; last taken by %s); failing it",
                          job.id, flight.seconds, flight.taken_by or "no worker")
                await self._fail(job, f"Generation took longer than its time limit ({flight.seconds:.0f} s) twice on "
                                      f"the GPU workers, so this job was stopped. Please try again; if it happens "
                                      f"again, the operator can find job {job.id} in the logs.")
            return
        log.warning("batch %s is past its deadline (%.0f s, taken by %s); sending its %d job(s) again", flight.batch,
                    flight.seconds, flight.taken_by or "no worker", len(jobs))
        if jobs:
            await self._send(jobs, tries=2)

    async def _withdraw(self, flight: Flight) -> None:
        """Take a batch back: its message leaves the stream and its worker is told to stop."""
        assert self._link is not None
        if flight.seq is not None:
            try:
                await self._link.js.delete_msg(self._link.names.jobs_stream, flight.seq)
            except Exception:  # acked meanwhile, or the store was lost
                pass
        if not flight.recovered:
            for job_id in flight.jobs:
                await self._publish_cancel(flight.batch, job_id)

    async def _dead(self, batch: wire.BatchMessage) -> None:
        """A batch hit NATS_MAX_DELIVER tries: with several jobs, each is tried on its own (one poison job fails
        alone); a job that failed on its own is set aside with a message."""
        flight = self._flights.remove(batch.batch)
        jobs = [j for w in batch.jobs if (j := self._queue.get(w.id)) is not None]
        if len(jobs) > 1:
            log.warning("batch %s failed %d times; trying its %d jobs one at a time", batch.batch,
                        self._remote.nats_max_deliver, len(jobs))
            self._preparing.update(j.id for j in jobs)  # not orphans for the sweep meanwhile
            try:
                for job in jobs:
                    await self._send([job], tries=flight.tries if flight else 1)
            finally:
                self._preparing.difference_update(j.id for j in jobs)
            return
        for job in jobs:
            log.error("job %s: set aside after %d tries on GPU workers", job.id, self._remote.nats_max_deliver)
            await self._fail(job, f"Generation failed {self._remote.nats_max_deliver} times on the GPU workers, so "
                                  f"this job was set aside. The operator can find the details in the workers' logs "
                                  f"under job {job.id}.")

