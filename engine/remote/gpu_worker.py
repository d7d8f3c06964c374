"""One GPU worker that takes batches from NATS JetStream (``python -m engine.worker`` runs it).

Start one per GPU (``DEVICE=cuda:N``) on this host or others, with the same NATS_URL and MODEL_ID
as the bot. A worker pulls one batch per free slot from the shared durable consumer, keeps the
message alive with in-progress acks while it generates, publishes progress over core NATS, puts
each image in the Object Store and one result message per job on the results stream, then acks.
If it dies, JetStream gives the batch to another worker after NATS_ACK_WAIT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats.errors

from engine.engine_settings import EngineSettings, SettingsError, load_engine_settings
from engine.gpu.generation import BatchResult, fit_source, generate
from engine.gpu.local_worker import ModelLoader, default_loader
from engine.gpu.model import LoadedModel, ModelLoadError
from engine.gpu.pipeline import GenerationInterrupted
from engine.gpu.safety import scored
from engine.gpu.upscale import upscale_batch
from engine.jobs.records import Job, Requester
from engine.media.images import encode, png_metadata
from engine.ops.logs import setup_logging
from engine.remote import wire
from engine.remote.nats_link import Link, connect, publish, retry, safe_url, workers_consumer_config
from engine.requests.params import GenerationParams

log = logging.getLogger(__name__)


class GpuWorker:
    """The model on one device, serving the jobs stream of its MODEL_ID."""

    def __init__(self, settings: EngineSettings, *, loader: ModelLoader | None = None) -> None:
        self.settings = settings
        self.remote = settings.remote
        self.name = self.remote.worker_name or f"{socket.gethostname()}-{settings.device.replace(':', '')}"
        self._loader = loader or default_loader
        self.model: LoadedModel | None = None
        self.state = "loading"
        self.error: str | None = None
        self.busy = 0
        self.stopping = False
        self.cancelled: set[int] = set()
        self._spi: float | None = None
        self._gpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu")  # one pipeline call at a time
        self._link: Link | None = None

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set; returns the exit code."""
        url = safe_url(self.remote.nats_url)
        try:
            self._link = link = await retry(lambda: connect(self.remote, name=f"imagine worker {self.name}"),
                                            f"connecting to NATS at {url}", stop.is_set)
        except (OSError, asyncio.TimeoutError, nats.errors.Error):
            return 0  # stopped while waiting for the server
        log.info("worker %s connected to NATS at %s; loading %s", self.name, url, self.settings.model_id)
        beat = asyncio.create_task(self._heartbeats(), name="heartbeat")
        try:
            try:
                self.model = await asyncio.get_running_loop().run_in_executor(self._gpu, self._loader, self.settings)
                self.state = "ready"
            except ModelLoadError as exc:
                self.state, self.error = "failed", str(exc)
                log.error("model load failed: %s", exc)
                await stop.wait()  # stay visible (heartbeat says why) instead of restarting in a loop
                return 1
            log.info("worker %s ready on %s (%s)", self.name, self.model.choice.device, self.model.choice.dtype_name)
            await link.nc.subscribe(wire.CANCEL_SUBJECT, cb=self._on_cancel)
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

    async def _serve(self, link: Link, stop: asyncio.Event) -> None:
        sub = await link.js.pull_subscribe(wire.jobs_subject(self.settings.model_id),
                                           durable=wire.workers_consumer(self.settings.model_id),
                                           stream=wire.JOBS_STREAM,
                                           config=workers_consumer_config(self.remote, self.settings.model_id))
        slots = asyncio.Semaphore(self.remote.worker_slots)
        running: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            await slots.acquire()
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except Exception:  # nothing waiting, or NATS reconnecting: ask again
                slots.release()
                continue
            task = asyncio.create_task(self._handle(link, msgs[0]))
            running.add(task)
            task.add_done_callback(lambda t: (running.discard(t), slots.release()))
        self.stopping = True  # a running batch stops at its next step and goes back to the queue
        await asyncio.gather(*running, return_exceptions=True)

    async def _on_cancel(self, msg: Any) -> None:
        try:
            self.cancelled.add(int(msg.data))
        except ValueError:
            pass

    async def _heartbeats(self) -> None:
        assert self._link is not None
        while True:
            model = self.model
            beat = wire.Heartbeat(name=self.name, device=model.choice.device if model else self.settings.device,
                                  dtype=model.choice.dtype_name if model else "", model=self.settings.model_id,
                                  state=self.state, error=self.error, slots=self.remote.worker_slots, busy=self.busy,
                                  fast=bool(model and model.fast_adapter), seconds_per_image=self._spi, at=time.time())
            try:
                await self._link.workers.put(self.name, beat.model_dump_json().encode())
            except Exception as exc:  # NATS down: the next beat tries again
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(self.remote.worker_heartbeat)

    async def _handle(self, link: Link, msg: Any) -> None:
        """Run one batch message to its results; nak it (back to the queue) when this worker cannot."""
        attempt = int(msg.metadata.num_delivered)
        try:
            batch = wire.BatchMessage.model_validate_json(msg.data)
        except ValueError as exc:
            log.error("dropping a malformed batch message: %s", exc)
            await msg.term()
            return
        keepalive = asyncio.create_task(self._keep_alive(msg))
        self.busy += 1
        try:
            jobs = [Job(id=w.id, state="running", priority=0, requester=Requester(user_id=""),
                        params=GenerationParams.from_dict(w.params), created_at=0.0) for w in batch.jobs]
            sources = await self._sources(link, batch)
            result = await self._generate(jobs, sources)
        except GenerationInterrupted:
            if self.stopping:
                await msg.nak()  # shutting down: another worker takes the batch now
                return
            result = BatchResult({}, 0.0)  # every job was cancelled
        except Exception as exc:
            log.error("batch %s failed on try %d: %s", batch.batch, attempt, exc, exc_info=True)
            await msg.nak(delay=1)  # another try (maybe elsewhere); after NATS_MAX_DELIVER it is set aside
            return
        finally:
            keepalive.cancel()
            self.busy -= 1
        if result.seconds_per_image:
            spi = result.seconds_per_image
            self._spi = spi if self._spi is None else 0.7 * self._spi + 0.3 * spi
        for job in jobs:
            await self._publish_result(link, batch.batch, attempt, job, result)
        await msg.ack()

    async def _keep_alive(self, msg: Any) -> None:
        while True:
            await asyncio.sleep(self.remote.nats_ack_wait / 3)
            try:
                await msg.in_progress()
            except Exception as exc:  # reconnecting; the next one may get through before AckWait
                log.debug("in-progress ack failed: %s", exc)

    async def _sources(self, link: Link, batch: wire.BatchMessage) -> dict[int, Any] | None:
        from io import BytesIO

        from PIL import Image

        sources: dict[int, Any] = {}
        for w in batch.jobs:
            if w.source:
                data = (await link.images.get(w.source)).data
                with Image.open(BytesIO(data)) as img:
                    sources[w.id] = fit_source(img, int(w.params["width"]), int(w.params["height"]))
        return sources or None

    async def _generate(self, jobs: list[Job], sources: dict[int, Any] | None) -> BatchResult:
        assert self.model is not None and self._link is not None
        loop = asyncio.get_running_loop()
        nc = self._link.nc

        def on_progress(job: Job, step: int, total: int, preview: bytes | None) -> None:
            headers = {"step": str(step), "total": str(total)}
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(
                nc.publish(wire.progress_subject(job.id), preview or b"", headers=headers)))

        model, settings = self.model, self.settings

        def run() -> BatchResult:
            if jobs[0].params.upscale > 1:  # U buttons: 2x in tiles (engine/gpu/upscale.py)
                assert sources is not None
                result = upscale_batch(model, jobs, sources, tile=settings.upscale_tile, chunk=settings.max_batch,
                                       on_progress=on_progress, is_cancelled=self.cancelled.__contains__,
                                       stopping=lambda: self.stopping)
            else:
                result = generate(model, jobs, preview_interval=settings.preview_interval, on_progress=on_progress,
                                  is_cancelled=self.cancelled.__contains__, stopping=lambda: self.stopping,
                                  sources=sources)
            return scored(result, model.safety)  # on the GPU, before the images leave the worker

        return await loop.run_in_executor(self._gpu, run)

    async def _publish_result(self, link: Link, batch: str, attempt: int, job: Job, result: BatchResult) -> None:
        images = result.images.get(job.id)
        names: list[str] = []
        if images is not None:
            for index, (image, seed) in enumerate(zip(images, job.params.seeds)):
                data = await asyncio.to_thread(encode, image, "png", 90, png_metadata(job.params, seed, job.id))
                name = wire.result_object(job.id, attempt, index)
                await link.images.put(name, data)
                names.append(name)
        message = wire.ResultMessage(job_id=job.id, batch=batch, worker=self.name, attempt=attempt,
                                     state="done" if images is not None else "cancelled", images=names,
                                     gen_seconds=result.seconds_per_image * len(names),
                                     safety=list(result.scores.get(job.id, ())))
        await publish(link.js, f"{wire.RESULTS_SUBJECT}.{job.id}", message.model_dump_json().encode(),
                      msg_id=f"result-{job.id}-{attempt}")
        self.cancelled.discard(job.id)


def main(argv: list[str] | None = None) -> int:
    """Entry point: settings from the environment and .env, logs to stderr, stop on SIGINT/SIGTERM."""
    try:
        settings = load_engine_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    remote = settings.remote
    setup_logging([s.get_secret_value() for s in (remote.nats_password, remote.nats_token) if s is not None],
                  fmt=settings.log_format, level=settings.log_level)
    if not settings.remote.enabled:
        print("error: NATS_URL is not set; a worker takes its jobs from a NATS server (see the README, "
              "\"Several GPUs\")", file=sys.stderr)
        return 2
    return asyncio.run(_run(GpuWorker(settings)))


async def _run(worker: GpuWorker) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await worker.run(stop)
