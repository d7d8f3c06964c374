"""The engine: the one object the bot and the admin panel share — a thin façade over its parts
(the store, JobQueue, Policy, Admission, the EventBus, and the worker or the NATS dispatcher;
docs/architecture.md maps them). Async methods never block the event loop: disk work goes through
``asyncio.to_thread`` and worker threads hand events back with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from engine.backend import Backend
from engine.engine_settings import EngineSettings
from engine.gpu.local_worker import BatchHook, LocalBackend, ModelLoader, default_loader
from engine.gpu.model import LoadedModel
from engine.jobs.events import EventBus, EventStream
from engine.jobs.ledger import JobLedger
from engine.jobs.queue import JobQueue, QueueEntry
from engine.jobs.records import Job, JobRequest, Refused, Requester, Submission
from engine.jobs.retention import CleanupReport, retention_loop, run_cleanup
from engine.jobs.store import JobStore
from engine.media.datadir import DataDirLock
from engine.media.images import result_files
from engine.media.remix import Remix
from engine.media.saving import remove_files
from engine.media.sources import forget_upload
from engine.ops.heap import freeze_long_lived
from engine.ops.metrics import Metrics
from engine.ops.status import EngineStatus, gpu_bytes, gpu_memory
from engine.ops.throughput import Stats
from engine.requests.checks import Phrase
from engine.requests.params import GenerationParams, ParamRequest, build_params
from engine.requests.prompt_length import PromptLength, prompt_notes
from engine.requests.styles import StyleBook
from engine.requests.translation import PromptTranslator, translate_request
from engine.rules.admission import Acknowledge, Admission
from engine.rules.audit import AuditLog
from engine.rules.catalogue import Catalogue
from engine.rules.deny import DenyList
from engine.rules.policy import GLOBAL, Policy
from engine.rules.preferences import Preferences
from engine.rules.quota import Usage

if TYPE_CHECKING:
    from engine.remote.dispatch import RemoteDispatcher

log = logging.getLogger(__name__)


class Engine:
    """Queue, store, policy and worker behind both front doors."""

    def __init__(self, settings: EngineSettings, *, loader: ModelLoader | None = None) -> None:
        self.settings = settings
        self.styles = StyleBook()
        self.audit = AuditLog(self._require_store)  # the moderation log
        self.policy = Policy(settings, self.styles, self.audit)
        # the models and LoRAs offered: .env's, with the panel's edits; the policy's bounds follow each change
        self.catalogue = Catalogue(settings, self._require_store, self.audit, self.policy.offer)
        self.queue = JobQueue()
        self.events = EventBus()
        self.stats = Stats()
        self.store: JobStore | None = None
        self.remix = Remix(settings, self.resolve, self._require_store)  # jobs made from earlier ones
        self.ledger = JobLedger(self._require_store, self.events, self.stats)  # the one writer of job state
        self.deny_list = DenyList(self._require_store, self.audit)
        # members' own defaults (/prefer), bound by the policy's limits as they are at each use
        self.preferences = Preferences(self._require_store, lambda: self.policy.limits, self.styles)
        self.admission = Admission(settings, self.policy, self.queue, self.ledger, self.remix,
                                   self._refuse_if_unavailable, self.deny_list, self.audit)
        self.model_ready = asyncio.Event()
        # TRANSLATE_MODEL_ID: members' words into English when they ask (loaded in the background at start)
        self.translator = PromptTranslator(settings.translate_model_id) if settings.translate_model_id else None
        self._loader = loader or default_loader
        self._backend: Backend | None = None  # where batches run: this process, or GPU workers over NATS
        self._before_batch: BatchHook | None = None
        self._dir_lock: DataDirLock | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._started_at = time.time()
        self.metrics = Metrics(self.status, lambda: gpu_bytes(self.model))
        self.events.listen(self.metrics.observe)
        self.stats.batch_listeners.append(self.metrics.batch_images.observe)

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, recover unfinished jobs, and start the worker (the model loads in the background)."""
        loop = asyncio.get_running_loop()
        self.events.bind(loop)
        self.model_ready = asyncio.Event()
        self._dir_lock = await asyncio.to_thread(DataDirLock, self.settings.data_dir)
        try:
            self.store = await asyncio.to_thread(JobStore, self.settings.db_path)
            self._backend = backend = self._make_backend(self.store, loop)
            await asyncio.to_thread(self._recover, self.store, backend)
            await backend.start()
        except BaseException:
            if self.store is not None:
                self.store.close()
            self._dir_lock.release()
            raise
        if self.translator is not None:  # a thread of its own: the first translation waits for it, nothing else
            threading.Thread(target=self.translator.load, name="translator-load", daemon=True).start()
        # always: besides RETENTION_*, each pass gives the pages of deleted jobs back to the disk
        self._housekeeping = asyncio.create_task(retention_loop(self.cleanup), name="retention")
        # the libraries and what recovery loaded, out of the collector's walks: a bot host whose model runs on GPU
        # workers never reaches the local worker's freeze after its model load
        freeze_long_lived("start-up")

    def _make_backend(self, store: JobStore, loop: asyncio.AbstractEventLoop) -> Backend:
        """The worker thread in this process, or (with NATS_URL) the dispatcher to GPU workers."""
        if self.settings.remote.enabled:
            return _dispatcher_class()(self.settings, store, self.queue, self.ledger, self.events, self.stats,
                                       on_ready=self.model_ready.set, metrics=self.metrics,
                                       offer=self.catalogue.snapshot)
        ready = self.model_ready
        local = LocalBackend(self.settings, store, self.queue, self.ledger, self.events, self.stats,
                             loader=self._loader, on_state=lambda: _set_threadsafe(loop, ready),
                             offer=self.catalogue.snapshot)
        local.before_batch = self._before_batch
        return local

    def _recover(self, store: JobStore, backend: Backend) -> None:
        """Load what the store holds (blocking): unfinished jobs back into the queue, policy, stats."""
        backend.recover(store)
        hour_ago = time.time() - 3600
        self.stats.load(store.stats(hour_ago)["seconds_per_image"], store.finished_times(hour_ago))
        self.catalogue.load(store)  # before the policy too: a default model must be offered
        self.styles.load(store)  # before the policy: a default style must name one of them
        self.policy.load(store)
        self.deny_list.load(store)
        for job in store.in_states(["queued"]):
            self.queue.add(job)

    async def cleanup(self) -> CleanupReport:
        """Apply RETENTION_DAYS / RETENTION_MAX_GB now (undelivered results are always kept; the moderation log
        keeps RETENTION_DAYS too), then let the database file shrink by what deleted rows freed."""
        store = self._require_store()
        await asyncio.to_thread(self.audit.prune, self.settings.retention_days)  # the moderation log too
        report = await asyncio.to_thread(run_cleanup, store, max_age_days=self.settings.retention_days,
                                         max_gb=self.settings.retention_max_gb, data_dir=self.settings.data_dir)
        await asyncio.to_thread(store.reclaim)
        return report

    async def stop(self) -> None:
        """Stop the worker at its current batch's next step; unfinished jobs run again on the next start."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        self.remix.decoder.close()
        if self._backend is not None and not await self._backend.stop():
            return  # something still runs on the store: its rows stay as they are and recovery handles them
        if self.store is not None:
            self.store.close()
        if self._dir_lock is not None:
            self._dir_lock.release()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the model is loaded (True) or failed to load (False)."""
        await asyncio.wait_for(self.model_ready.wait(), timeout)
        return self.model_state == "ready"

    # --- the model, as the worker reports it ------------------------------------------------------

    @property
    def model(self) -> LoadedModel | None:
        """The model loaded in this process (None while loading, after a failure, or with GPU workers)."""
        return self._backend.model if self._backend is not None else None

    @property
    def prompt_length(self) -> PromptLength | None:
        """The model's token counter for prompt notes (None until the tokenizer is loaded)."""
        return self._backend.prompt_length if self._backend is not None else None

    @property
    def model_state(self) -> str:
        """``loading``, ``ready`` or ``failed`` (with GPU workers: ready while one of them is)."""
        return self._backend.state if self._backend is not None else "loading"

    @property
    def model_error(self) -> str | None:
        """Why the model failed to load (user-facing), else None."""
        return self._backend.error if self._backend is not None else None

    @property
    def fast_available(self) -> bool:
        """Whether fast mode can run (the LoRA is loaded here, or on a live worker)."""
        return self._backend.fast_available if self._backend is not None else False

    @property
    def before_batch(self) -> BatchHook | None:
        """Test seam for fault injection (CUDA OOM, disk full): called on the worker before each pipeline call."""
        return self._before_batch

    @before_batch.setter
    def before_batch(self, hook: BatchHook | None) -> None:
        self._before_batch = hook
        if isinstance(self._backend, LocalBackend):
            self._backend.before_batch = hook

    # --- requests (defaults and blocklists: ``engine.rules.policy``, engine/rules/policy.py) ---------------------

    def resolve(self, req: ParamRequest, guild_id: str | None = None) -> GenerationParams:
        """Apply the guild's defaults, its style (or the one asked for) and the bounds to raw input (ParamError)."""
        defaults = self.policy.defaults(guild_id)
        return build_params(req, defaults, self.policy.limits, style=self.styles.pick(req.style, defaults.style))

    async def resolve_for(self, req: ParamRequest, guild_id: str | None,
                          user_id: str) -> tuple[GenerationParams, tuple[Phrase, ...]]:
        """``resolve`` with the member's own preferences (/prefer) filling what the request leaves open, and a note
        for each preference this place does not allow (ParamError as ``resolve``)."""
        prefs = await self.preferences.get(user_id)
        req, notes = self.preferences.apply(req, prefs, self.policy.defaults(guild_id), not self._fast_missing())
        return self.resolve(req, guild_id), notes

    async def variation(self, job_id: int, image: int, seed: int | None = None,
                        subtle: bool = False) -> GenerationParams:
        """Parameters for variations of image ``image`` (0-based) of finished job ``job_id`` (engine/media/remix.py)."""
        return await self.remix.variation(job_id, image, seed, subtle)

    # --- queue --------------------------------------------------------------------------------

    def _fast_missing(self) -> bool:
        """The model is loaded without fast mode's LoRA (while it loads, fast jobs are accepted)."""
        return self.model_state == "ready" and not self.fast_available

    def _refuse_if_unavailable(self, fast: bool) -> None:
        if self.model_state == "failed":
            raise Refused("model_failed", f"Image generation is unavailable: {self.model_error}")
        if fast and self._fast_missing():
            raise Refused("fast_unavailable", "Fast mode is not available on this server (its LoRA is not "
                                              "loaded); run without --fast.")

    async def request(self, req: JobRequest, *, acknowledge: Acknowledge | None = None) -> Submission:
        """The one way in for every front door: apply every rule, store and queue the job (engine/rules/admission.py).

        ``acknowledge`` is awaited once the rules that need no disk have passed (the 3-second answer to
        Discord); a refusal before it comes without one. Raises Refused with a user-facing message, or
        the picture's own error (ParamError for a file that is not a usable picture).
        """
        req, translated = await translate_request(self.translator, req, self.styles.get(req.params.style),
                                                  self.policy.limits.loras)
        job = await self.admission.admit(req, acknowledge)
        if self.model_state == "failed" and self._backend is not None:
            # the model failed while this job was being stored: the worker is gone, so answer it now
            await asyncio.to_thread(self._backend.fail_queued, f"Image generation is unavailable: {self.model_error}")
        position, eta = self.position(job.id)
        notes = (*translated, *await prompt_notes(self.prompt_length, job.params.prompt))
        return Submission(job=job, position=position, eta_seconds=eta, notes=notes)

    async def submit(self, params: GenerationParams, requester: Requester, *, priority: int = 0) -> Submission:
        """``request`` for a job with no place or picture to consider (the panel, the CLI, benchmarks)."""
        return await self.request(JobRequest(params, requester, priority=priority))

    async def quota_usage(self, guild_id: str | None, user_id: str) -> Usage:
        """A member's and their server's images in the current quota windows (one indexed read); outside servers
        (``guild_id`` None) the member's own there."""
        store = self._require_store()
        return await asyncio.to_thread(store.usage, guild_id, user_id, time.time())

    async def quota_servers(self) -> dict[str, tuple[int, int]]:
        """Every server's images today and this hour (the panel's Quotas tab)."""
        store = self._require_store()
        return await asyncio.to_thread(store.server_usage, time.time())

    def position(self, job_id: int) -> tuple[int, float | None]:
        """(position, eta seconds): 0 while running, 1 for the next job..., -1 if not active."""
        return self.queue.position(job_id, self.stats.seconds_per_image)

    def positions(self) -> dict[int, tuple[int, float | None]]:
        """Every queued job's (position, eta seconds), computed once for all of them."""
        return self.queue.positions(self.stats.seconds_per_image)

    def queue_snapshot(self) -> list[QueueEntry]:
        """Running jobs, then queued ones in the order they will run."""
        return self.queue.snapshot()

    async def cancel(self, job_id: int, *, user_id: str | None = None) -> str:
        """Cancel a queued job, or a running one at its next step.

        ``user_id`` restricts it to the requester. Returns 'cancelled', 'not_found', 'not_owner'
        or 'finished'.
        """
        store = self._require_store()
        outcome = self.queue.cancel(job_id, None if user_id is None else str(user_id))
        if outcome == "not_owner":
            return outcome
        if outcome == "inactive":
            stored = await asyncio.to_thread(store.get, job_id)
            if stored is None:
                return "not_found"
            if user_id is not None and stored.requester.user_id != str(user_id):
                return "not_owner"
            return "finished"
        if outcome == "running" and self._backend is not None:
            self._backend.cancel_running(job_id)
        return "cancelled" if await self.ledger.cancel(job_id) else "finished"

    async def cancel_user(self, user_id: str) -> list[int]:
        """Cancel every queued job of a user; returns their ids."""
        ids = self.queue.queued_ids(str(user_id))
        return [i for i in ids if await self.cancel(i, user_id=str(user_id)) == "cancelled"]

    # --- subscriptions, delivery, history ----------------------------------------------------

    def subscribe(self, job_id: int | None = None) -> EventStream:
        """Receive JobEvents: of one job, or of every job when ``job_id`` is None."""
        return self.events.subscribe(job_id)

    async def get_job(self, job_id: int) -> Job | None:
        """A job by id."""
        return await asyncio.to_thread(self._require_store().get, job_id)

    async def undelivered(self, source: str = "discord") -> list[Job]:
        """Finished jobs whose results the front door has not delivered yet."""
        return await asyncio.to_thread(self._require_store().undelivered, source)

    async def mark_delivered(self, job_id: int) -> None:
        """Record that the front door's delivery was accepted (and log it with the job's fields)."""
        await self.ledger.deliver(job_id)

    async def history(self, **filters: Any) -> list[Job]:
        """Recent finished jobs (see JobStore.recent for filters)."""
        store = self._require_store()
        return await asyncio.to_thread(lambda: store.recent(**filters))

    async def delete_job(self, job_id: int) -> Job | None:
        """Delete a job and its files."""
        store = self._require_store()
        if self.queue.is_active(job_id):
            await self.cancel(job_id)  # never let the worker spend GPU time on a deleted job
        job = await asyncio.to_thread(store.delete_job, job_id)
        if job is not None:
            await asyncio.to_thread(remove_files, result_files(job))
            await asyncio.to_thread(forget_upload, store, self.settings.data_dir, job.params.init_image)
        return job

    async def kv_get(self, key: str) -> str | None:
        """A small value the front doors keep in the store (e.g. the slash commands' hash)."""
        return await asyncio.to_thread(self._require_store().kv_get, key)

    async def kv_set(self, key: str, value: str) -> None:
        """Store a small value for a front door."""
        await asyncio.to_thread(self._require_store().kv_set, key, value)

    def status(self) -> EngineStatus:
        """A snapshot for /status and the panel (in memory only: no disk or database read)."""
        queued, running = self.queue.counts()
        model = self.model
        return EngineStatus(
            model_id=self.settings.model_id, model_state=self.model_state, model_error=self.model_error,
            device=model.choice.device if model else None, dtype=model.choice.dtype_name if model else None,
            fast_available=self.fast_available, queued=queued, running=running,
            jobs_last_hour=self.stats.jobs_last_hour(), seconds_per_image=self.stats.seconds_per_image,
            uptime_seconds=time.time() - self._started_at, gpu_memory=gpu_memory(model),
            accelerations=tuple(model.accel.status_lines()) if model and model.accel else (),
            remote=self.settings.remote.enabled, workers=self._backend.workers() if self._backend is not None else (),
            safety=self.settings.safety_model_id or None, nsfw_threshold=self.policy.defaults().nsfw_threshold,
            models=tuple(e.name for e in self.policy.limits.models),
            loras=tuple(e.name for e in self.policy.limits.loras),
            loaded=self._backend.loaded_models() if self._backend is not None else (),
        )

    def _require_store(self) -> JobStore:
        if self.store is None:
            raise RuntimeError("the engine is not started; call `await engine.start()` first")
        return self.store


def _dispatcher_class() -> type[RemoteDispatcher]:
    try:
        from engine.remote.dispatch import RemoteDispatcher  # imports nats: only with NATS_URL
    except ImportError as exc:
        raise RuntimeError(f"NATS_URL is set but {exc.name} is not installed; install the scale-out extra: "
                           f"pip install -e '.[distributed]' (scripts/serve.sh does it)") from exc
    return RemoteDispatcher


def _set_threadsafe(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(event.set)


__all__ = ["Engine", "EngineStatus", "EventStream", "QueueEntry", "GLOBAL", "default_loader"]
