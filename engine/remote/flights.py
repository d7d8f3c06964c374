"""Batches out with GPU workers, and their deadlines (state owned by the dispatcher; the rules here are pure).

A batch's deadline is sized by its work, as AI Horde sizes a job's: a base for loading and sending, plus
seconds per step of a one-megapixel image times the steps, megapixels and images of every job in it. It
counts from the moment a worker says it took the batch; before that, from when it was sent, with room for
one batch ahead of it on the worker (the dispatch window) and for the server's redelivery after AckWait.
While no worker is ready the clock stands still: jobs wait for a worker, they do not expire.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.jobs.records import Job
from engine.media.saving import save_error
from engine.remote.nats_link import StoreFull
from engine.requests.params import ParamError

MEGAPIXEL = 1024 * 1024


def batch_seconds(jobs: Iterable[Job], *, base: float, per_step: float) -> float:
    """How long a worker may take over a batch of ``jobs`` once it has it."""
    work = sum(j.params.denoise_steps * j.params.count * j.params.width * j.params.height
               / MEGAPIXEL for j in jobs)
    return base + work * per_step


@dataclass
class Flight:
    """One batch sent to the workers: its jobs still without a result, and when it is overdue."""

    batch: str
    jobs: dict[int, Job]
    seconds: float  # its deadline once taken
    deadline: float  # monotonic
    tries: int = 1  # 2 once it was sent again past its deadline
    seq: int | None = None  # its message in the jobs stream (to withdraw it when it is sent again)
    taken_by: str | None = None
    recovered: bool = False  # found running after a restart: its batch and tokens are not known here

    @classmethod
    def sent(cls, batch: str, jobs: Sequence[Job], seconds: float, ack_wait: float, tries: int = 1) -> Flight:
        """A batch just published: a worker has the time of one batch ahead of it plus a redelivery to take it."""
        return cls(batch, {j.id: j for j in jobs}, seconds, time.monotonic() + 2 * seconds + ack_wait, tries)

    def taken(self, worker: str) -> None:
        """A worker took the batch: from now it has ``seconds``."""
        if self.taken_by is None:
            self.taken_by = worker
            self.deadline = time.monotonic() + self.seconds

    def paused(self, seconds: float) -> None:
        """No worker was ready for ``seconds``: a batch nobody could take yet is not late for it."""
        if self.taken_by is None:
            self.deadline += seconds

    def overdue(self, now: float) -> bool:
        """True past the deadline."""
        return now > self.deadline


class FlightBoard:
    """The batches out with workers, by batch id: the one owner of that state (the dispatcher's event loop only)."""

    def __init__(self, ack_wait: float, max_deliver: int, base: float, per_step: float) -> None:
        self._flights: dict[str, Flight] = {}
        self._ack_wait = ack_wait
        self._max_deliver = max_deliver
        self._base = base
        self._per_step = per_step

    def out(self) -> int:
        """Batches this process sent and still waits on: what the dispatch window counts (a job recovered after
        a restart has a deadline but holds no slot, or a restart with many would stall dispatch until then)."""
        return sum(not f.recovered for f in self._flights.values())

    def all(self) -> list[Flight]:
        """Every flight, oldest first."""
        return list(self._flights.values())

    def get(self, batch: str) -> Flight | None:
        """The flight of ``batch``, if it is still out."""
        return self._flights.get(batch)

    def sent(self, batch: str, jobs: Sequence[Job], tries: int) -> Flight:
        """Record a batch about to be published, with its deadline."""
        seconds = batch_seconds(jobs, base=self._base, per_step=self._per_step)
        flight = self._flights[batch] = Flight.sent(batch, jobs, seconds, self._ack_wait, tries)
        return flight

    def adopt(self, job: Job) -> Flight:
        """A job running with no flight (sent before a restart): a deadline as if sent now, with time for its
        redeliveries; its batch and tokens are not known here."""
        seconds = batch_seconds([job], base=self._base, per_step=self._per_step)
        flight = Flight.sent(f"recovered-{job.id}", [job], seconds, self._ack_wait * self._max_deliver)
        flight.recovered = True
        self._flights[flight.batch] = flight
        return flight

    def taken(self, batch: str, worker: str) -> None:
        """A worker's signed notice that it took ``batch``: its deadline starts (a batch no longer out is ignored)."""
        flight = self._flights.get(batch)
        if flight is not None:
            flight.taken(worker)

    def remove(self, batch: str) -> Flight | None:
        """Forget a flight (overdue, dead, or not published after all)."""
        return self._flights.pop(batch, None)

    def of(self, job_id: int) -> Flight | None:
        """The flight holding a job."""
        return next((f for f in self._flights.values() if job_id in f.jobs), None)

    def current_batch(self, job_id: int) -> str | None:
        """The batch a job was last sent in; None when unknown here (sent before a restart)."""
        flight = self.of(job_id)
        return None if flight is None or flight.recovered else flight.batch

    def finished(self, job_id: int) -> None:
        """A job has its outcome: it leaves its flight, and an empty flight leaves the board."""
        flight = self.of(job_id)
        if flight is not None:
            del flight.jobs[job_id]
            if not flight.jobs:
                del self._flights[flight.batch]

    def held(self) -> set[int]:
        """Every job some flight holds."""
        return {i for f in self._flights.values() for i in f.jobs}


def upload_error(exc: Exception) -> str:
    """The member's answer when a job could not be sent to the workers: the store is full, its source is gone."""
    if isinstance(exc, StoreFull):
        return ("The GPU workers' shared store is full right now, so this job could not be sent to them. Please try "
                "again in a few minutes; the operator can raise NATS_MAX_BYTES.")
    return str(exc) if isinstance(exc, ParamError) else save_error(exc)  # type: ignore[arg-type]
