"""Result files: writing a finished batch's images, removing them, finding a variation's source.

Encoding a 1024^2 result costs 0.1-0.2 s per format on a CPU core, a good part of a GPU image's
time, so a small pool of threads saves while the worker starts the next batch (Pillow releases the
GIL while it encodes). The number of jobs waiting to be saved is bounded: when the savers fall
behind, the worker waits instead of holding an unbounded pile of decoded images in memory.

A job's result is delivered as soon as its small delivery copies exist. Every image's copy and PNG
original encode in parallel on the encoder threads, copies first. For full-size images (a 1024^2
PNG takes longer than its copy) the job is marked done with the copies as its results as soon as
they are written, and delivered; the PNGs follow and the results are swapped over to them
(``JobStore.set_results``). So the store never names a file that is not there: a crash between
the two leaves a done job whose results are its delivery copies, and a PNG written but not yet
recorded sits beside its copy, where ``result_files`` (retention, deletion) finds it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from engine.engine_settings import EngineSettings
from engine.jobs.ledger import JobLedger
from engine.jobs.records import Job
from engine.media.images import write_delivery_copy, write_png
from engine.requests.params import ParamError

log = logging.getLogger(__name__)



def saver_threads(cores: int | None) -> int:
    """Encoder threads for ``cores`` CPU cores: all but two (the event loop and the GPU worker's thread), at most 16.

    Four were the ceiling: with the tiny autoencoder a GPU makes a fast-mode image in less time than its WebP copy
    and PNG take on one core (about 0.37 s), so four threads capped fast mode near 0.09 s an image.
    """
    return max(1, min(16, (cores or 2) - 2))


SAVER_THREADS = saver_threads(os.cpu_count())
MAX_WAITING_JOBS = 16  # jobs handed to the savers and not yet written
# images of at least this many pixels are delivered from their copies before their PNGs are written (a
# 1024^2 PNG takes 0.1-0.2 s on a CPU core); smaller ones encode in a few ms, so both files are written
# first and the job is recorded once, with its PNGs. A size, not a timer: the outcome does not depend on load.
EARLY_DELIVERY_PIXELS = 512 * 512


class ResultSaver:
    """Writes each job's images, then marks it done (or failed) and publishes the event."""

    def __init__(self, settings: EngineSettings, ledger: JobLedger) -> None:
        self._settings = settings
        self._ledger = ledger
        self._pool = ThreadPoolExecutor(max_workers=SAVER_THREADS, thread_name_prefix="engine-save")
        # the images of one job encode in parallel here; these tasks never wait on others, so the
        # job threads above can wait on them without deadlock
        self._encoders = ThreadPoolExecutor(max_workers=SAVER_THREADS, thread_name_prefix="engine-encode")
        self._room = threading.BoundedSemaphore(MAX_WAITING_JOBS)

    def submit(self, job: Job, images: list[Any], gen_seconds: float, safety: Sequence[float] = ()) -> None:
        """Save one job's images (and their NSFW ``safety`` scores) in the background (blocks while
        MAX_WAITING_JOBS are waiting)."""
        self._room.acquire()
        try:
            self._pool.submit(self._save_released, job, images, gen_seconds, safety)
        except BaseException:
            self._room.release()
            raise

    def shutdown(self) -> None:
        """Finish every submitted job, then stop the threads (blocking)."""
        self._pool.shutdown(wait=True)
        self._encoders.shutdown(wait=True)

    def _save_released(self, job: Job, images: list[Any], gen_seconds: float, safety: Sequence[float]) -> None:
        try:
            self._save(job, images, gen_seconds, safety)
        except Exception:  # the store itself failed: the row stays "running" and reruns on restart
            log.exception("job %s: could not record its result", job.id)
        finally:
            self._room.release()

    def _gather(self, futures: Sequence[Future[Path]]) -> list[str]:
        """The paths the ``futures`` wrote, in order; if one failed, the others' files are removed and the
        first error is raised."""
        paths, error = [], None
        for future in futures:
            try:
                paths.append(str(future.result()))
            except Exception as exc:  # every future is waited for before cleaning up; the first error wins
                error = error or exc
        if error is not None:
            remove_files(paths)  # no half set of images stays behind
            raise error
        return paths

    def _save(self, job: Job, images: list[Any], gen_seconds: float, safety: Sequence[float]) -> None:
        out_dir = self._settings.results_dir / time.strftime("%Y-%m-%d")
        fmt, quality, p = self._settings.delivery_format, self._settings.delivery_quality, job.params
        # every image's copy first, then every PNG: the pool takes them in that order, all in parallel
        copy_jobs = [self._encoders.submit(write_delivery_copy, image, out_dir, job.id, i, fmt, quality)
                     for i, image in enumerate(images)] if fmt != "png" else []
        png_jobs = [self._encoders.submit(write_png, image, out_dir, job.id, i, p, seed)
                    for i, (image, seed) in enumerate(zip(images, p.seeds))]
        try:
            copies = self._gather(copy_jobs or png_jobs)
        except Exception as exc:
            if copy_jobs:
                with contextlib.suppress(Exception):  # the copies failed: the originals go too
                    remove_files(self._gather(png_jobs))
            log.error("job %s: saving failed: %s", job.id, exc, exc_info=not isinstance(exc, OSError))
            message = save_error(exc) if isinstance(exc, OSError) else \
                "The image could not be saved because of an internal error."
            self._ledger.fail(job, message)
            return
        pngs: list[str] | None = copies if not copy_jobs else None
        if copy_jobs and p.width * p.height < EARLY_DELIVERY_PIXELS:
            wait(png_jobs)  # small images: the PNGs are a few ms away, record them at once
            if all(f.exception() is None for f in png_jobs):
                pngs = self._gather(png_jobs)
        # done: with the PNG originals, or with the copies standing in for them until they exist
        results = pngs if pngs is not None else copies
        if not self._ledger.finish(job, results, gen_seconds, deliveries=copies, safety=safety):
            remove_files([*copies, *(pngs or [])])  # cancelled while it was being saved
            if pngs is None:
                with contextlib.suppress(Exception):
                    remove_files(self._gather(png_jobs))
            return
        if pngs is not None:
            return
        try:
            pngs = self._gather(png_jobs)
        except Exception as exc:  # delivered already; the copies stay its results
            log.error("job %s: the PNG originals could not be written (%s); its results stay the %s copies",
                      job.id, exc, fmt, exc_info=not isinstance(exc, OSError))
            return
        if not self._ledger.replace_results(job, pngs, expected=copies):
            remove_files(pngs)  # deleted (or cleaned up) meanwhile: leave no orphan behind


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
        raise ParamError("Job {job} no longer exists, so its images cannot be varied.", job=job_id)
    if source.state != "done":
        raise ParamError("Job {job} has no finished images to vary yet (it is {state}).", job=job_id,
                         state=source.state)
    if not 0 <= image < len(source.results):
        raise ParamError("Job {job} has {count} image(s); there is no image {image}.", job=job_id,
                         count=len(source.results), image=image + 1)
    path = Path(source.results[image])
    if not path.is_file():
        raise ParamError("Image {image} of job {job} was deleted (by its owner or by the retention policy), so it "
                         "cannot be varied.", image=image + 1, job=job_id)
    return path
