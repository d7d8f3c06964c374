"""What GPU workers report besides results, checked before it is believed: heartbeats (their state, for the
dispatch window and /status), "taken" notices (a batch's deadline starts) and progress (steps and previews).

Every report is validated and bounded: a heartbeat must be under its own worker's key and within the message
model's limits, at most MAX_WORKERS of them are read; a taken notice or a progress message must carry the
token the bot host signed into the batch; a preview past PREVIEW_MAX_BYTES is refused. Refusals are counted
by reason (imagine_remote_messages_refused).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.js.errors import NoKeysError

from engine.jobs.events import EventBus
from engine.jobs.queue import JobQueue
from engine.jobs.records import JobEvent
from engine.remote import wire
from engine.remote.nats_link import Link
from engine.remote.signing import Signer

log = logging.getLogger(__name__)

POLL_S = 0.5


class WorkerReports:
    """The one reader of heartbeats, taken notices and progress; owns the view of the live workers."""

    def __init__(self, model_id: str, heartbeat_s: float, queue: JobQueue, events: EventBus, signer: Signer, *,
                 refused: Callable[[str], None], taken: Callable[[str, str], None]) -> None:
        self._model_id = model_id
        self._heartbeat_s = heartbeat_s
        self._queue = queue
        self._events = events  # progress only
        self._signer = signer
        self._refused = refused
        self._taken = taken  # (batch, worker): the dispatcher's flight starts its deadline
        self.workers: dict[str, wire.Heartbeat] = {}
        self._bad: dict[str, bytes] = {}  # keys refused, with the value refused: counted once, not at every read

    def live(self) -> list[wire.Heartbeat]:
        """Workers whose heartbeat is recent, by name."""
        limit = time.time() - self._heartbeat_s * wire.HEARTBEAT_MISSES
        return sorted((w for w in self.workers.values() if w.at >= limit), key=lambda w: w.name)

    async def subscribe(self, link: Link) -> None:
        """Listen to taken notices and progress (core NATS: losing one is harmless)."""
        await link.nc.subscribe(f"{link.names.prefix}.taken.*", cb=self._on_taken)
        await link.nc.subscribe(f"{link.names.prefix}.progress.*", cb=self._on_progress)

    async def _on_taken(self, msg: Any) -> None:
        batch = msg.subject.rsplit(".", 1)[1]
        token = (msg.headers or {}).get("token", "")
        if not self._signer.check(batch, "taken", token):
            self._refused("forged")
            return
        self._taken(batch, (msg.data or b"")[:128].decode(errors="replace"))

    async def _on_progress(self, msg: Any) -> None:
        headers = msg.headers or {}
        try:
            job_id = int(msg.subject.rsplit(".", 1)[1])
            step, total = int(headers["step"]), int(headers["total"])
            batch, token = headers["batch"], headers["token"]
        except (ValueError, KeyError, TypeError, IndexError):
            self._refused("malformed")
            return
        if not self._signer.check(batch, job_id, token):
            self._refused("forged")
            return
        if len(msg.data or b"") > wire.PREVIEW_MAX_BYTES:
            self._refused("oversized")
            return
        job = self._queue.get(job_id)
        if job is None or self._queue.is_cancelled(job_id):
            return
        self._queue.set_progress(job_id, step, total)
        self._events.publish(JobEvent("progress", job, step, total, msg.data or None))

    async def heartbeat_loop(self, link: Link, stopping: Callable[[], bool], changed: Callable[[], Any]) -> None:
        """Read the workers bucket every POLL_S; ``changed`` is awaited after each read."""
        kv = link.workers
        while not stopping():
            seen: dict[str, wire.Heartbeat] = {}
            try:
                for key in (await kv.keys())[:wire.MAX_WORKERS]:
                    entry = await kv.get(key)
                    beat = self._valid(key, entry.value)
                    if beat is not None and beat.model == self._model_id:
                        seen[key] = beat
            except NoKeysError:
                pass
            except Exception as exc:  # reconnecting; keep the last view until it goes stale
                log.debug("heartbeat read: %s", exc)
                seen = self.workers
            self.workers = seen
            await changed()
            await asyncio.sleep(POLL_S)

    def _valid(self, key: str, value: bytes | None) -> wire.Heartbeat | None:
        if not value or self._bad.get(key) == value:
            return None
        try:
            beat = wire.Heartbeat.model_validate_json(value)
        except ValueError:
            return self._refuse(key, value, "malformed")
        if beat.name != key:  # a worker speaks for itself only
            return self._refuse(key, value, "forged")
        self._bad.pop(key, None)
        return beat

    def _refuse(self, key: str, value: bytes, reason: str) -> None:
        if len(self._bad) >= wire.MAX_WORKERS:
            self._bad.clear()
        self._bad[key] = value
        log.warning("ignoring the heartbeat under key %r (%s)", key[:64], reason)
        self._refused(reason)
