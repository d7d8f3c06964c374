"""Result retention: delete old results by age and by total size, never undelivered ones."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
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


def plan_cleanup(candidates: Sequence[Candidate], total: int, *, cutoff: float | None, max_bytes: int) -> list[int]:
    """Ids of jobs whose results to delete, from removable ``candidates`` oldest first: those finished before
    ``cutoff`` (None: no age limit), then the oldest until ``total`` (every kept result's bytes, removable or
    not) fits ``max_bytes`` (0: no size limit). Linear in the candidates. Undelivered results are never among
    the candidates, even when that leaves the total above the limit."""
    chosen: dict[int, None] = {}
    if cutoff is not None:
        chosen.update(dict.fromkeys(c.job_id for c in candidates if c.finished_at < cutoff))
    if max_bytes > 0:
        total -= sum(c.size for c in candidates if c.job_id in chosen)
        for c in candidates:
            if total <= max_bytes:
                break
            if c.job_id not in chosen:
                chosen[c.job_id] = None
                total -= c.size
    return list(chosen)


PAGE = 500  # kept jobs read per query: the store's lock is free between pages


def _kept(store: JobStore, *, stop_at: float | None) -> tuple[list[Candidate], int]:
    """Walk the jobs that still have results, oldest first, a page at a time (jobs whose results are gone are not
    read at all); stop at ``stop_at`` (finished_at) when only the age rule applies. Returns the removable ones
    and the bytes of all walked."""
    candidates: list[Candidate] = []
    total = 0
    after: tuple[float, int] | None = None
    while True:
        page = store.kept_page(after, PAGE)
        for job in page:
            if stop_at is not None and (job.finished_at or 0) >= stop_at:
                return candidates, total
            files = tuple(result_files(job))
            size = _size(files)
            total += size
            if removable(job):
                candidates.append(Candidate(job.id, job.finished_at or 0, files, size, job.params.init_image))
        if len(page) < PAGE:
            return candidates, total
        after = (page[-1].finished_at or 0, page[-1].id)


def run_cleanup(store: JobStore, *, max_age_days: float, max_gb: float, now: float | None = None,
                data_dir: Path | None = None) -> CleanupReport:
    """Apply retention to the store's results (blocking; run it off the event loop); the members' pictures those
    jobs started from go with them once no job with results needs them (below ``data_dir``)."""
    if max_age_days <= 0 and max_gb <= 0:
        return CleanupReport(0, 0, 0)
    now = now if now is not None else time.time()
    cutoff = now - max_age_days * 86400 if max_age_days > 0 else None
    max_bytes = int(max_gb * 2**30)
    candidates, total = _kept(store, stop_at=cutoff if max_bytes <= 0 else None)
    chosen = set(plan_cleanup(candidates, total, cutoff=cutoff, max_bytes=max_bytes))
    removed_files = freed = 0
    for c in candidates:
        if c.job_id not in chosen:
            continue
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
