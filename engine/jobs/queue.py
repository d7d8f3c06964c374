"""The queue of active jobs: the one owner of pending, running, cancelled and admission bookkeeping.

Everything that decides *which* job runs next is the pure code of engine/jobs/scheduling.py; this
class holds the state those functions read, behind one condition variable shared by the event
loop (submit, cancel, views) and the worker thread (take a batch, finish it). Every method is
short and never blocks on I/O, so the event loop may call them directly; only ``next_batch``
waits, and only when asked to.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from engine.jobs.records import Job, Refused
from engine.jobs.scheduling import Pending, fair_order, lane_position, next_batch, warm_first

# how many times a job needing another model may be passed over by jobs for a loaded one (a load costs seconds)
MODEL_PATIENCE = 3


@dataclass(frozen=True)
class QueueEntry:
    """One active job as the queue views show it."""

    job: Job
    position: int  # 0 = running, 1 = next...
    step: int
    total: int


class Hold:
    """A place under the per-user and queue caps, held between the check and the job's arrival."""

    def __init__(self, queue: JobQueue, user_id: str) -> None:
        self._queue = queue
        self.user_id = user_id
        self.held = True

    def release(self) -> None:
        """Give the place back (the request was not queued after all)."""
        self._queue._release(self)


class JobQueue:
    """Active jobs (queued and running) and the fair order they run in."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[int, Pending] = {}
        # the same jobs by priority, then member, in id order: a position is read from these (lane_position)
        self._lanes: dict[int, dict[str, list[Pending]]] = {}
        self._active: dict[int, Job] = {}
        self._per_user: Counter[str] = Counter()  # active jobs per member: the per-user cap without a walk
        self._progress: dict[int, tuple[int, int]] = {}
        self._running: dict[int, None] = {}  # an ordered set: several batches run at once with remote workers
        self._cancelled: set[int] = set()
        self._last_served: dict[str, int] = {}
        self._serve_counter = 0
        self._passed_over: dict[int, int] = {}  # queued job -> batches for a loaded model that went ahead of it
        self._admitting: list[str] = []  # users holding a place whose job is not queued yet
        self._closed = False

    # --- admission ----------------------------------------------------------------------------

    def admit(self, user_id: str, *, per_user_cap: int | None, queue_cap: int) -> Hold:
        """Hold a place for ``user_id`` under the caps, or raise Refused saying which cap is reached.

        ``per_user_cap`` None means no per-user cap (the operator's own jobs).
        """
        with self._cond:
            mine = self._per_user[user_id] + self._admitting.count(user_id)
            queued = len(self._pending) + len(self._admitting)
            if per_user_cap is not None and mine >= per_user_cap:
                raise Refused("user_cap", f"You already have {mine} image job(s) waiting or running (the limit "
                                          f"is {per_user_cap}). Wait for one to finish or cancel one with /cancel.")
            if per_user_cap is not None and queued >= queue_cap:
                raise Refused("queue_full", f"The queue is full ({queued} jobs). Please try again in a few minutes.")
            self._admitting.append(user_id)
        return Hold(self, user_id)

    def _release(self, admission: Hold) -> None:
        with self._cond:
            if admission.held:
                admission.held = False
                self._admitting.remove(admission.user_id)

    def add(self, job: Job, admission: Hold | None = None, *, running: bool = False) -> None:
        """Queue a stored job; its admission (if any) turns into the job's place.

        ``running`` registers a job already handed to a remote worker (after a restart of the bot).
        """
        with self._cond:
            if admission is not None and admission.held:
                admission.held = False
                self._admitting.remove(admission.user_id)
            self._activate(job)
            if running:
                self._running[job.id] = None
                return
            self._push(Pending(job.id, job.requester.user_id, job.priority, job.params.count, job.params.batch_key(),
                               job.params.model))
            self._cond.notify_all()

    def _activate(self, job: Job) -> None:
        if job.id not in self._active:
            self._per_user[job.requester.user_id] += 1
        self._active[job.id] = job

    def _deactivate(self, job_id: int) -> Job | None:
        job = self._active.pop(job_id, None)
        if job is not None:
            self._per_user[job.requester.user_id] -= 1
            if not self._per_user[job.requester.user_id]:
                del self._per_user[job.requester.user_id]
        return job

    def _push(self, p: Pending) -> None:
        self._pending[p.job_id] = p
        jobs = self._lanes.setdefault(p.priority, {}).setdefault(p.user_id, [])
        bisect.insort(jobs, p, key=lambda q: q.job_id)

    def _pop(self, job_id: int) -> Pending | None:
        self._passed_over.pop(job_id, None)
        p = self._pending.pop(job_id, None)
        if p is not None:
            lane = self._lanes[p.priority]
            lane[p.user_id].remove(p)
            if not lane[p.user_id]:
                del lane[p.user_id]
                if not lane:
                    del self._lanes[p.priority]
        return p

    # --- the worker's side ----------------------------------------------------------------------

    def next_batch(self, max_images: int, *, window: float = 0.0, timeout: float | None = None,
                   loaded: Collection[str] | None = None) -> list[Job] | None:
        """Take the next batch in fair order and mark it running.

        Waits up to ``timeout`` seconds (None: forever) for a job; returns [] on timeout and None
        once the queue is closed. ``window``: when the queue was empty, the first job waits that
        long for companions, so a burst is batched from its first call instead of starting alone.
        ``loaded``: the models the worker has loaded; a job for one of them may go ahead of one that needs a model
        loaded, at most MODEL_PATIENCE times (``scheduling.warm_first``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            idle = not self._pending
            while not self._pending and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return []
                self._cond.wait(left)
            if idle and window > 0:
                until = time.monotonic() + window
                while not self._closed and sum(p.images for p in self._pending.values()) < max_images:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            if self._closed:
                return None
            ordered = fair_order(list(self._pending.values()), self._last_served)
            if loaded is not None:
                ordered, passed = warm_first(ordered, loaded, self._passed_over, MODEL_PATIENCE)
                if passed is not None:
                    self._passed_over[passed] = self._passed_over.get(passed, 0) + 1
            chosen = next_batch(ordered, max_images)
            for p in chosen:
                self._pop(p.job_id)
                self._serve_counter += 1
                self._last_served[p.user_id] = self._serve_counter
            self._running.update(dict.fromkeys(p.job_id for p in chosen))
            return [self._active[p.job_id] for p in chosen]

    def set_progress(self, job_id: int, step: int, total: int) -> None:
        """Record a running job's step (for ETAs and the queue view)."""
        with self._cond:
            if job_id in self._active:
                self._progress[job_id] = (step, total)

    def running_ids(self) -> list[int]:
        """Jobs handed to a worker and not finished."""
        with self._cond:
            return list(self._running)

    def is_cancelled(self, job_id: int) -> bool:
        """True when a running job was cancelled (its batch goes on for the others)."""
        with self._cond:
            return job_id in self._cancelled

    def finish(self, jobs: list[Job]) -> None:
        """A worker is done with these jobs: they leave the queue."""
        with self._cond:
            for job in jobs:
                self._deactivate(job.id)
                self._progress.pop(job.id, None)
                self._cancelled.discard(job.id)
                self._running.pop(job.id, None)

    def drain(self) -> list[Job]:
        """Remove and return every queued (not running) job, e.g. when the model failed to load."""
        with self._cond:
            jobs = [job for job in map(self._deactivate, list(self._pending)) if job is not None]
            self._pending.clear()
            self._lanes.clear()
        return jobs

    def close(self) -> None:
        """Wake and stop the worker: ``next_batch`` returns None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._closed

    # --- the front doors' side -------------------------------------------------------------------

    def cancel(self, job_id: int, user_id: str | None = None) -> str:
        """Take a job out of the queue: 'queued' or 'running' (it stops at its next step), 'inactive',
        or 'not_owner' when ``user_id`` is given and is not the requester's."""
        with self._cond:
            job = self._active.get(job_id)
            if job is None:
                return "inactive"
            if user_id is not None and job.requester.user_id != user_id:
                return "not_owner"
            if job_id in self._running:
                self._cancelled.add(job_id)
                return "running"
            self._pop(job_id)
            self._deactivate(job_id)
            return "queued"

    def queued_ids(self, user_id: str) -> list[int]:
        """A user's queued (not running) jobs."""
        with self._cond:
            return [p.job_id for p in self._pending.values() if p.user_id == user_id]

    def get(self, job_id: int) -> Job | None:
        """An active job by id."""
        with self._cond:
            return self._active.get(job_id)

    def is_active(self, job_id: int) -> bool:
        """Queued or running."""
        with self._cond:
            return job_id in self._active

    def counts(self) -> tuple[int, int]:
        """(queued, running) jobs."""
        with self._cond:
            return len(self._pending), len(self._running)

    def position(self, job_id: int, seconds_per_image: float | None) -> tuple[int, float | None]:
        """(position, eta seconds): 0 while running, 1 for the next job..., -1 if not active."""
        with self._cond:
            if job_id in self._running:
                return 0, None
            p = self._pending.get(job_id)
            if p is None:
                return -1, None
            # higher priorities first, then this priority's round-robin, read from the lanes (never the whole queue)
            higher = [q for prio, lane in self._lanes.items() if prio > p.priority for jobs in lane.values()
                      for q in jobs]
            ahead, images = lane_position(self._lanes[p.priority], self._last_served, p)
            images += sum(q.images for q in higher) + sum(self._images_left(j) for j in self._running)
        eta = images * seconds_per_image if seconds_per_image and seconds_per_image > 0 else None
        return len(higher) + ahead + 1, eta

    def positions(self, seconds_per_image: float | None) -> dict[int, tuple[int, float | None]]:
        """Every queued job's (position, eta seconds) from one fair order, the ETAs summed as it goes: what a
        refresh of all waiting members' messages needs, in one pass instead of one order per job."""
        with self._cond:
            ordered = fair_order(list(self._pending.values()), self._last_served)
            images = sum(self._images_left(j) for j in self._running)
        result: dict[int, tuple[int, float | None]] = {}
        for index, p in enumerate(ordered):
            images += p.images
            eta = images * seconds_per_image if seconds_per_image and seconds_per_image > 0 else None
            result[p.job_id] = (index + 1, eta)
        return result

    def _images_left(self, job_id: int) -> float:
        job = self._active.get(job_id)
        if job is None:
            return 0.0
        step, total = self._progress.get(job_id, (0, 1))
        return job.params.count * (1 - step / max(1, total))

    def snapshot(self) -> list[QueueEntry]:
        """Running jobs, then queued ones in the order they will run."""
        with self._cond:
            ordered = fair_order(list(self._pending.values()), self._last_served)
            entries = [QueueEntry(self._active[j], 0, *self._progress.get(j, (0, self._active[j].params.steps)))
                       for j in self._running if j in self._active]
            entries += [QueueEntry(self._active[p.job_id], i + 1, 0, self._active[p.job_id].params.steps)
                        for i, p in enumerate(ordered)]
        return entries
