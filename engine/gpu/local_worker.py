"""The worker runtime: one thread that loads the model, then runs batches from the queue.

It alone touches the pipeline. It takes a batch from the JobQueue, runs it (splitting it into
single jobs when the GPU runs out of memory), and hands the images to the ResultSaver. Outcomes
go to the job store first, then to subscribers through the event bus.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.acceleration import apply_accelerations
from engine.gpu.generation import fit_source
from engine.gpu.model import LoadedModel, ModelLoadError, load_fast_lora, load_model
from engine.gpu.pipeline import GenerationInterrupted
from engine.gpu.safety import load_checker, scored
from engine.gpu.upscale import run_jobs
from engine.jobs.events import EventBus
from engine.jobs.ledger import JobLedger
from engine.jobs.queue import JobQueue
from engine.jobs.records import Job, JobEvent
from engine.jobs.store import JobStore
from engine.media.saving import ResultSaver
from engine.media.sources import source_path
from engine.ops.heap import freeze_long_lived
from engine.ops.throughput import Stats
from engine.requests.params import ParamError
from engine.requests.prompt_length import PromptLength

log = logging.getLogger(__name__)

ModelLoader = Callable[[EngineSettings], LoadedModel]
BatchHook = Callable[[list[Job]], None]


def default_loader(settings: EngineSettings) -> LoadedModel:
    """Load the model, then the fast-mode LoRA if configured (its failure only disables fast mode), then the
    image safety classifier if SAFETY_MODEL_ID is set (its failure fails the load: see engine/gpu/safety.py),
    then apply the acceleration switches (after the LoRA: fused QKV and the fast UNet depend on it)."""
    model = load_model(settings)
    if settings.fast_lora_id:
        try:
            load_fast_lora(model, settings.fast_lora_id)
        except ModelLoadError as exc:
            log.warning("fast mode disabled: %s", exc)
    if settings.safety_model_id:
        model.safety = load_checker(settings.safety_model_id, settings.safety_labels, model.choice)
    log.info("accelerations:\n  %s", "\n  ".join(apply_accelerations(model, settings)))
    return model


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA (or other accelerator) out-of-memory error."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def _free_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class LocalWorker:
    """Owns the model (loading, ready, failed) and the thread that runs every batch."""

    def __init__(self, settings: EngineSettings, store: JobStore, queue: JobQueue, ledger: JobLedger,
                 events: EventBus, saver: ResultSaver, stats: Stats, *, loader: ModelLoader | None = None,
                 on_state: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self._store = store  # read only: image-to-image sources
        self._queue = queue
        self._ledger = ledger
        self._events = events  # progress only; changes of state go through the ledger
        self._saver = saver
        self._stats = stats
        self._loader = loader or default_loader
        self._on_state = on_state
        self.model: LoadedModel | None = None
        self.state = "loading"  # loading | ready | failed
        self.error: str | None = None
        self.stopping = False
        self.prompt_length: PromptLength | None = None  # a private tokenizer for the front doors' notes
        # test seam for fault injection (CUDA OOM, disk full): called before each pipeline call
        self.before_batch: BatchHook | None = None
        self._thread = threading.Thread(target=self._main, name="engine-worker", daemon=True)

    def start(self) -> None:
        """Start loading the model, then serving."""
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop at the current batch's next step (blocking); False if the thread did not end in time."""
        self.stopping = True
        self._queue.close()
        if self.model is not None and self.model.accel is not None:
            self.model.accel.close()  # no new compile warm-up work after stop
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _set_state(self, state: str, error: str | None = None) -> None:
        self.state, self.error = state, error
        if self._on_state is not None:
            self._on_state()

    def _main(self) -> None:
        try:
            self.model = self._loader(self.settings)
        except Exception as exc:  # the service stays up; jobs fail with the reason
            # a ModelLoadError says what to do; anything else is internal detail for the log only
            message = str(exc) if isinstance(exc, ModelLoadError) else (
                "the model failed to load because of an internal error; the operator's log has the details")
            if not isinstance(exc, ModelLoadError):
                log.exception("model load failed")
            log.error("model load failed: %s", message)
            self._set_state("failed", message)
            self.fail_queued(f"Image generation is unavailable: {message}")
            return
        tokenizer = getattr(getattr(self.model, "pipe", None), "tokenizer", None)
        if tokenizer is not None:
            self.prompt_length = PromptLength(tokenizer)
        # before the first job: a full collection of the model's objects would stall the event loop
        freeze_long_lived("model load")
        self._set_state("ready")
        while True:
            jobs = self._queue.next_batch(self.settings.max_batch, window=self.settings.batch_window)
            if jobs is None:
                return
            try:
                self._run(jobs)
            except Exception:  # never let the worker die; each job already got its outcome
                log.exception("worker error on jobs %s", [j.id for j in jobs])
            finally:
                self._queue.finish(jobs)

    def fail_queued(self, message: str) -> None:
        """Fail every queued job with ``message`` (the model is not coming)."""
        for job in self._queue.drain():
            self._fail_one(job, message)

    def _fail_one(self, job: Job, message: str) -> None:
        self._ledger.fail(job, message)

    def _run(self, jobs: list[Job]) -> None:
        """Run one batch of compatible jobs, splitting it up if the GPU runs out of memory."""
        live = [j for j in jobs if not self._queue.is_cancelled(j.id)]
        if not live:
            return
        self._ledger.start(live)
        try:
            self._generate(live)
        except Exception as exc:
            if is_oom(exc) and len(live) > 1:
                log.warning("out of memory on a batch of %d jobs %s; retrying one at a time",
                            len(live), [j.id for j in live])
                _free_gpu_memory()
                for job in live:
                    try:
                        self._generate([job])
                    except Exception as single:
                        self._fail(job, single)
                return
            for job in live:
                self._fail(job, exc)

    def _fail(self, job: Job, exc: Exception) -> None:
        if isinstance(exc, GenerationInterrupted):
            return
        if is_oom(exc):
            _free_gpu_memory()
            p = job.params
            message = (f"The GPU ran out of memory for {p.width}x{p.height} with {p.count} image(s). "
                       f"Try a smaller size or fewer images.")
        elif isinstance(exc, ModelLoadError) and job.params.fast:  # queued while loading, LoRA then failed
            message = "Fast mode is not available on this server (its LoRA could not be loaded); run without --fast."
        else:
            message = "Generation failed because of an internal error. The operator can find the details in the " \
                      "log under this job id."
        log.error("job %s failed: %s", job.id, exc, exc_info=not is_oom(exc))
        self._fail_one(job, message)

    def _generate(self, jobs: list[Job]) -> None:
        if self.before_batch is not None:
            self.before_batch(jobs)
        assert self.model is not None
        sources: dict[int, Any] | None = None
        if jobs[0].params.is_variation:
            jobs, sources = self._variation_sources(jobs)
            if not jobs:
                return

        def on_progress(job: Job, step: int, total: int, preview: bytes | None) -> None:
            self._queue.set_progress(job.id, step, total)
            self._events.publish_threadsafe(JobEvent("progress", job, step, total, preview))

        result = run_jobs(self.model, jobs, self.settings, on_progress=on_progress,  # generation, or upscale tiles
                          is_cancelled=self._queue.is_cancelled, stopping=lambda: self.stopping, sources=sources)
        result = scored(result, self.model.safety)  # before saving: no image is seen unscored
        self._stats.record_batch(result.seconds_per_image, sum(len(v) for v in result.images.values()))
        for job in jobs:
            if job.id in result.images and not self._queue.is_cancelled(job.id):
                self._saver.submit(job, result.images[job.id], result.seconds_per_image * job.params.count,
                                   safety=result.scores.get(job.id, ()))

    def _variation_sources(self, jobs: list[Job]) -> tuple[list[Job], dict[int, Any]]:
        """The source image of each image-to-image job (an earlier result, or the user's picture); jobs whose
        source is gone fail."""
        from PIL import Image

        kept: list[Job] = []
        sources: dict[int, Any] = {}
        for job in jobs:
            p = job.params
            try:
                path = source_path(self._store, self.settings.data_dir, p)
                with Image.open(path) as img:
                    sources[job.id] = fit_source(img, p.width, p.height)
            except (ParamError, OSError) as exc:  # deleted, or cleaned up, since the job was queued
                message = str(exc) if isinstance(exc, ParamError) else (
                    "The image this job starts from could not be read.")
                log.warning("job %s: %s", job.id, message)
                self._fail_one(job, message)
                continue
            kept.append(job)
        return kept, sources
