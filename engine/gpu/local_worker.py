"""The in-process worker: one thread that loads the model, then runs batches from the queue.

It alone touches the pipeline. It takes a batch from the JobQueue, runs it through the runtime it
shares with GPU workers over NATS (engine/gpu/batch_runner.py: sources, OOM splitting, safety scores),
hands the images to the ResultSaver and failures to the ledger (the store first, then the event).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.acceleration import apply_accelerations
from engine.gpu.batch_runner import BatchHook, BatchRunner
from engine.gpu.model import LoadedModel, ModelLoadError, load_fast_lora, load_loras, load_model
from engine.gpu.model_pool import ModelPool
from engine.gpu.pipeline import GenerationInterrupted
from engine.gpu.safety import load_checker, picture_threshold
from engine.jobs.events import EventBus
from engine.jobs.ledger import JobLedger
from engine.jobs.queue import JobQueue
from engine.jobs.records import Job, JobEvent
from engine.jobs.store import JobStore
from engine.media.saving import ResultSaver
from engine.media.sources import source_path
from engine.ops.heap import freeze_long_lived
from engine.ops.loading import LOADING
from engine.ops.status import WorkerInfo
from engine.ops.throughput import Stats
from engine.requests.models import Offer
from engine.requests.prompt_length import PromptLength

log = logging.getLogger(__name__)

ModelLoader = Callable[[EngineSettings], LoadedModel]
WORKER_STOP_TIMEOUT_S = 60.0


def default_loader(settings: EngineSettings) -> LoadedModel:
    """Load the model, then the fast-mode LoRA if configured (its failure only disables fast mode), the members'
    LoRAs (LORAS; one that fails is left out, said in the status), then the image safety classifier if
    SAFETY_MODEL_ID is set (its failure fails the load: see engine/gpu/safety.py), then apply the acceleration
    switches (after the LoRAs: fused QKV and the fast UNet depend on them)."""
    with LOADING:
        return _load(settings)


def _load(settings: EngineSettings) -> LoadedModel:
    model = load_model(settings)
    if settings.fast_lora_id:
        try:
            load_fast_lora(model, settings.fast_lora_id)
        except ModelLoadError as exc:
            log.warning("fast mode disabled: %s", exc)
    for note in load_loras(model, settings.loras):  # before the accelerations: fused QKV and the fast UNet see them
        log.info("%s", note)
        model.notes.append(note)
    if settings.safety_model_id:
        model.safety = load_checker(settings.safety_model_id, settings.safety_labels, model.choice)
    log.info("accelerations:\n  %s", "\n  ".join(apply_accelerations(model, settings)))
    return model


class LocalWorker:
    """Owns the model (loading, ready, failed) and the thread that runs every batch."""

    def __init__(self, settings: EngineSettings, store: JobStore, queue: JobQueue, ledger: JobLedger,
                 events: EventBus, saver: ResultSaver, stats: Stats, *, loader: ModelLoader | None = None,
                 on_state: Callable[[], None] | None = None, offer: Callable[[], Offer] | None = None) -> None:
        self.settings = settings
        self._store = store  # read only: image-to-image sources
        self._queue = queue
        self._ledger = ledger
        self._events = events  # progress only; changes of state go through the ledger
        self._saver = saver
        self._stats = stats
        self._loader = loader or default_loader
        self._on_state = on_state
        self._offer = offer  # the catalogue's models and LoRAs (None: MODELS and LORAS of .env)
        self.pool: ModelPool | None = None  # once the default model is loaded
        self.state = "loading"  # loading | ready | failed
        self.error: str | None = None
        self.stopping = False
        self.prompt_length: PromptLength | None = None  # a private tokenizer for the front doors' notes
        # test seam for fault injection (CUDA OOM, disk full): called before each pipeline call
        self.before_batch: BatchHook | None = None
        self.runner: BatchRunner | None = None  # once the default model is loaded
        self._thread = threading.Thread(target=self._main, name="engine-worker", daemon=True)

    @property
    def model(self) -> LoadedModel | None:
        """The default model (None while loading or after a failure)."""
        return self.pool.default if self.pool is not None else None

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
            pool = ModelPool(self.settings, self._loader, self._offer)
            pool.load_default()
            self.pool = pool
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
        self.runner = BatchRunner(pool, self.settings, is_cancelled=self._queue.is_cancelled,
                                   stopping=lambda: self.stopping, before_batch=lambda: self.before_batch)
        tokenizer = getattr(getattr(self.model, "pipe", None), "tokenizer", None)
        if tokenizer is not None:
            self.prompt_length = PromptLength(tokenizer)
        # before the first job: a full collection of the model's objects would stall the event loop
        freeze_long_lived("model load")
        self._set_state("ready")
        while True:
            # "" is the default model of jobs stored before MODELS; the default is always loaded
            loaded = {"", *self.runner.pool.loaded} if self.runner is not None else None
            jobs = self._queue.next_batch(self.settings.max_batch, window=self.settings.batch_window, loaded=loaded)
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
            self._ledger.fail(job, message)

    def _run(self, jobs: list[Job]) -> None:
        """Run one batch of compatible jobs (engine/gpu/batch_runner.py) and hand each outcome on: images to the
        saver, failures to the ledger."""
        live = [j for j in jobs if not self._queue.is_cancelled(j.id)]
        if not live:
            return
        assert self.runner is not None
        self._ledger.start(live)

        def on_progress(job: Job, step: int, total: int, preview: bytes | None) -> None:
            self._queue.set_progress(job.id, step, total)
            self._events.publish_threadsafe(JobEvent("progress", job, step, total, preview))

        try:
            run = self.runner.run(live, self._open_source, on_progress, picture_threshold)
        except GenerationInterrupted:  # stopping: the jobs stay running in the store and run again on restart
            return
        self._stats.record_batch(run.seconds_per_image, run.images)
        for outcome in run.outcomes:
            if outcome.error is not None:
                self._ledger.fail(outcome.job, outcome.error)
            elif outcome.images is not None and not self._queue.is_cancelled(outcome.job.id):
                self._saver.submit(outcome.job, outcome.images, outcome.gen_seconds, safety=outcome.scores)

    def _open_source(self, job: Job) -> Any:
        """The picture an image-to-image job starts from: an earlier result, or the member's upload."""
        from PIL import Image

        return Image.open(source_path(self._store, self.settings.data_dir, job.params))


class LocalBackend:
    """Batches run in this process: the worker thread and the saver threads (engine/backend.py's protocol)."""

    def __init__(self, settings: EngineSettings, store: JobStore, queue: JobQueue, ledger: JobLedger,
                 events: EventBus, stats: Stats, *, loader: ModelLoader | None = None,
                 on_state: Callable[[], None] | None = None, offer: Callable[[], Offer] | None = None) -> None:
        self._saver = ResultSaver(settings, ledger)
        self._worker = LocalWorker(settings, store, queue, ledger, events, self._saver, stats, loader=loader,
                                   on_state=on_state, offer=offer)

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``failed``."""
        return self._worker.state

    @property
    def error(self) -> str | None:
        """Why the model failed to load (user-facing), else None."""
        return self._worker.error

    @property
    def model(self) -> LoadedModel | None:
        """The loaded model (None while loading or after a failure)."""
        return self._worker.model

    @property
    def fast_available(self) -> bool:
        """Whether the fast-mode LoRA is loaded."""
        return bool(self._worker.model and self._worker.model.fast_adapter)

    @property
    def prompt_length(self) -> PromptLength | None:
        """A private copy of the model's tokenizer, once it is loaded."""
        return self._worker.prompt_length

    @property
    def before_batch(self) -> BatchHook | None:
        """Test seam for faults (CUDA OOM, disk full): called on the worker thread before each pipeline call."""
        return self._worker.before_batch

    @before_batch.setter
    def before_batch(self, hook: BatchHook | None) -> None:
        self._worker.before_batch = hook

    def recover(self, store: JobStore) -> None:
        """Jobs left running by a stop or a crash run again: nothing else holds them."""
        recovered = store.requeue_running()
        if recovered:
            log.warning("re-queued %d job(s) that were running when the service stopped: %s", len(recovered),
                        recovered)

    async def start(self) -> None:
        """Start the worker thread (it loads the model, then serves)."""
        self._worker.start()

    async def stop(self) -> bool:
        """Stop at the current batch's next step, then let the savers finish."""
        if not await asyncio.to_thread(self._worker.stop, WORKER_STOP_TIMEOUT_S):
            # still inside from_pretrained (or a step that never returns): closing the store under it would
            # fail jobs; their rows stay as they are and recovery handles them next start
            log.warning("the engine worker did not stop within %.0f s; leaving the job store open",
                        WORKER_STOP_TIMEOUT_S)
            return False
        await asyncio.to_thread(self._saver.shutdown)
        return True

    def cancel_running(self, job_id: int) -> None:
        """Nothing to send: the worker reads the queue's cancelled mark at every step."""

    def fail_queued(self, message: str) -> None:
        """Fail every queued job with ``message`` (the model is not coming)."""
        self._worker.fail_queued(message)

    def workers(self) -> tuple[WorkerInfo, ...]:
        """No GPU workers: the model is here."""
        return ()

    def loaded_models(self) -> tuple[str, ...]:
        """The models loaded in this process now, least recently used first."""
        runner = self._worker.runner
        return tuple(runner.pool.loaded) if runner is not None else ()
