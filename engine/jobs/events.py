"""The event bus: JobEvents from the engine to whoever subscribed (the bot's delivery, the panel).

Events are dispatched on the event loop. Worker and saver threads publish with
``publish_threadsafe``, which hands the event to the loop without blocking either side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from engine.jobs.records import JobEvent
from engine.ops.logs import job_fields

log = logging.getLogger(__name__)


class EventStream:
    """An async iterator of JobEvents for one subscriber; close it when done."""

    def __init__(self, bus: EventBus, job_id: int | None) -> None:
        self._bus = bus
        self.job_id = job_id
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JobEvent]:
        while True:
            yield await self._queue.get()

    async def next(self, timeout: float | None = None) -> JobEvent:
        """The next event (raises TimeoutError after ``timeout`` seconds)."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def close(self) -> None:
        """Stop receiving events."""
        self._bus.unsubscribe(self)

    def _put(self, event: JobEvent) -> None:
        self._queue.put_nowait(event)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of JobEvents to subscribers of one job or of every job."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[EventStream] = set()
        self._listeners: list[Callable[[JobEvent], None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that events are dispatched on (the engine's, set at start)."""
        self._loop = loop

    def subscribe(self, job_id: int | None = None) -> EventStream:
        """A stream of the events of one job, or of every job when ``job_id`` is None."""
        stream = EventStream(self, job_id)
        self._subscribers.add(stream)
        return stream

    def listen(self, callback: Callable[[JobEvent], None]) -> None:
        """Call ``callback`` with every event, on the loop, before the streams get it (engine-internal
        observers such as the quota ledger; it must not block)."""
        self._listeners.append(callback)

    def unsubscribe(self, stream: EventStream) -> None:
        """Stop sending events to ``stream``."""
        self._subscribers.discard(stream)

    def publish(self, event: JobEvent) -> None:
        """Dispatch an event now (call on the event loop); every change of state is logged once, here."""
        if event.kind != "progress":
            log.info("job %s %s", event.job.id, event.kind, extra=job_fields(event.job, event.kind))
        for callback in self._listeners:
            callback(event)
        for stream in list(self._subscribers):
            if stream.job_id is None or stream.job_id == event.job.id:
                stream._put(event)

    def publish_threadsafe(self, event: JobEvent) -> None:
        """From any thread: dispatch an event on the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.publish, event)
            except RuntimeError:  # loop closed during shutdown
                pass
