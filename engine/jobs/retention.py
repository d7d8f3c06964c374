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


def plan_cleanup(jobs: Sequence[Job], sizes: dict[int, int], *, now: float, max_age_days: float,
                 max_bytes: int) -> list[int]:
    """Ids of jobs whose results to delete: older than ``max_age_days`` (0 = no age limit), then the
    oldest removable ones until the total of ``sizes`` fits ``max_bytes`` (0 = no size limit).

    Undelivered results are never chosen, even when that leaves the total above the limit.
    """
    chosen: list[int] = []
    candidates = sorted((j for j in jobs if removable(j)), key=lambda j: (j.finished_at or 0, j.id))
    if max_age_days > 0:
        cutoff = now - max_age_days * 86400
        chosen = [j.id for j in candidates if (j.finished_at or 0) < cutoff]
    if max_bytes > 0:
        total = sum(sizes.values()) - sum(sizes.get(i, 0) for i in chosen)
        for job in candidates:
            if total <= max_bytes:
                break
            if job.id not in chosen:
                chosen.append(job.id)
                total -= sizes.get(job.id, 0)
    return chosen


def run_cleanup(store: JobStore, *, max_age_days: float, max_gb: float, now: float | None = None,
                data_dir: Path | None = None) -> CleanupReport:
    """Apply retention to the store's results (blocking; run it off the event loop); the members' pictures those
    jobs started from go with them once no job with results needs them (below ``data_dir``)."""
    if max_age_days <= 0 and max_gb <= 0:
        return CleanupReport(0, 0, 0)
    jobs = store.in_states(["done"])
    by_id = {j.id: j for j in jobs}
    files = {j.id: result_files(j) for j in jobs}
    sizes = {job_id: _size(paths) for job_id, paths in files.items()}
    chosen = plan_cleanup(jobs, sizes, now=now if now is not None else time.time(), max_age_days=max_age_days,
                          max_bytes=int(max_gb * 2**30))
    removed_files = 0
    for job_id in chosen:
        for path in files[job_id]:
            try:
                os.unlink(path)
                removed_files += 1
            except FileNotFoundError:
                pass
        store.clear_results(job_id)
        upload = by_id[job_id].params.init_image
        if data_dir is not None and upload:
            forget_upload(store, data_dir, upload)
    freed = sum(sizes[i] for i in chosen)
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
