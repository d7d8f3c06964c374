"""Results of GPU workers, taken in on the bot host: each message validated (a malformed one is terminated and
counted, never retried and never in the way of the others) and believed only with the job's token from its
batch (a forged one is terminated and counted), up to INTAKE_PARALLEL at once with each job's results one after
another, its images checked against the job (count, bytes, the PNG's declared size) before they are fetched
whole, the files written as the worker sent them (nothing decoded here), the job recorded through the ledger,
and only then acked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from engine.engine_settings import EngineSettings
from engine.jobs.ledger import JobLedger
from engine.jobs.queue import JobQueue
from engine.jobs.records import Job
from engine.jobs.store import JobStore
from engine.media.images import save_png_result, write_result_files
from engine.media.saving import remove_files, save_error
from engine.remote import wire
from engine.remote.nats_link import Link
from engine.remote.signing import Signer

log = logging.getLogger(__name__)

POLL_S = 1.0
INTAKE_PARALLEL = 8  # results taken in at once on the bot host (fetch, write, record), each on its own thread
RESULT_MAX_BYTES = 64 * 1024 * 1024  # one image file from a worker (a 2048² PNG is about 12 MB)


class BadResult(ValueError):
    """A signed result whose images do not match its job (a broken or hostile worker)."""


class ResultIntake:
    """The one reader of the results stream."""

    def __init__(self, settings: EngineSettings, store: JobStore, queue: JobQueue, ledger: JobLedger,
                 signer: Signer, *, refused: Callable[[str], None], finished: Callable[[int], None],
                 current: Callable[[int], str | None]) -> None:
        self.settings = settings
        self._store = store
        self._queue = queue
        self._ledger = ledger
        self._refused = refused  # counts a message not taken in, by reason
        self._finished = finished  # the dispatcher's bookkeeping of jobs out with workers
        self._signer = signer
        self._current = current  # the batch a job was last sent in (None: unknown, sent before a restart)
        self._link: Link | None = None
        self._intake_locks: dict[int, tuple[asyncio.Lock, int]] = {}  # job -> its lock, results waiting on it

    async def run(self, link: Link, stopping: Callable[[], bool]) -> None:
        """Take results in, up to INTAKE_PARALLEL at once (each job's one after another), acking each once stored."""
        assert link is not None
        self._link = link
        sub = await link.js.pull_subscribe_bind(durable=wire.RESULTS_CONSUMER, stream=link.names.results_stream)
        intake = asyncio.Semaphore(INTAKE_PARALLEL)
        taking: set[asyncio.Task[None]] = set()
        try:
            while not stopping():
                try:
                    msgs = await sub.fetch(INTAKE_PARALLEL, timeout=POLL_S)
                except asyncio.TimeoutError:
                    continue
                except Exception as exc:  # reconnecting
                    log.debug("results fetch: %s", exc)
                    await asyncio.sleep(POLL_S)
                    continue
                for msg in msgs:
                    await intake.acquire()
                    task = asyncio.create_task(self._take_in(msg))
                    taking.add(task)
                    task.add_done_callback(lambda t: (taking.discard(t), intake.release()))
        finally:
            await asyncio.gather(*taking, return_exceptions=True)

    async def _take_in(self, msg: Any) -> None:
        try:
            result = wire.ResultMessage.model_validate_json(msg.data)
        except ValueError as exc:  # never retried (it would fail the same way), never in the way of the others
            log.error("dropping a malformed result message on %s: %s", msg.subject, str(exc)[:300])
            self._refused("malformed")
            await msg.term()
            return
        if not self._signer.check(result.batch, result.job_id, result.token):
            log.error("dropping a result for job %s claiming batch %s from %r: not signed for that batch",
                      result.job_id, result.batch, result.worker)
            self._refused("forged")
            await msg.term()
            return
        lock, users = self._intake_locks.get(result.job_id, (asyncio.Lock(), 0))
        self._intake_locks[result.job_id] = (lock, users + 1)
        try:
            async with lock:  # a job's duplicate results (two tries) are taken in one after the other
                await self._on_result(result)
        finally:
            lock, users = self._intake_locks[result.job_id]
            if users == 1:
                del self._intake_locks[result.job_id]
            else:
                self._intake_locks[result.job_id] = (lock, users - 1)
        await msg.ack()

    async def _on_result(self, result: wire.ResultMessage) -> None:
        assert self._link is not None
        job = self._queue.get(result.job_id) or await asyncio.to_thread(self._store.get, result.job_id)
        current = self._current(result.job_id)
        if job is not None and result.state != "done" and current not in (None, result.batch):
            # a batch taken back past its deadline says it stopped or failed: the job's later batch decides
            log.info("job %s: ignoring the %s result of its earlier batch %s", job.id, result.state, result.batch)
            self._refused("stale")
            await self._delete(result)
            return
        if job is None or job.state in ("done", "failed", "cancelled") and not self._queue.is_active(job.id):
            log.warning("job %s: dropping a result from %s (try %d): the job is %s", result.job_id, result.worker,
                        result.attempt, job.state if job else "unknown here")
            self._refused("not_running")
        elif result.state == "done":
            await self._record_done(job, result)
        elif result.state == "failed":
            await asyncio.to_thread(self._ledger.fail, job, result.error or "Generation failed on a GPU worker.")
        await self._delete(result)
        self._finished(result.job_id)

    async def _delete(self, result: wire.ResultMessage) -> None:
        assert self._link is not None
        for name in (*result.images, *result.copies):
            try:
                await self._link.images.delete(name)
            except Exception:  # already gone (a duplicate result)
                pass

    async def _record_done(self, job: Job, result: wire.ResultMessage) -> None:
        assert self._link is not None
        if self.settings.safety_model_id and result.images and not result.safety:
            log.warning("job %s: worker %s sent no image safety scores, so its images count as flagged; set "
                        "SAFETY_MODEL_ID on every worker too", job.id, result.worker)
        try:
            pngs = [await self._fetch(name, job, png=True) for name in result.images]
            copies = [await self._fetch(name, job, png=False) for name in result.copies]
            if len(pngs) != job.params.count or (copies and len(copies) != len(pngs)):
                raise BadResult(f"{len(pngs)} image(s) and {len(copies)} copies for a job of {job.params.count}")
        except BadResult as exc:
            log.error("job %s: the result from %s does not match the job (%s)", job.id, result.worker, exc)
            self._refused("bad_images")
            await asyncio.to_thread(self._ledger.fail, job, "The GPU worker sent images that do not match this job. "
                                                            "Please try again; the operator was told in the logs.")
            return
        out_dir = self.settings.results_dir / time.strftime("%Y-%m-%d")
        fmt, quality = self.settings.delivery_format, self.settings.delivery_quality

        def save() -> None:
            if len(copies) == len(pngs) or fmt == "png":  # as the worker sent them: written, never decoded
                saved = [write_result_files(png, copies[i] if fmt != "png" else None, out_dir, job.id, i, fmt)
                         for i, png in enumerate(pngs)]
            else:  # an older worker sent PNGs only: the copies are made here
                saved = [save_png_result(png, out_dir, job.id, i, fmt, quality) for i, png in enumerate(pngs)]
            paths, delivered = [str(s.png) for s in saved], [str(s.delivery) for s in saved]
            if not self._ledger.finish(job, paths, result.gen_seconds, deliveries=delivered, safety=result.safety,
                                       counts_batch=True):
                remove_files([*paths, *delivered])  # cancelled meanwhile, or a duplicate

        try:
            await asyncio.to_thread(save)
        except OSError as exc:
            await asyncio.to_thread(self._ledger.fail, job, save_error(exc))
            return

    async def _fetch(self, name: str, job: Job, *, png: bool) -> bytes:
        """One image of a result, its size checked before it is read whole, and a PNG's declared width and height
        checked against the job's (a forged 12000² PNG costs nothing here)."""
        assert self._link is not None
        info = await self._link.images.get_info(name)
        if info.size is None or info.size > RESULT_MAX_BYTES:
            raise BadResult(f"{name} is {info.size} bytes")
        data = (await self._link.images.get(name)).data or b""
        if png:
            width, height = png_size(data)
            p = job.params
            if (width, height) != (p.width, p.height):
                raise BadResult(f"{name} is {width}x{height}")
        return data


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height from its header, without decoding it (0x0 when it is no PNG)."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return 0, 0
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
