"""One batch from its jobs to each job's outcome: the worker runtime that the in-process worker
(engine/gpu/local_worker.py) and a GPU worker over NATS (engine/remote/gpu_worker.py) both run.

In order: the sources of image-to-image jobs (a job whose source is gone fails alone), the pipeline or
the upscale tiles (``run_jobs``), a batch that runs out of GPU memory split into single jobs, every
image scored by the safety classifier before it leaves, and each failure turned into the sentence the
member reads. What happens to the images next (files here, the Object Store there) is the caller's;
it runs on the GPU thread, so it never waits on disks or the network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.generation import BatchResult, ProgressHook, prepare_source
from engine.gpu.model import LoadedModel, ModelLoadError
from engine.gpu.model_pool import ModelPool
from engine.gpu.pipeline import GenerationInterrupted
from engine.gpu.safety import scored
from engine.gpu.upscale import run_jobs
from engine.jobs.records import Job
from engine.requests.canvas_edits import CanvasError
from engine.requests.params import ParamError

log = logging.getLogger(__name__)

# opens the picture an image-to-image job starts from (PIL image); raises ParamError or OSError when it is gone
SourceLoader = Callable[[Job], Any]
BatchHook = Callable[[list[Job]], None]

INTERNAL_ERROR = ("Generation failed because of an internal error. The operator can find the details in the log "
                  "under this job id.")
SOURCE_UNREADABLE = "The image this job starts from could not be read."


@dataclass(frozen=True)
class JobOutcome:
    """One job's share of a batch: its images (done), the member-facing reason it failed, or neither
    (cancelled while it ran)."""

    job: Job
    images: list[Any] | None = None
    scores: tuple[float, ...] = ()  # one NSFW score per image; empty without a classifier
    gen_seconds: float = 0.0
    error: str | None = None
    retry: bool = False  # failed by an unexpected error that another try (maybe on another GPU) may not hit

    @property
    def state(self) -> str:
        """``done``, ``failed`` or ``cancelled``."""
        return "done" if self.images is not None else "failed" if self.error is not None else "cancelled"


@dataclass(frozen=True)
class BatchRun:
    """Every job's outcome, and the GPU time per image of what was made."""

    outcomes: list[JobOutcome]
    seconds_per_image: float

    @property
    def images(self) -> int:
        """How many images the batch made."""
        return sum(len(o.images) for o in self.outcomes if o.images is not None)


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA (or other accelerator) out-of-memory error."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def free_gpu_memory() -> None:
    """Give cached blocks back after an out-of-memory error, so the single jobs that follow fit."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class BatchRunner:
    """Runs batches on the worker's models, each on the one its jobs ask for (call from the thread that owns the
    GPU)."""

    def __init__(self, pool: ModelPool, settings: EngineSettings, *, is_cancelled: Callable[[int], bool],
                 stopping: Callable[[], bool], before_batch: Callable[[], BatchHook | None] = lambda: None) -> None:
        self.pool = pool
        self.model: LoadedModel = pool.default  # the model of the batch being run
        self.settings = settings
        self._is_cancelled = is_cancelled
        self._stopping = stopping
        self._before_batch = before_batch  # test seam for faults (CUDA OOM, disk full), read at each call

    def run(self, jobs: list[Job], load_source: SourceLoader, on_progress: ProgressHook,
            picture_threshold: Callable[[Job], float | None] = lambda job: None) -> BatchRun:
        """Every job's outcome. Raises GenerationInterrupted only when the worker is stopping (the batch then
        runs again later, elsewhere or after a restart).

        ``picture_threshold`` gives, for a job made from a member's own picture, the score from which that
        picture counts as NSFW where it was asked for (None: not checked); a flagged picture is used for nothing.
        The batch's model and LoRAs (one batch key, one set) are loaded first where they are not
        (engine/gpu/model_pool.py); if they cannot be, every job fails saying why.
        """
        try:
            self.model = self.pool.get(jobs[0].params.model, [name for name, _ in jobs[0].params.loras])
        except Exception as exc:  # every job must get its outcome: a load that runs out of GPU memory too
            if not isinstance(exc, ModelLoadError):
                log.exception("jobs %s: loading their model failed", [j.id for j in jobs])
                free_gpu_memory()
            message = str(exc) if isinstance(exc, ModelLoadError) else (
                "The model this job needs could not be loaded on the GPU (out of memory, or an internal error); try "
                "again in a moment, or ask the operator to check the log.")
            log.error("jobs %s: %s", [j.id for j in jobs], message)
            return BatchRun([JobOutcome(job, error=message) for job in jobs], 0.0)
        try:
            return self._run(jobs, load_source, on_progress, picture_threshold)
        finally:
            self.pool.trim()

    def _run(self, jobs: list[Job], load_source: SourceLoader, on_progress: ProgressHook,
             picture_threshold: Callable[[Job], float | None]) -> BatchRun:
        outcomes: list[JobOutcome] = []
        sources: dict[int, Any] = {}
        live: list[Job] = []
        for job in jobs:
            if job.params.is_image_to_image:
                try:
                    with load_source(job) as img:
                        sources[job.id] = prepare_source(job.params, img)
                # deleted, or cleaned up, since the job was queued; or a canvas edit that cannot be made
                except (ParamError, CanvasError, OSError) as exc:
                    message = SOURCE_UNREADABLE if isinstance(exc, OSError) else str(exc)
                    log.warning("job %s: %s", job.id, message)
                    outcomes.append(JobOutcome(job, error=message))
                    continue
                refusal = self._flagged_picture(job, sources[job.id], picture_threshold(job))
                if refusal is not None:
                    outcomes.append(JobOutcome(job, error=refusal))
                    continue
            live.append(job)
        if not live:
            return BatchRun(outcomes, 0.0)
        try:
            result = self._call(live, sources, on_progress)
        except Exception as exc:
            if self._stopping() and isinstance(exc, GenerationInterrupted):
                raise
            if not (is_oom(exc) and len(live) > 1):
                return BatchRun(outcomes + [self._failed(job, exc) for job in live], 0.0)
            log.warning("out of memory on a batch of %d jobs %s; retrying one at a time", len(live),
                        [j.id for j in live])
            free_gpu_memory()
            return self._one_by_one(live, sources, on_progress, outcomes)
        return BatchRun(outcomes + _outcomes(live, result), result.seconds_per_image)

    def _one_by_one(self, jobs: list[Job], sources: dict[int, Any], on_progress: ProgressHook,
                    outcomes: list[JobOutcome]) -> BatchRun:
        made, seconds = 0, 0.0
        for job in jobs:
            try:
                result = self._call([job], sources, on_progress)
            except Exception as exc:
                if self._stopping() and isinstance(exc, GenerationInterrupted):
                    raise
                outcomes.append(self._failed(job, exc))
                continue
            outcomes += _outcomes([job], result)
            count = sum(len(v) for v in result.images.values())
            made, seconds = made + count, seconds + result.seconds_per_image * count
        return BatchRun(outcomes, seconds / made if made else 0.0)

    def _flagged_picture(self, job: Job, picture: Any, threshold: float | None) -> str | None:
        """Why a member's own picture is not used (the classifier flags it), else None."""
        if threshold is None or self.model.safety is None:
            return None
        score = self.model.safety.score([picture])[0]
        if score < threshold:
            return None
        log.info("job %s: the member's picture scored %.2f (threshold %g); not used", job.id, score, threshold)
        return (f"Your picture was flagged as NSFW by the image safety check (score {score:.2f}; pictures count as "
                f"NSFW here from {threshold:g}), so nothing was made from it. Start from another picture, or use "
                f"a channel marked NSFW (age-restricted).")

    def _call(self, jobs: list[Job], sources: dict[int, Any], on_progress: ProgressHook) -> BatchResult:
        hook = self._before_batch()
        if hook is not None:
            hook(jobs)
        mine = {j.id: sources[j.id] for j in jobs if j.id in sources} or None
        result = run_jobs(self.model, jobs, self.settings, on_progress=on_progress,  # generation, or upscale tiles
                          is_cancelled=self._is_cancelled, stopping=self._stopping, sources=mine)
        return scored(result, self.model.safety)  # before anything is saved or sent: no image leaves unscored

    def _failed(self, job: Job, exc: Exception) -> JobOutcome:
        if isinstance(exc, GenerationInterrupted):  # every job of the call was cancelled
            return JobOutcome(job)
        if is_oom(exc):
            free_gpu_memory()
            p = job.params
            return JobOutcome(job, error=f"The GPU ran out of memory for {p.width}x{p.height} with {p.count} "
                                         f"image(s). Try a smaller size or fewer images.")
        log.error("job %s failed: %s", job.id, exc, exc_info=True)
        if isinstance(exc, ModelLoadError) and job.params.loras:  # a LoRA that did not load here: another try fails too
            return JobOutcome(job, error=str(exc))
        if isinstance(exc, ModelLoadError) and job.params.fast:  # queued while loading, then the LoRA failed
            return JobOutcome(job, error="Fast mode is not available on this server (its LoRA could not be "
                                         "loaded); run without --fast.")
        return JobOutcome(job, error=INTERNAL_ERROR, retry=True)


def _outcomes(jobs: list[Job], result: BatchResult) -> list[JobOutcome]:
    """Each job's images from one call; a job without images was cancelled while it ran."""
    return [JobOutcome(job, images=result.images[job.id], scores=tuple(result.scores.get(job.id, ())),
                       gen_seconds=result.seconds_per_image * len(result.images[job.id]))
            if job.id in result.images else JobOutcome(job) for job in jobs]
