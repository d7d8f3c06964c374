"""The ledger of job state: queued → running → done / failed / cancelled → delivered.

Every change is written to the job store first and then published on the event bus, here and nowhere
else, so no listener (delivery, metrics, the panel) hears of a state the store does not hold. The
blocking methods are called from worker threads or through ``asyncio.to_thread`` and publish
thread-safely; the async ones are for the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from engine.jobs.events import EventBus
from engine.jobs.records import Job, JobEvent, Requester
from engine.jobs.store import JobStore, QuotaGuard
from engine.ops.logs import job_fields
from engine.ops.throughput import Stats
from engine.requests.params import GenerationParams

log = logging.getLogger(__name__)


class JobLedger:
    """Writes each change of a job's state, then announces it."""

    def __init__(self, store: Callable[[], JobStore], events: EventBus, stats: Stats) -> None:
        self._store = store
        self._events = events
        self._stats = stats  # counts finished jobs for /status, before anyone hears of them

    async def create(self, requester: Requester, params: GenerationParams, *, priority: int, images: int,
                     quota: QuotaGuard | None, then: Callable[[Job], None]) -> Job:
        """Store a new queued job (the quota counted in the same transaction), call ``then`` with it on the
        loop (the queue takes it), and announce it. Raises the quota's refusal with nothing written."""
        store = self._store()
        job = await asyncio.to_thread(store.insert_job, requester, params, priority=priority, images=images,
                                      quota=quota)
        then(job)
        self._events.publish(JobEvent("queued", job))
        return job

    def start(self, jobs: Sequence[Job]) -> None:
        """Mark a batch's jobs running (blocking)."""
        store = self._store()
        store.set_running([j.id for j in jobs])
        for job in jobs:
            self._events.publish_threadsafe(JobEvent("started", store.get(job.id) or job, 0, job.params.denoise_steps))

    def finish(self, job: Job, results: Sequence[str], gen_seconds: float, *, deliveries: Sequence[str] = (),
               safety: Sequence[float] = (), counts_batch: bool = False) -> bool:
        """Record a job's saved results (blocking); False when it was cancelled meanwhile, or already done (a
        duplicate): nothing is then announced or counted. ``counts_batch``: the job was its own pipeline call as far
        as this host knows (a GPU worker's result), so its images count towards the seconds per image."""
        store = self._store()
        if not store.set_done(job.id, results, gen_seconds, deliveries=deliveries, safety=safety):
            return False
        if counts_batch and results:  # before anyone hears of it: /status read on "done" sees this job
            self._stats.record_batch(gen_seconds / len(results), len(results))
        self._stats.record_finished()
        steps = job.params.denoise_steps
        self._events.publish_threadsafe(JobEvent("done", store.get(job.id) or job, steps, steps))
        return True

    def replace_results(self, job: Job, results: Sequence[str], *, expected: Sequence[str]) -> bool:
        """Swap a done job's result files from ``expected`` to ``results`` (its PNG originals, written after the
        delivery copies); not a change of state, so nothing is announced. False when the job changed meanwhile."""
        return self._store().set_results(job.id, results, expected=expected)

    def fail(self, job: Job, message: str) -> bool:
        """Record a failure with a user-facing ``message`` (blocking); False when the job had finished already."""
        store = self._store()
        if not store.set_failed(job.id, message):
            return False
        self._events.publish_threadsafe(JobEvent("failed", store.get(job.id) or job))
        return True

    async def cancel(self, job_id: int) -> bool:
        """Record a cancellation; False when the job had finished already."""
        store = self._store()
        if not await asyncio.to_thread(store.set_cancelled, job_id):
            return False
        job = await asyncio.to_thread(store.get, job_id)
        if job is not None:
            self._events.publish(JobEvent("cancelled", job))
        return True

    async def deliver(self, job_id: int) -> None:
        """Record that the front door's delivery was accepted (logged with the job's fields, not published)."""
        store = self._store()
        job = await asyncio.to_thread(lambda: (store.set_delivered(job_id), store.get(job_id))[1])
        if job is not None:
            log.info("job %s delivered", job_id, extra=job_fields(job, "delivered"))
