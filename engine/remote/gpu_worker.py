"""One GPU worker that takes batches from NATS JetStream (``python -m engine.worker`` runs it).

Start one per GPU (``DEVICE=cuda:N``) on this host or others, with the same NATS_URL, NATS_PREFIX and
MODEL_ID as the bot. A worker binds to what the bot declared, pulls one batch per free slot from the shared
durable consumer, says it took it, keeps the message alive with in-progress acks only while its work moves
(a hung GPU stops them), publishes progress over core NATS, puts each image in the Object Store and one
result message per job on the results stream, then acks. Every report names the job's token from the batch.
If it dies or hangs, JetStream gives the batch to another worker after NATS_ACK_WAIT.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import io
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats.errors

from engine.engine_settings import EngineSettings, SettingsError, load_engine_settings
from engine.gpu.batch_runner import BatchRun, BatchRunner, JobOutcome
from engine.gpu.local_worker import ModelLoader, default_loader
from engine.gpu.model import LoadedModel, ModelLoadError
from engine.gpu.model_pool import ModelPool
from engine.gpu.pipeline import GenerationInterrupted
from engine.jobs.records import Job, Requester
from engine.media.images import encode, png_metadata
from engine.ops.logs import setup_logging
from engine.remote import wire
from engine.remote.nats_link import Link, connect, publish, retry, safe_url, warn_unencrypted
from engine.requests.models import Offer, offered_models
from engine.requests.params import GenerationParams, ParamError

log = logging.getLogger(__name__)

ENCODE_THREADS = max(2, min(8, os.cpu_count() or 2))


class GpuWorker:
    """The model on one device, serving the jobs stream of its MODEL_ID."""

    def __init__(self, settings: EngineSettings, *, loader: ModelLoader | None = None) -> None:
        self.settings = settings
        self.remote = settings.remote
        self.name = self.remote.worker_name or f"{socket.gethostname()}-{settings.device.replace(':', '')}"
        self._loader = loader or default_loader
        self.pool: ModelPool | None = None  # once the default model is loaded
        self.state = "loading"
        self.error: str | None = None
        self.busy = 0
        self.stopping = False
        self.cancelled: set[int] = set()
        self._tokens: dict[int, str] = {}  # job -> its token, for the jobs this worker holds
        self._moved: dict[str, int] = {}  # batch -> a counter its work moves (steps, sources, images)
        self._spi: float | None = None
        self._gpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu")  # one pipeline call at a time
        self._runner: BatchRunner | None = None
        # the images of finished batches are encoded here while the GPU runs the next one
        self._encoders = ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="encode")
        self._sending = asyncio.Semaphore(max(1, self.remote.worker_slots))  # batches whose results are being sent
        # the models it serves, by source: the NATS consumer of each (engine/remote/dispatch.py routes by model)
        self._known = Offer(offered_models(settings.models, settings.model_id), settings.loras)
        self._sources = sorted({e.source for e in self._known.models})
        self._link: Link | None = None

    @property
    def model(self) -> LoadedModel | None:
        """The default model (None while loading or after a failure)."""
        return self.pool.default if self.pool is not None else None

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set; returns the exit code."""
        url = safe_url(self.remote.nats_url)
        try:
            self._link = link = await retry(
                lambda: connect(self.remote, f"imagine worker {self.name}", self._sources, declare=False),
                f"connecting to NATS at {url} (and finding the bot host's streams)", stop.is_set)
        except (OSError, asyncio.TimeoutError, nats.errors.Error):
            return 0  # stopped while waiting for the server
        log.info("worker %s connected to NATS at %s; loading %s", self.name, url, self.settings.model_id)
        warn_unencrypted(self.remote)
        beat = asyncio.create_task(self._heartbeats(), name="heartbeat")
        try:
            try:
                # the models and LoRAs of its .env, then as batches carry them from the bot host's catalogue
                pool = ModelPool(self.settings, self._loader, lambda: self._known)
                await asyncio.get_running_loop().run_in_executor(self._gpu, pool.load_default)
                self.pool = pool
                self._runner = BatchRunner(pool, self.settings, is_cancelled=self.cancelled.__contains__,
                                           stopping=lambda: self.stopping)
                self.state = "ready"
            except ModelLoadError as exc:
                self.state, self.error = "failed", str(exc)
                log.error("model load failed: %s", exc)
                await stop.wait()  # stay visible (heartbeat says why) instead of restarting in a loop
                return 1
            choice = pool.default.choice
            log.info("worker %s ready on %s (%s)", self.name, choice.device, choice.dtype_name)
            await link.nc.subscribe(link.names.cancel_subject, cb=self._on_cancel)
            await self._serve(link, stop)
            return 0
        finally:
            self.stopping = True
            beat.cancel()
            try:
                await link.workers.delete(self.name)  # gone at once from /status, not after the TTL
            except Exception:  # the server may be down; the entry then expires by itself
                pass
            await link.close()
            self._gpu.shutdown(wait=False)
            self._encoders.shutdown(wait=False)

    async def _serve(self, link: Link, stop: asyncio.Event) -> None:
        names = link.names
        # bound, not declared: the bot host owns the consumers and their settings (NATS_ACK_WAIT, NATS_MAX_DELIVER);
        # one per model this worker serves (its MODELS), so it takes only batches it can run
        subs = [await link.js.pull_subscribe_bind(durable=names.workers_consumer(source), stream=names.jobs_stream)
                for source in self._sources]
        slots = asyncio.Semaphore(self.remote.worker_slots)
        running: set[asyncio.Task[None]] = set()
        turn = 0
        while not stop.is_set():
            await slots.acquire()
            sub, turn = subs[turn % len(subs)], turn + 1  # the models take turns; an idle one costs a short wait
            try:
                msgs = await sub.fetch(1, timeout=1.0 / len(subs))
            except asyncio.TimeoutError:  # nothing waiting: ask again
                slots.release()
                continue
            except Exception as exc:  # reconnecting, or the consumer is gone until the bot declares it again
                slots.release()
                log.debug("fetch: %s", exc)
                await asyncio.sleep(1.0)  # never a busy loop
                continue
            free = _once(slots.release)  # early, when the pipeline returns; at the latest when the task ends
            task = asyncio.create_task(self._handle(link, msgs[0], free))
            running.add(task)
            task.add_done_callback(lambda t, free=free: (running.discard(t), free()))
        self.stopping = True  # a running batch stops at its next step and goes back to the queue
        await asyncio.gather(*running, return_exceptions=True)

    async def _on_cancel(self, msg: Any) -> None:
        """A cancel counts only with the job's token: the bot's, for a job this worker holds."""
        try:
            cancel = wire.CancelMessage.model_validate_json(msg.data)
        except ValueError:
            return
        token = self._tokens.get(cancel.job_id)
        if token is not None and hmac.compare_digest(token, cancel.token):
            self.cancelled.add(cancel.job_id)
        else:
            log.warning("ignoring a cancel of job %s without its token", cancel.job_id)

    async def _heartbeats(self) -> None:
        assert self._link is not None
        interval = self.remote.worker_heartbeat
        try:  # the bucket's TTL is the bot host's WORKER_HEARTBEAT: beat often enough for it, whatever ours says
            ttl = (await self._link.workers.status()).ttl
            if ttl and ttl / wire.HEARTBEAT_MISSES < interval:
                log.warning("WORKER_HEARTBEAT=%s here is longer than the bot host's (%s s); beating every %s s",
                            interval, ttl / wire.HEARTBEAT_MISSES, ttl / wire.HEARTBEAT_MISSES)
                interval = ttl / wire.HEARTBEAT_MISSES
        except Exception as exc:  # reading the bucket's settings is best effort
            log.debug("heartbeat bucket status: %s", exc)
        while True:
            model = self.model
            beat = wire.Heartbeat(name=self.name, device=model.choice.device if model else self.settings.device,
                                  dtype=model.choice.dtype_name if model else "", model=self.settings.model_id,
                                  state=self.state, error=self.error, slots=self.remote.worker_slots, busy=self.busy,
                                  fast=bool(model and model.fast_adapter), seconds_per_image=self._spi, at=time.time(),
                                  models=tuple(self._runner.pool.loaded) if self._runner is not None else ())
            try:
                await self._link.workers.put(self.name, beat.model_dump_json().encode())
            except Exception as exc:  # NATS down: the next beat tries again
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(interval)

    async def _handle(self, link: Link, msg: Any, free_gpu: Callable[[], None]) -> None:
        """Run one batch message to its results; nak it (back to the queue) when this worker cannot.

        ``free_gpu`` gives the GPU slot back as soon as the pipeline returned: the next batch starts while this
        one's images are encoded and sent (at most WORKER_SLOTS batches wait to be sent).
        """
        attempt = int(msg.metadata.num_delivered)
        try:
            batch = wire.BatchMessage.model_validate_json(msg.data)
        except ValueError as exc:
            log.error("dropping a malformed batch message: %s", exc)
            await msg.term()
            return
        self._known = wire.learned(self._known, batch.entries, self._sources)
        self._moved[batch.batch] = 0
        for w in batch.jobs:  # a job sent again (past its deadline) starts afresh: an old cancel is not for it
            self._tokens[w.id] = w.token
            self.cancelled.discard(w.id)
        await link.nc.publish(link.names.taken_subject(batch.batch), self.name.encode(),
                              headers={"token": batch.taken_token})
        keepalive = asyncio.create_task(self._keep_alive(msg, batch.batch))
        try:
            try:
                run = await self._run(link, batch)
            except GenerationInterrupted:  # shutting down: another worker takes the batch now
                free_gpu()
                await msg.nak()
                return
            except Exception as exc:  # a source that did not arrive, NATS trouble: another try, maybe elsewhere
                free_gpu()
                log.error("batch %s failed on try %d: %s", batch.batch, attempt, exc, exc_info=True)
                await msg.nak(delay=1)
                return
            async with self._sending:  # past WORKER_SLOTS batches waiting to be sent, the GPU waits for one
                free_gpu()
                if any(o.retry for o in run.outcomes):  # unexpected: after NATS_MAX_DELIVER tries it is set aside
                    log.error("batch %s failed on try %d; handing it back", batch.batch, attempt)
                    await msg.nak(delay=1)
                    return
                if run.seconds_per_image:
                    spi = run.seconds_per_image
                    self._spi = spi if self._spi is None else 0.7 * self._spi + 0.3 * spi
                await asyncio.gather(*(self._publish_result(link, batch, attempt, o) for o in run.outcomes))
            await msg.ack()
        finally:
            keepalive.cancel()
            self._moved.pop(batch.batch, None)
            for w in batch.jobs:
                if self._tokens.get(w.id) == w.token:  # not a later batch's token for the same job
                    del self._tokens[w.id]

    def _move(self, batch: str) -> None:
        """The batch's work moved (a step, a source fetched, an image sent): called from any thread."""
        self._moved[batch] = self._moved.get(batch, 0) + 1

    async def _keep_alive(self, msg: Any, batch: str) -> None:
        """In-progress acks while the work moves: a GPU thread that hangs stops them, and the server gives the batch
        to another worker after NATS_ACK_WAIT."""
        seen, still = -1, 0
        while True:
            await asyncio.sleep(self.remote.nats_ack_wait / 3)
            moved = self._moved.get(batch, 0)
            if moved == seen:
                still += 1
                if still == 2:  # once per stall: the server hands the batch on at NATS_ACK_WAIT
                    log.warning("batch %s has not moved for %.0f s; it goes to another worker at NATS_ACK_WAIT=%s",
                                batch, 2 * self.remote.nats_ack_wait / 3, self.remote.nats_ack_wait)
                continue
            seen, still = moved, 0
            try:
                await msg.in_progress()
            except Exception as exc:  # reconnecting; the next one may get through before AckWait
                log.debug("in-progress ack failed: %s", exc)

    async def _run(self, link: Link, batch: wire.BatchMessage) -> BatchRun:
        """The batch through the runtime the in-process worker runs too (engine/gpu/batch_runner.py)."""
        assert self.model is not None and self._runner is not None
        jobs = [Job(id=w.id, state="running", priority=0, requester=Requester(user_id=""),
                    params=GenerationParams.from_dict(w.params), created_at=0.0) for w in batch.jobs]
        sources: dict[int, bytes | None] = {}
        for w in batch.jobs:
            if w.source:
                sources[w.id] = (await link.images.get(w.source)).data
                self._move(batch.batch)
        loop = asyncio.get_running_loop()
        nc, names, tokens = link.nc, link.names, {w.id: w.token for w in batch.jobs}

        def on_progress(job: Job, step: int, total: int, preview: bytes | None) -> None:
            self._move(batch.batch)
            headers = {"step": str(step), "total": str(total), "batch": batch.batch, "token": tokens[job.id]}
            data = preview if preview and len(preview) <= wire.PREVIEW_MAX_BYTES else b""
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(
                nc.publish(names.progress_subject(job.id), data, headers=headers)))

        def open_source(job: Job) -> Any:
            from PIL import Image

            data = sources.get(job.id)
            if not data:
                raise ParamError("The image this job starts from did not reach the GPU worker.")
            return Image.open(io.BytesIO(data))

        runner = self._runner
        self.busy += 1
        try:
            thresholds = {w.id: w.picture_threshold for w in batch.jobs}
            return await loop.run_in_executor(self._gpu, runner.run, jobs, open_source, on_progress,
                                              lambda job: thresholds.get(job.id))
        finally:
            self.busy -= 1

    async def _publish_result(self, link: Link, batch: wire.BatchMessage, attempt: int, outcome: JobOutcome) -> None:
        """Send one job's outcome: its images in the form the bot host stores (PNG original and delivery copy,
        encoded in parallel off the event loop), then the result message."""
        job, fmt = outcome.job, batch.delivery_format
        names: list[str] = []
        copies: list[str] = []
        if outcome.images is not None:
            loop = asyncio.get_running_loop()
            encoded = await asyncio.gather(*(
                loop.run_in_executor(self._encoders, encode, image, kind, batch.delivery_quality,
                                     png_metadata(job.params, seed, job.id) if kind == "png" else None)
                for image, seed in zip(outcome.images, job.params.seeds)
                for kind in (("png",) if fmt == "png" else ("png", fmt))))
            per_image = 1 if fmt == "png" else 2
            for index in range(len(outcome.images)):
                png = encoded[index * per_image]
                names.append(wire.result_object(batch.batch, job.id, attempt, index))
                await link.images.put(names[-1], png)
                self._move(batch.batch)
                if per_image == 2:
                    copies.append(wire.copy_object(batch.batch, job.id, attempt, index, fmt))
                    await link.images.put(copies[-1], encoded[index * per_image + 1])
        message = wire.ResultMessage(job_id=job.id, batch=batch.batch, worker=self.name, attempt=attempt,
                                     state=outcome.state, images=names, copies=copies,  # type: ignore[arg-type]
                                     gen_seconds=outcome.gen_seconds, error=outcome.error,
                                     safety=list(outcome.scores),
                                     token=next((w.token for w in batch.jobs if w.id == job.id), ""))
        await publish(link.js, f"{link.names.results_subject}.{job.id}", message.model_dump_json().encode(),
                      msg_id=f"result-{wire.result_id(batch.batch, job.id, attempt)}")
        self.cancelled.discard(job.id)


def _once(release: Callable[[], None]) -> Callable[[], None]:
    """``release``, callable any number of times, acting only the first."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            release()

    return once


def main(argv: list[str] | None = None) -> int:
    """Entry point: settings from the environment and .env, logs to stderr, stop on SIGINT/SIGTERM."""
    argparse.ArgumentParser(prog="python -m engine.worker", description=(
        "One GPU worker: takes batches from NATS_URL for MODEL_ID on DEVICE. Every setting comes from the "
        "environment and .env (docs/several-gpus.md).")).parse_args(argv)
    try:
        settings = load_engine_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    remote = settings.remote
    setup_logging([s.get_secret_value() for s in (remote.nats_password, remote.nats_token) if s is not None],
                  fmt=settings.log_format, level=settings.log_level)
    if not settings.remote.enabled:
        print("error: NATS_URL is not set; a worker takes its jobs from a NATS server (see "
              "docs/several-gpus.md)", file=sys.stderr)
        return 2
    return asyncio.run(_run(GpuWorker(settings)))


async def _run(worker: GpuWorker) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await worker.run(stop)
