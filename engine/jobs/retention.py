"""Result retention: delete old results by age and by total size, never undelivered ones."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.jobs.records import Job
from engine.jobs.store import JobStore
from engine.media.images import result_files
from engine.media.sources import forget_upload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanupReport:
    """What a cleanup pass removed."""

    jobs: int
    files: int
    bytes: int


def _size(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def removable(job: Job) -> bool:
    """A result may go once its front door has it (Discord jobs must be delivered first)."""
    if job.state != "done" or not job.results:
        return False
    return job.requester.source != "discord" or job.delivered_at is not None


@dataclass(frozen=True)
class Candidate:
    """A removable job's results, as retention weighs them."""

    job_id: int
    finished_at: float
    files: tuple[Path, ...]
    size: int
    upload: str | None


def plan_cleanup(candidates: Iterable[Candidate], total: int, *, cutoff: float | None, max_bytes: int) -> list[int]:
    """Ids of jobs whose results to delete, from removable ``candidates`` oldest first: those finished before
    ``cutoff`` (None: no age limit), then the oldest until ``total`` (every kept result's bytes, removable or
    not) fits ``max_bytes`` (0: no size limit). Linear, and it stops reading ``candidates`` at the first one it
    keeps: a steady sweep reads only what it removes. Undelivered results are never among the candidates, even
    when that leaves the total above the limit."""
    chosen = []
    for c in candidates:
        if not (cutoff is not None and c.finished_at < cutoff) and not (max_bytes > 0 and total > max_bytes):
            break  # not old enough and the rest fits: nothing newer goes either
        chosen.append(c.job_id)
        total -= c.size
    return chosen


PAGE = 500  # kept jobs read per query: the writer is never held up by a read, and memory stays flat


def measure(store: JobStore) -> int:
    """Record the bytes of the results that are not measured yet (the jobs done since the last sweep, or whose
    results changed), a page at a time; returns how many jobs were measured."""
    measured = after = 0
    while page := store.unmeasured(after, PAGE):  # by id: a row that stays unmeasured is not read again
        store.set_result_bytes([(job, _size(result_files(job))) for job in page])
        measured += len(page)
        after = page[-1].id
    return measured


def candidates(store: JobStore) -> Iterator[Candidate]:
    """The removable kept jobs, oldest finished first, read a page at a time as they are consumed (the rows whose
    results are gone are not in the jobs_kept index at all)."""
    after: tuple[float, int] | None = None
    limit = min(16, PAGE)  # a steady sweep stops at its first candidate: small pages first, growing to PAGE
    while page := store.kept_page(after, limit):
        for job, size in page:
            if removable(job):
                files = tuple(result_files(job))
                yield Candidate(job.id, job.finished_at or 0, files, _size(files) if size is None else size,
                                job.params.init_image)
        if len(page) < limit:
            return
        limit = min(PAGE, limit * 4)
        last = page[-1][0]
        after = (last.finished_at or 0, last.id)


def run_cleanup(store: JobStore, *, max_age_days: float, max_gb: float, now: float | None = None,
                data_dir: Path | None = None) -> CleanupReport:
    """Apply retention to the store's results (blocking; run it off the event loop); the members' pictures those
    jobs started from go with them once no job with results needs them (below ``data_dir``)."""
    if max_age_days <= 0 and max_gb <= 0:
        return CleanupReport(0, 0, 0)
    now = now if now is not None else time.time()
    cutoff = now - max_age_days * 86400 if max_age_days > 0 else None
    max_bytes = int(max_gb * 2**30)
    total = 0
    if max_bytes > 0:
        measure(store)
        total = store.kept_bytes()
    walked: dict[int, Candidate] = {}
    chosen = plan_cleanup((walked.setdefault(c.job_id, c) for c in candidates(store)), total, cutoff=cutoff,
                          max_bytes=max_bytes)
    removed_files = freed = 0
    for job_id in chosen:
        c = walked[job_id]
        for path in c.files:
            try:
                os.unlink(path)
                removed_files += 1
            except FileNotFoundError:
                pass
        freed += c.size
        store.clear_results(c.job_id)
        if data_dir is not None and c.upload:
            forget_upload(store, data_dir, c.upload)
    if chosen:
        log.info("retention removed the results of %d job(s), %d files, %.1f MB", len(chosen), removed_files,
                 freed / 1e6)
    return CleanupReport(len(chosen), removed_files, freed)


RETENTION_EVERY_S = 3600.0


async def retention_loop(cleanup: Callable[[], Awaitable[CleanupReport]]) -> None:
    """Run ``cleanup`` now and then every RETENTION_EVERY_S seconds, for as long as the service runs."""
    while True:
        try:
            await cleanup()
        except Exception:  # housekeeping must never take the service down
            log.exception("retention cleanup failed")
        await asyncio.sleep(RETENTION_EVERY_S)
