"""The engine: one object the bot and the admin panel share.

It owns the job store, the fair queue, and one worker thread that owns the pipeline. Async
methods never block the event loop: disk work goes through ``asyncio.to_thread`` and the worker
hands events back with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine import moderation
from engine.acceleration import apply_accelerations
from engine.heap import freeze_long_lived
from engine.images import save_result
from engine.jobs import Job, JobEvent, Refused, Requester, Submission
from engine.params import (
    MAX_SEED,
    Defaults,
    GenerationParams,
    Limits,
    ParamError,
    ParamRequest,
    build_params,
    validate_overrides,
)
from engine.pipeline import (
    GenerationInterrupted,
    ImageSpec,
    LoadedModel,
    ModelLoadError,
    latents_preview,
    load_fast_lora,
    load_model,
    run_batch,
)
from engine.retention import CleanupReport, run_cleanup
from engine.scheduling import Pending, eta_seconds, fair_order, next_batch
from engine.settings import EngineSettings
from engine.store import DataDirLock, JobStore

log = logging.getLogger(__name__)

GLOBAL = "global"
RETENTION_EVERY_S = 3600.0
TOKEN_LIMIT = 77  # CLIP text encoders read 77 tokens, start and end markers included


@dataclass(frozen=True)
class QueueEntry:
    """One active job as the queue views show it."""

    job: Job
    position: int  # 0 = running, 1 = next...
    step: int
    total: int


@dataclass(frozen=True)
class EngineStatus:
    """What /status and the panel's status tab show."""

    model_id: str
    model_state: str  # loading | ready | failed
    model_error: str | None
    device: str | None
    dtype: str | None
    fast_available: bool
    queued: int
    running: int
    jobs_last_hour: int
    seconds_per_image: float | None
    uptime_seconds: float
    gpu_memory: str | None
    accelerations: tuple[str, ...] = ()  # engine/acceleration.py: switches applied, compile warm-up state


class EventStream:
    """An async iterator of JobEvents for one subscriber; close it when done."""

    def __init__(self, engine: Engine, job_id: int | None) -> None:
        self._engine = engine
        self.job_id = job_id
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JobEvent]:
        while True:
            yield await self.queue.get()

    async def next(self, timeout: float | None = None) -> JobEvent:
        """The next event (raises TimeoutError after ``timeout`` seconds)."""
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        """Stop receiving events."""
        self._engine._subscribers.discard(self)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Admission:
    """A place under the per-user and queue caps, held between the check and the submit."""

    def __init__(self, engine: Engine, user_id: str) -> None:
        self._engine = engine
        self.user_id = user_id
        self.held = True

    def release(self) -> None:
        """Give the place back (the request was not submitted after all)."""
        if self.held:
            self.held = False
            self._engine._admitting.remove(self.user_id)


ModelLoader = Callable[[EngineSettings], LoadedModel]


def default_loader(settings: EngineSettings) -> LoadedModel:
    """Load the model, then the fast-mode LoRA if configured (its failure only disables fast mode)."""
    model = load_model(settings)
    if settings.fast_lora_id:
        try:
            load_fast_lora(model, settings.fast_lora_id)
        except ModelLoadError as exc:
            log.warning("fast mode disabled: %s", exc)
    # after the LoRA: fused QKV and the fused fast UNet depend on it
    log.info("accelerations:\n  %s", "\n  ".join(apply_accelerations(model, settings)))
    return model


class Engine:
    """Queue, store and worker behind both front doors."""

    def __init__(self, settings: EngineSettings, *, loader: ModelLoader | None = None) -> None:
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.env_defaults = Defaults.from_settings(settings)
        self._loader = loader or default_loader
        self.store: JobStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond = threading.Condition()
        self._pending: dict[int, Pending] = {}
        self._active: dict[int, Job] = {}
        self._progress: dict[int, tuple[int, int]] = {}
        self._running_ids: list[int] = []
        self._cancelled: set[int] = set()
        self._last_served: dict[str, int] = {}
        self._serve_counter = 0
        self._subscribers: set[EventStream] = set()
        self._overrides: dict[str, dict[str, Any]] = {}
        self._blocklists: dict[str, list[str]] = {}
        self._stopping = False
        self._housekeeping: asyncio.Task[None] | None = None
        self._dir_lock: DataDirLock | None = None
        self._defaults_lock = asyncio.Lock()
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-save")
        self._admitting: list[str] = []  # users whose submit passed admission but is not pending yet
        self._worker: threading.Thread | None = None
        self._started_at = time.time()
        self._spi: float | None = None
        self._finished: deque[float] = deque()  # finish times of the last hour, for status()
        self.model: LoadedModel | None = None
        self.model_state = "loading"
        self.model_error: str | None = None
        self.model_ready = asyncio.Event()
        # test seam for fault injection (CUDA OOM, disk full): called before each pipeline call
        self.before_batch: Callable[[list[Job]], None] | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, recover unfinished jobs, and start the worker (the model loads in the background)."""
        self._loop = asyncio.get_running_loop()
        self.model_ready = asyncio.Event()
        self._dir_lock = await asyncio.to_thread(DataDirLock, self.settings.data_dir)
        try:
            self.store = await asyncio.to_thread(JobStore, self.settings.db_path)
            await self._recover()
        except BaseException:
            if self.store is not None:
                self.store.close()
            self._dir_lock.release()
            raise
        self._worker = threading.Thread(target=self._worker_main, name="engine-worker", daemon=True)
        self._worker.start()
        if self.settings.retention_days > 0 or self.settings.retention_max_gb > 0:
            self._housekeeping = asyncio.create_task(self._retention_loop(), name="retention")

    async def _recover(self) -> None:
        """Load what the store holds: unfinished jobs back into the queue, defaults, blocklists, stats."""
        assert self.store is not None
        recovered = await asyncio.to_thread(self.store.requeue_running)
        if recovered:
            log.warning("re-queued %d job(s) that were running when the service stopped: %s",
                        len(recovered), recovered)
        queued = await asyncio.to_thread(self.store.in_states, ["queued"])
        stats = await asyncio.to_thread(self.store.stats, time.time() - 3600)
        self._spi = stats["seconds_per_image"] or None
        self._finished.extend(await asyncio.to_thread(self.store.finished_times, time.time() - 3600))
        self._blocklists = await asyncio.to_thread(self.store.all_blocklists)
        for scope in await asyncio.to_thread(self.store.override_scopes):
            stored = await asyncio.to_thread(self.store.get_overrides, scope)
            self._overrides[scope] = self._still_valid(scope, stored)
        with self._cond:
            for job in queued:
                self._add_pending(job)

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.cleanup()
            except Exception:  # housekeeping must never take the service down
                log.exception("retention cleanup failed")
            await asyncio.sleep(RETENTION_EVERY_S)

    async def cleanup(self) -> CleanupReport:
        """Apply RETENTION_DAYS / RETENTION_MAX_GB now (undelivered results are always kept)."""
        assert self.store is not None
        return await asyncio.to_thread(run_cleanup, self.store, max_age_days=self.settings.retention_days,
                                       max_gb=self.settings.retention_max_gb)

    async def stop(self) -> None:
        """Stop the worker at its current batch's next step; unfinished jobs run again on the next start."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self.model is not None and self.model.accel is not None:
            self.model.accel.close()  # no new compile warm-up work after stop
        if self._worker is not None:
            await asyncio.to_thread(self._worker.join, 60)
            if self._worker.is_alive():
                # still inside from_pretrained (or a step that never returns): closing the store under it
                # would fail jobs; their rows stay as they are and recovery handles them next start
                log.warning("the engine worker did not stop within 60 s; leaving the job store open")
                return
        await asyncio.to_thread(self._saver.shutdown, wait=True)
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

    # --- defaults and moderation ----------------------------------------------------------------

    def defaults(self, guild_id: str | None = None) -> Defaults:
        """Effective defaults: environment, then global overrides, then the guild's."""
        merged = self.env_defaults.merged(self._overrides.get(GLOBAL, {}))
        if guild_id:
            merged = merged.merged(self._overrides.get(str(guild_id), {}))
        return merged

    def overrides(self, scope: str) -> dict[str, Any]:
        """The stored overrides of a scope ('global' or a guild id)."""
        return dict(self._overrides.get(scope, {}))

    def override_scopes(self) -> list[str]:
        """Scopes that have overrides."""
        return sorted(s for s, v in self._overrides.items() if v)

    async def set_defaults(self, scope: str, changes: dict[str, Any]) -> Defaults:
        """Validate and store changes to a scope's defaults; they apply to the next request at once.

        A value of ``None`` removes that override. Raises ParamError with the allowed range.
        """
        assert self.store is not None
        async with self._defaults_lock:  # the panel and /settings may change one scope at the same moment
            return await self._set_defaults_locked(scope, changes)

    async def _set_defaults_locked(self, scope: str, changes: dict[str, Any]) -> Defaults:
        assert self.store is not None
        clean = validate_overrides(changes, self.limits)
        current = dict(self._overrides.get(scope, {}))
        current.update(clean)
        for key, value in changes.items():
            if value is None:
                current.pop(key, None)
        base = self.env_defaults if scope == GLOBAL else self.defaults(None)
        effective = base.merged(current)
        # a default above its own limit would make every request that relies on it fail
        if effective.steps > effective.max_steps:
            raise ParamError(f"steps {effective.steps} is above max_steps {effective.max_steps}; lower steps or "
                             f"raise max_steps")
        if effective.count > effective.max_count:
            raise ParamError(f"count {effective.count} is above max_count {effective.max_count}; lower count or "
                             f"raise max_count")
        await asyncio.to_thread(self.store.set_overrides, scope, current)
        self._overrides[scope] = current
        return self.defaults(None if scope == GLOBAL else scope)

    def _still_valid(self, scope: str, stored: dict[str, Any]) -> dict[str, Any]:
        """Stored overrides that still fit the deployment's bounds (SIZES, MAX_STEPS... may have changed).

        An override that no longer fits is ignored with a warning, so requests relying on it keep working.
        """
        kept: dict[str, Any] = {}
        for key, value in stored.items():
            try:
                kept.update(validate_overrides({key: value}, self.limits))
            except ParamError as exc:
                log.warning("ignoring the stored %s default %s=%r: %s", scope, key, value, exc)
        return kept

    async def reset_defaults(self, scope: str) -> None:
        """Remove every override of a scope."""
        assert self.store is not None
        await asyncio.to_thread(self.store.set_overrides, scope, {})
        self._overrides.pop(scope, None)

    async def blocklist(self, scope: str) -> list[str]:
        """Blocked words of a scope ('global' includes the BLOCKLIST variable's words)."""
        # every list is loaded at start, so a scope missing here has no words (no disk read per /imagine)
        words = list(self._blocklists.get(scope, ()))
        if scope == GLOBAL:
            words = sorted(set(words) | {moderation.normalize_word(w) for w in self.settings.blocklist})
        return words

    async def set_blocklist(self, scope: str, words: list[str]) -> list[str]:
        """Replace a scope's blocked words (normalised); returns what was stored."""
        assert self.store is not None
        clean = sorted({w for w in (moderation.normalize_word(x) for x in words) if w})
        await asyncio.to_thread(self.store.set_blocklist, scope, clean)
        self._blocklists[scope] = clean
        return clean

    async def blocked_words(self, prompt: str, guild_id: str | None) -> list[str]:
        """Blocklist entries (global and the guild's) found in a prompt; empty when it is fine."""
        words = await self.blocklist(GLOBAL)
        if guild_id:
            words += await self.blocklist(str(guild_id))
        return moderation.find_blocked(prompt, words)

    def resolve(self, req: ParamRequest, guild_id: str | None = None) -> GenerationParams:
        """Apply the guild's defaults and the bounds to raw input (raises ParamError)."""
        return build_params(req, self.defaults(guild_id), self.limits)

    async def variation(self, job_id: int, image: int, seed: int | None = None) -> GenerationParams:
        """Parameters for variations of image ``image`` (0-based) of finished job ``job_id``.

        Same prompt, size, steps and count as the source, a new seed (random unless given) and
        VARY_STRENGTH. Raises ParamError, saying why, when the source image is not there.
        """
        store = self.store
        assert store is not None

        def finished_source() -> Job:
            found = store.get(job_id)
            source_image_path(found, job_id, image)  # raises unless the image is there
            assert found is not None
            return found

        source = await asyncio.to_thread(finished_source)  # one hop for the row and the file check
        seed = random.SystemRandom().randint(0, MAX_SEED) if seed is None else seed
        return source.params.variation(job_id, image, self.settings.vary_strength, seed)

    # --- queue --------------------------------------------------------------------------------

    async def submit(self, params: GenerationParams, requester: Requester, *, priority: int = 0,
                     admission: Admission | None = None) -> Submission:
        """Persist a job and queue it. Raises Refused (caps, model failure) with a user-facing message.

        ``admission`` (from ``admit``) is a place already held under the caps; it is used up here.
        """
        assert self.store is not None
        held = admission is not None and admission.held
        try:
            if self.model_state == "failed":
                raise Refused("model_failed", f"Image generation is unavailable: {self.model_error}")
            if params.fast and self.model_state == "ready" and (self.model is None or
                                                                self.model.fast_adapter is None):
                raise Refused("fast_unavailable", "Fast mode is not available on this server (its LoRA is not "
                                                  "loaded); run without --fast.")
            if priority <= 0 and not held:
                self.check_admission(requester)
        except Refused:
            if admission is not None:
                admission.release()
            raise
        # count this submit against the caps while it awaits the store, so concurrent submits cannot overshoot
        if not held:
            self._admitting.append(requester.user_id)
        elif admission is not None:
            admission.held = False  # the place now belongs to this submit
        try:
            job = await asyncio.to_thread(self.store.insert_job, requester, params, priority=priority)
            with self._cond:
                self._add_pending(job)
                self._cond.notify_all()
        finally:
            self._admitting.remove(requester.user_id)
        self._dispatch(JobEvent("queued", job))
        if self.model_state == "failed":
            # the model failed while this job was being stored: the worker is gone, so answer it now
            await asyncio.to_thread(self._fail_all_pending, f"Image generation is unavailable: {self.model_error}")
        position, eta = self.position(job.id)
        notes = await self._prompt_notes(params)
        return Submission(job=job, position=position, eta_seconds=eta, notes=notes)

    def admit(self, requester: Requester, *, fast: bool = False) -> Admission:
        """Check the caps and hold a place for this requester until ``submit`` or ``release``.

        Front doors call it before acknowledging, so that a burst of requests from one user
        cannot all pass the check while their acknowledgements are in flight.
        """
        self.check_admission(requester, fast=fast)
        self._admitting.append(requester.user_id)
        return Admission(self, requester.user_id)

    def check_admission(self, requester: Requester, *, fast: bool = False) -> None:
        """Raise Refused if this requester may not queue another job now (per-user cap, full queue).

        Cheap and in memory, so front doors can refuse before acknowledging; submit checks again.
        """
        if self.model_state == "failed":
            raise Refused("model_failed", f"Image generation is unavailable: {self.model_error}")
        if fast and self.model_state == "ready" and (self.model is None or self.model.fast_adapter is None):
            raise Refused("fast_unavailable", "Fast mode is not available on this server (its LoRA is not "
                                              "loaded); run without --fast.")
        cap = self.defaults(requester.guild_id).per_user_cap
        with self._cond:
            mine = sum(1 for j in self._active.values() if j.requester.user_id == requester.user_id)
            mine += self._admitting.count(requester.user_id)
            queued = len(self._pending) + len(self._admitting)
        if mine >= cap:
            raise Refused("user_cap", f"You already have {mine} image job(s) waiting or running (the limit is "
                                      f"{cap}). Wait for one to finish or cancel one with /cancel.")
        if queued >= self.settings.queue_cap:
            raise Refused("queue_full", f"The queue is full ({queued} jobs). Please try again in a few minutes.")

    def _add_pending(self, job: Job) -> None:
        self._active[job.id] = job
        self._pending[job.id] = Pending(job.id, job.requester.user_id, job.priority, job.params.count,
                                        job.params.batch_key())

    async def _prompt_notes(self, params: GenerationParams) -> tuple[str, ...]:
        model = self.model
        if model is None or getattr(model.pipe, "tokenizer", None) is None:
            return ()

        def note() -> tuple[str, ...]:
            ids = model.pipe.tokenizer(params.prompt).input_ids
            if len(ids) <= TOKEN_LIMIT:
                return ()
            kept = model.pipe.tokenizer.decode(ids[1:TOKEN_LIMIT - 1])
            return (f"Your prompt is {len(ids)} tokens long; the text encoder reads only the first {TOKEN_LIMIT} "
                    f"(up to \u201c\u2026{kept[-40:].strip()}\u201d), so the rest is ignored.",)

        try:
            return await asyncio.to_thread(note)
        except Exception:  # a note is a courtesy: never fail a queued job over it
            log.exception("could not count the prompt's tokens")
            return ()

    def position(self, job_id: int) -> tuple[int, float | None]:
        """(position, eta seconds): 0 while running, 1 for the next job..., -1 if not active."""
        with self._cond:
            if job_id in self._running_ids:
                return 0, None
            ordered = fair_order(list(self._pending.values()), self._last_served)
            running_left = sum(self._images_left(j) for j in self._running_ids)
        for index, p in enumerate(ordered):
            if p.job_id == job_id:
                return index + 1, eta_seconds(index, ordered, running_left, self._spi)
        return -1, None

    def _images_left(self, job_id: int) -> float:
        job = self._active.get(job_id)
        if job is None:
            return 0.0
        step, total = self._progress.get(job_id, (0, 1))
        return job.params.count * (1 - step / max(1, total))

    def queue_snapshot(self) -> list[QueueEntry]:
        """Running jobs, then queued ones in the order they will run."""
        with self._cond:
            ordered = fair_order(list(self._pending.values()), self._last_served)
            entries = [QueueEntry(self._active[j], 0, *self._progress.get(j, (0, self._active[j].params.steps)))
                       for j in self._running_ids if j in self._active]
            entries += [QueueEntry(self._active[p.job_id], i + 1, 0, self._active[p.job_id].params.steps)
                        for i, p in enumerate(ordered)]
        return entries

    async def cancel(self, job_id: int, *, user_id: str | None = None) -> str:
        """Cancel a queued job, or a running one at its next step.

        ``user_id`` restricts it to the requester. Returns 'cancelled', 'not_found', 'not_owner'
        or 'finished'.
        """
        assert self.store is not None
        with self._cond:
            job = self._active.get(job_id)
            if job is None:
                stored = None
            elif user_id is not None and job.requester.user_id != str(user_id):
                return "not_owner"
            else:
                self._pending.pop(job_id, None)
                if job_id in self._running_ids:
                    self._cancelled.add(job_id)
                else:
                    self._active.pop(job_id, None)
        if job is None:
            stored = await asyncio.to_thread(self.store.get, job_id)
            if stored is None:
                return "not_found"
            if user_id is not None and stored.requester.user_id != str(user_id):
                return "not_owner"
            return "finished"
        changed = await asyncio.to_thread(self.store.set_cancelled, job_id)
        if not changed:
            return "finished"
        updated = await asyncio.to_thread(self.store.get, job_id)
        self._dispatch(JobEvent("cancelled", updated or job))
        return "cancelled"

    async def cancel_user(self, user_id: str) -> list[int]:
        """Cancel every queued job of a user; returns their ids."""
        with self._cond:
            ids = [p.job_id for p in self._pending.values() if p.user_id == str(user_id)]
        return [i for i in ids if await self.cancel(i, user_id=str(user_id)) == "cancelled"]

    # --- subscriptions, delivery, history ----------------------------------------------------

    def subscribe(self, job_id: int | None = None) -> EventStream:
        """Receive JobEvents: of one job, or of every job when ``job_id`` is None."""
        stream = EventStream(self, job_id)
        self._subscribers.add(stream)
        return stream

    def _dispatch(self, event: JobEvent) -> None:
        for stream in list(self._subscribers):
            if stream.job_id is None or stream.job_id == event.job.id:
                stream.queue.put_nowait(event)

    def _emit(self, event: JobEvent) -> None:
        """From the worker thread: hand an event to the loop without blocking either side."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._dispatch, event)
            except RuntimeError:  # loop closed during shutdown
                pass

    async def get_job(self, job_id: int) -> Job | None:
        """A job by id."""
        assert self.store is not None
        return await asyncio.to_thread(self.store.get, job_id)

    async def undelivered(self, source: str = "discord") -> list[Job]:
        """Finished jobs whose results the front door has not delivered yet."""
        assert self.store is not None
        return await asyncio.to_thread(self.store.undelivered, source)

    async def mark_delivered(self, job_id: int) -> None:
        """Record that the front door's delivery was accepted."""
        assert self.store is not None
        await asyncio.to_thread(self.store.set_delivered, job_id)

    async def update_delivery(self, job_id: int, delivery: dict[str, Any]) -> None:
        """Store new delivery facts for a job (message ids...)."""
        assert self.store is not None
        await asyncio.to_thread(self.store.update_delivery, job_id, delivery)

    async def history(self, **filters: Any) -> list[Job]:
        """Recent finished jobs (see JobStore.recent for filters)."""
        assert self.store is not None
        return await asyncio.to_thread(lambda: self.store.recent(**filters))  # type: ignore[union-attr]

    async def delete_job(self, job_id: int) -> Job | None:
        """Delete a finished job and its files."""
        assert self.store is not None
        if job_id in self._active:
            await self.cancel(job_id)  # never let the worker spend GPU time on a deleted job
        job = await asyncio.to_thread(self.store.delete_job, job_id)
        if job is not None:
            await asyncio.to_thread(_remove_files, job)
        return job

    def status(self) -> EngineStatus:
        """A snapshot for /status and the panel."""
        assert self.store is not None
        with self._cond:
            queued, running = len(self._pending), len(self._running_ids)
        hour_ago = time.time() - 3600
        with self._cond:
            while self._finished and self._finished[0] < hour_ago:
                self._finished.popleft()
            jobs_last_hour = len(self._finished)
        gpu = None
        if self.model is not None and self.model.choice.device.startswith("cuda"):
            import torch

            device = torch.device(self.model.choice.device)
            used = torch.cuda.memory_allocated(device) / 2**30
            total = torch.cuda.get_device_properties(device).total_memory / 2**30
            gpu = f"{used:.1f} GiB allocated of {total:.0f} GiB"
        return EngineStatus(
            model_id=self.settings.model_id, model_state=self.model_state, model_error=self.model_error,
            device=self.model.choice.device if self.model else None,
            dtype=self.model.choice.dtype_name if self.model else None,
            fast_available=bool(self.model and self.model.fast_adapter),
            queued=queued, running=running, jobs_last_hour=jobs_last_hour,
            seconds_per_image=self._spi,
            uptime_seconds=time.time() - self._started_at, gpu_memory=gpu,
            accelerations=tuple(self.model.accel.status_lines()) if self.model and self.model.accel else (),
        )

    # --- the worker thread -----------------------------------------------------------------------

    def _set_model_state(self, state: str, error: str | None = None) -> None:
        self.model_state = state
        self.model_error = error
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.model_ready.set)

    def _worker_main(self) -> None:
        try:
            self.model = self._loader(self.settings)
        except Exception as exc:  # the service stays up; jobs fail with the reason
            # a ModelLoadError says what to do; anything else is internal detail for the log only
            message = str(exc) if isinstance(exc, ModelLoadError) else (
                "the model failed to load because of an internal error; the operator's log has the details")
            if not isinstance(exc, ModelLoadError):
                log.exception("model load failed")
            log.error("model load failed: %s", message)
            self._set_model_state("failed", message)
            self._fail_all_pending(f"Image generation is unavailable: {message}")
            return
        # before the first job: a full collection of the model's objects would stall the event loop
        freeze_long_lived("model load")
        self._set_model_state("ready")
        while True:
            with self._cond:
                idle = not self._pending
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if idle and self.settings.batch_window > 0:
                    # the first job of a burst waits a moment for its companions, so a burst is batched
                    # from its first call instead of starting with a lone image
                    deadline = time.monotonic() + self.settings.batch_window
                    while not self._stopping and self._pending_images() < self.settings.max_batch:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                if self._stopping:
                    return
                ordered = fair_order(list(self._pending.values()), self._last_served)
                chosen = next_batch(ordered, self.settings.max_batch)
                for p in chosen:
                    del self._pending[p.job_id]
                    self._serve_counter += 1
                    self._last_served[p.user_id] = self._serve_counter
                self._running_ids = [p.job_id for p in chosen]
                jobs = [self._active[p.job_id] for p in chosen]
            try:
                self._run(jobs)
            except Exception:  # never let the worker die; each job already got its outcome
                log.exception("worker error on jobs %s", [j.id for j in jobs])
            finally:
                with self._cond:
                    for job in jobs:
                        self._active.pop(job.id, None)
                        self._progress.pop(job.id, None)
                        self._cancelled.discard(job.id)
                    self._running_ids = []

    def _pending_images(self) -> int:
        """Images waiting in the queue (call with the condition held)."""
        return sum(p.images for p in self._pending.values())

    def _fail_all_pending(self, message: str) -> None:
        assert self.store is not None
        with self._cond:
            jobs = [self._active[i] for i in self._pending]
            self._pending.clear()
            for job in jobs:
                self._active.pop(job.id, None)
        for job in jobs:
            if self.store.set_failed(job.id, message):
                self._emit(JobEvent("failed", self.store.get(job.id) or job))

    def _run(self, jobs: list[Job]) -> None:
        """Run one batch of compatible jobs, splitting it up if the GPU runs out of memory."""
        assert self.store is not None
        live = [j for j in jobs if j.id not in self._cancelled]
        if not live:
            return
        self.store.set_running([j.id for j in live])
        for job in live:
            self._emit(JobEvent("started", self.store.get(job.id) or job, 0, job.params.denoise_steps))
        try:
            if self.before_batch is not None:
                self.before_batch(live)
            self._generate(live)
        except Exception as exc:
            if _is_oom(exc) and len(live) > 1:
                log.warning("out of memory on a batch of %d jobs %s; retrying one at a time",
                            len(live), [j.id for j in live])
                _free_gpu_memory()
                for job in live:
                    self._run_single_after_oom(job)
                return
            self._fail(live, exc)

    def _run_single_after_oom(self, job: Job) -> None:
        try:
            if self.before_batch is not None:
                self.before_batch([job])
            self._generate([job])
        except Exception as exc:
            self._fail([job], exc)

    def _fail(self, jobs: list[Job], exc: Exception) -> None:
        assert self.store is not None
        if _is_oom(exc):
            _free_gpu_memory()
            p = jobs[0].params
            message = (f"The GPU ran out of memory for {p.width}x{p.height} with {p.count} image(s). "
                       f"Try a smaller size or fewer images.")
        elif isinstance(exc, GenerationInterrupted):
            return
        elif isinstance(exc, ModelLoadError) and jobs[0].params.fast:  # queued while loading, LoRA then failed
            message = "Fast mode is not available on this server (its LoRA could not be loaded); run without --fast."
        else:
            message = "Generation failed because of an internal error. The operator can find the details in the " \
                      "log under this job id."
        for job in jobs:
            log.error("job %s failed: %s", job.id, exc, exc_info=not _is_oom(exc))
            if self.store.set_failed(job.id, message):
                self._emit(JobEvent("failed", self.store.get(job.id) or job))

    def _generate(self, jobs: list[Job]) -> None:
        assert self.store is not None and self.model is not None
        first = jobs[0].params
        init_images: list[Any] | None = None
        if first.is_variation:
            jobs, init_images = self._variation_sources(jobs)
            if not jobs:
                return
        specs: list[ImageSpec] = []
        owners: list[Job] = []
        for job in jobs:
            for seed in job.params.seeds:
                specs.append(ImageSpec(job.params.prompt, job.params.negative_prompt, seed))
                owners.append(job)
        # the first image index of each job, for its preview
        first_index = {job.id: owners.index(job) for job in jobs}
        interval = self.settings.preview_interval
        last_preview = [0.0]

        def want_latents(step: int) -> bool:
            now = time.monotonic()
            if interval > 0 and now - last_preview[0] >= interval and step < first.denoise_steps:
                last_preview[0] = now
                return True
            return False

        def on_step(step: int, total: int, latents: Any) -> None:
            previews = latents_preview(latents) if latents is not None else None
            for job in jobs:
                if job.id in self._cancelled:
                    continue
                self._progress[job.id] = (step, total)
                preview = previews[first_index[job.id]] if previews else None
                self._emit(JobEvent("progress", job, step, total, preview))

        def should_stop() -> bool:
            # on shutdown the batch stops at its next step; its jobs stay "running" and rerun on restart
            return self._stopping or all(j.id in self._cancelled for j in jobs)

        started = time.perf_counter()
        images = run_batch(self.model, specs, width=first.width, height=first.height, steps=first.steps,
                           guidance=first.guidance, scheduler=first.scheduler, fast=first.fast,
                           on_step=on_step, should_stop=should_stop, want_latents=want_latents,
                           init_images=init_images, strength=first.vary_strength if init_images else 1.0)
        elapsed = time.perf_counter() - started
        per_image = elapsed / max(1, len(images))
        self._spi = per_image if self._spi is None else 0.7 * self._spi + 0.3 * per_image
        # encoding PNG + WebP costs a good part of a GPU image's time: a separate thread does it while
        # the worker starts the next batch
        cancelled = {j.id for j in jobs if j.id in self._cancelled}
        self._saver.submit(self._save_results, [j for j in jobs if j.id not in cancelled], images, owners,
                           per_image, first.denoise_steps)

    def _variation_sources(self, jobs: list[Job]) -> tuple[list[Job], list[Any]]:
        """The source image of each variation job (one per image); jobs whose source is gone fail."""
        assert self.store is not None
        from PIL import Image

        kept: list[Job] = []
        images: list[Any] = []
        for job in jobs:
            p = job.params
            assert p.vary_job is not None
            try:
                path = source_image_path(self.store.get(p.vary_job), p.vary_job, p.vary_image)
                with Image.open(path) as img:
                    source = img.convert("RGB")
            except (ParamError, OSError) as exc:  # deleted, or cleaned up, since the job was queued
                message = str(exc) if isinstance(exc, ParamError) else (
                    f"The source image of this variation (job {p.vary_job}) could not be read.")
                log.warning("job %s: %s", job.id, message)
                if self.store.set_failed(job.id, message):
                    self._emit(JobEvent("failed", self.store.get(job.id) or job))
                continue
            if source.size != (p.width, p.height):
                source = source.resize((p.width, p.height), Image.Resampling.LANCZOS)
            kept.append(job)
            images.extend([source] * p.count)
        return kept, images

    def _save_results(self, jobs: list[Job], images: list[Any], owners: list[Job], per_image: float,
                      steps: int) -> None:
        """On the saver thread: write each job's files, then mark it done (or failed) and tell subscribers."""
        out_dir = self.settings.results_dir / time.strftime("%Y-%m-%d")
        for job in jobs:
            try:
                self._save_one(job, [img for img, owner in zip(images, owners) if owner.id == job.id], out_dir,
                               per_image, steps)
            except Exception:  # the store itself failed: the row stays "running" and reruns on restart
                log.exception("job %s: could not record its result", job.id)

    def _save_one(self, job: Job, mine: list[Any], out_dir: Path, per_image: float, steps: int) -> None:
        assert self.store is not None
        written: list[str] = []
        try:
            for i, (img, seed) in enumerate(zip(mine, job.params.seeds)):
                written.append(str(save_result(img, out_dir, job.id, i, job.params, seed,
                                               self.settings.delivery_format, self.settings.delivery_quality)))
        except Exception as exc:
            log.error("job %s: saving failed: %s", job.id, exc, exc_info=not isinstance(exc, OSError))
            _remove_files(replace(job, results=tuple(written)))  # no half set of images stays behind
            message = _save_error(exc) if isinstance(exc, OSError) else \
                "The image could not be saved because of an internal error."
            if self.store.set_failed(job.id, message):
                self._emit(JobEvent("failed", self.store.get(job.id) or job))
            return
        if self.store.set_done(job.id, written, per_image * len(mine)):
            with self._cond:
                self._finished.append(time.time())
            self._emit(JobEvent("done", self.store.get(job.id) or job, steps, steps))
        else:  # cancelled while it was being saved
            _remove_files(replace(job, results=tuple(written)))


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


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _free_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # best effort only
        pass


def _save_error(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ENOSPC:
        return "The image could not be saved: the server's disk is full. The operator needs to free space."
    return "The image could not be saved because of a storage error on the server."


def _remove_files(job: Job) -> None:
    from engine.images import delivery_path

    for png in job.results:
        for path in {Path(png), delivery_path(png)}:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


__all__ = ["Engine", "EngineStatus", "EventStream", "QueueEntry", "GLOBAL", "default_loader"]
