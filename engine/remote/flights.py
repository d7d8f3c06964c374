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
from dataclasses import dataclass, field

from engine.jobs.records import Job

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
    cancelled: set[int] = field(default_factory=set)

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
