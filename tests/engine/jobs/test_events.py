"""The event bus: per-job and all-job subscribers, and publishing from another thread."""

from __future__ import annotations

import asyncio
import threading

from engine.jobs.events import EventBus
from engine.jobs.records import Job, JobEvent, Requester
from tests.engine.helpers import params


def event(job_id: int, kind: str = "progress") -> JobEvent:
    job = Job(id=job_id, state="running", priority=0, requester=Requester(user_id="u"), params=params(),
              created_at=0.0)
    return JobEvent(kind, job)  # type: ignore[arg-type]


async def test_a_job_stream_gets_only_its_job() -> None:
    """A stream for job 1 sees job 1's events and not job 2's; an all-jobs stream sees both."""
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    one, every = bus.subscribe(1), bus.subscribe(None)
    bus.publish(event(2))
    bus.publish(event(1))
    assert (await one.next(1)).job.id == 1
    assert [(await every.next(1)).job.id for _ in range(2)] == [2, 1]


async def test_publish_threadsafe_reaches_the_loop() -> None:
    """An event published from a worker thread arrives on the loop."""
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    with bus.subscribe(7) as stream:
        threading.Thread(target=bus.publish_threadsafe, args=(event(7, "done"),)).start()
        assert (await stream.next(5)).kind == "done"


async def test_closed_stream_receives_nothing() -> None:
    """After close, a stream is no longer fed."""
    bus = EventBus()
    stream = bus.subscribe(None)
    stream.close()
    bus.publish(event(1))
    assert stream._queue.empty()
