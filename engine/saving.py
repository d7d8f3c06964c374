"""Result files: writing a finished batch's images, removing them, finding a variation's source.

Encoding PNG + WebP costs a good part of a GPU image's time, so a small pool of threads saves
while the worker starts the next batch (Pillow releases the GIL while it encodes). The number of
batches waiting to be saved is bounded: when the savers fall behind, the worker waits instead of
holding an unbounded pile of decoded images in memory.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engine.events import EventBus
from engine.images import save_result
from engine.jobs import Job, JobEvent
from engine.params import ParamError
from engine.settings import EngineSettings
from engine.stats import Stats
from engine.store import JobStore

log = logging.getLogger(__name__)

SAVER_THREADS = max(1, min(4, (os.cpu_count() or 2) // 2))
MAX_WAITING_JOBS = 16  # jobs handed to the savers and not yet written


class ResultSaver:
    """Writes each job's images, then marks it done (or failed) and publishes the event."""

    def __init__(self, settings: EngineSettings, store: JobStore, events: EventBus, stats: Stats) -> None:
        self._settings = settings
        self._store = store
        self._events = events
        self._stats = stats
        self._pool = ThreadPoolExecutor(max_workers=SAVER_THREADS, thread_name_prefix="engine-save")
        self._room = threading.BoundedSemaphore(MAX_WAITING_JOBS)

    def submit(self, job: Job, images: list[Any], gen_seconds: float, steps: int) -> None:
        """Save one job's images in the background (blocks while MAX_WAITING_JOBS are waiting)."""
        self._room.acquire()
        try:
            self._pool.submit(self._save_released, job, images, gen_seconds, steps)
        except BaseException:
            self._room.release()
            raise

    def shutdown(self) -> None:
        """Finish every submitted job, then stop the threads (blocking)."""
        self._pool.shutdown(wait=True)

    def _save_released(self, job: Job, images: list[Any], gen_seconds: float, steps: int) -> None:
        try:
            self._save(job, images, gen_seconds, steps)
        except Exception:  # the store itself failed: the row stays "running" and reruns on restart
            log.exception("job %s: could not record its result", job.id)
        finally:
            self._room.release()

    def _save(self, job: Job, images: list[Any], gen_seconds: float, steps: int) -> None:
        out_dir = self._settings.results_dir / time.strftime("%Y-%m-%d")
        pngs: list[str] = []
        copies: list[str] = []
        try:
            for index, (image, seed) in enumerate(zip(images, job.params.seeds)):
                saved = save_result(image, out_dir, job.id, index, job.params, seed,
                                    self._settings.delivery_format, self._settings.delivery_quality)
                pngs.append(str(saved.png))
                copies.append(str(saved.delivery))
        except Exception as exc:
            log.error("job %s: saving failed: %s", job.id, exc, exc_info=not isinstance(exc, OSError))
            remove_files([*pngs, *copies])  # no half set of images stays behind
            message = save_error(exc) if isinstance(exc, OSError) else \
                "The image could not be saved because of an internal error."
            if self._store.set_failed(job.id, message):
                self._events.publish_threadsafe(JobEvent("failed", self._store.get(job.id) or job))
            return
        if self._store.set_done(job.id, pngs, gen_seconds, deliveries=copies):
            self._stats.record_finished()
            self._events.publish_threadsafe(JobEvent("done", self._store.get(job.id) or job, steps, steps))
        else:  # cancelled while it was being saved
            remove_files([*pngs, *copies])


def remove_files(paths: Iterable[str | Path]) -> None:
    """Delete result files, ignoring those already gone."""
    for path in set(paths):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def save_error(exc: OSError) -> str:
    """The user-facing reason a result could not be written."""
    if exc.errno == errno.ENOSPC:
        return "The image could not be saved: the server's disk is full. The operator needs to free space."
    return "The image could not be saved because of a storage error on the server."


def source_image_path(source: Job | None, job_id: int, image: int) -> Path:
    """The PNG of image ``image`` (0-based) of job ``job_id`` for a variation; ParamError says why not."""
    if source is None:
        raise ParamError(f"Job {job_id} no longer exists, so its images cannot be varied.")
    if source.state != "done":
        raise ParamError(f"Job {job_id} has no finished images to vary yet (it is {source.state}).")
    if not 0 <= image < len(source.results):
        raise ParamError(f"Job {job_id} has {len(source.results)} image(s); there is no image {image + 1}.")
    path = Path(source.results[image])
    if not path.is_file():
        raise ParamError(f"Image {image + 1} of job {job_id} was deleted (by its owner or by the retention "
                         f"policy), so it cannot be varied.")
    return path
