"""The JobQueue alone, without threads: admission, fair batches, cancel, positions."""

from __future__ import annotations

import asyncio

import pytest

from engine.jobs.queue import JobQueue
from engine.jobs.records import Job, Refused, Requester
from engine.service import Engine
from tests.engine.helpers import WAIT, GatedLoader, params, wait_final, who


def job(job_id: int, user: str, *, count: int = 1, priority: int = 0, size: tuple[int, int] = (64, 64)) -> Job:
    """An active job as the store would return it."""
    return Job(id=job_id, state="queued", priority=priority, requester=Requester(user_id=user),
               params=params(count=count, size=size), created_at=0.0)


def test_next_batch_round_robins_users_and_marks_running() -> None:
    """Two users' jobs interleave; the batch is taken out of the queue and shown as running."""
    queue = JobQueue()
    for j in (job(1, "a"), job(2, "a"), job(3, "b")):
        queue.add(j)
    batch = queue.next_batch(2, timeout=0)
    assert [j.id for j in batch or []] == [1, 3]
    assert queue.counts() == (1, 2)
    assert queue.position(1, None) == (0, None)
    assert queue.position(2, 1.0)[0] == 1


def test_next_batch_times_out_empty_and_returns_none_when_closed() -> None:
    """An empty queue answers [] after the timeout, and None once closed."""
    queue = JobQueue()
    assert queue.next_batch(4, timeout=0) == []
    queue.close()
    assert queue.next_batch(4, timeout=0) is None


def test_admission_holds_a_place_until_released() -> None:
    """A held admission counts against the per-user cap; releasing it frees the place."""
    queue = JobQueue()
    held = queue.admit("a", per_user_cap=1, queue_cap=10)
    with pytest.raises(Refused) as info:
        queue.admit("a", per_user_cap=1, queue_cap=10)
    assert info.value.reason == "user_cap"
    held.release()
    queue.admit("a", per_user_cap=1, queue_cap=10)


def test_admission_turns_into_the_jobs_place() -> None:
    """Adding a job with its admission does not count the user twice."""
    queue = JobQueue()
    queue.add(job(1, "a"), queue.admit("a", per_user_cap=2, queue_cap=10))
    queue.admit("a", per_user_cap=2, queue_cap=10)  # one job + one new place = the cap


def test_full_queue_is_refused_but_operator_jobs_are_not_capped() -> None:
    """QUEUE_CAP refuses members; a place without a per-user cap (the operator) is always given."""
    queue = JobQueue()
    queue.add(job(1, "a"))
    with pytest.raises(Refused) as info:
        queue.admit("b", per_user_cap=4, queue_cap=1)
    assert info.value.reason == "queue_full"
    queue.admit("operator", per_user_cap=None, queue_cap=1)


def test_cancel_checks_the_owner_and_marks_running_jobs() -> None:
    """Only the requester may cancel; a running job is flagged for its batch, a queued one leaves."""
    queue = JobQueue()
    queue.add(job(1, "a"))
    queue.add(job(2, "a", size=(96, 64)))  # another batch key: stays queued
    queue.next_batch(4, timeout=0)
    assert queue.cancel(1, "b") == "not_owner"
    assert queue.cancel(1, "a") == "running" and queue.is_cancelled(1)
    assert queue.cancel(2, "a") == "queued" and not queue.is_active(2)
    assert queue.cancel(99) == "inactive"


def test_finish_removes_the_batch() -> None:
    """After finish, the batch's jobs are no longer active and nothing runs."""
    queue = JobQueue()
    queue.add(job(1, "a"))
    batch = queue.next_batch(4, timeout=0) or []
    queue.set_progress(1, 1, 2)
    queue.finish(batch)
    assert queue.snapshot() == [] and queue.counts() == (0, 0)


def test_drain_returns_only_queued_jobs() -> None:
    """drain() empties the waiting jobs and leaves a running batch alone."""
    queue = JobQueue()
    queue.add(job(1, "a"))
    queue.next_batch(1, timeout=0)
    queue.add(job(2, "b"))
    assert [j.id for j in queue.drain()] == [2]
    assert queue.is_active(1)


# --- position, ETA, snapshot ---------------------------------------------------------------------


async def test_positions_follow_fair_order(make_engine) -> None:
    """A second user's first job is placed before the first user's second job."""
    eng = await make_engine(loader=GatedLoader())
    a1 = await eng.submit(params(), who("alice"))
    a2 = await eng.submit(params(), who("alice"))
    b1 = await eng.submit(params(), who("bob"))
    assert (a1.position, a2.position, b1.position) == (1, 2, 2)
    assert eng.position(a2.job.id)[0] == 3
    assert [e.job.id for e in eng.queue_snapshot()] == [a1.job.id, b1.job.id, a2.job.id]


async def test_eta_unknown_before_first_image(make_engine) -> None:
    """Before anything was generated there is no speed measurement, so no ETA."""
    eng = await make_engine(loader=GatedLoader())
    sub = await eng.submit(params(), who("u1"))
    assert sub.eta_seconds is None


async def test_eta_grows_with_position_once_measured(make_engine) -> None:
    """After one image, waiting jobs get an ETA that grows with their place; the running job is at 0."""
    eng = await make_engine()
    await wait_final(eng, (await eng.submit(params(), who("u0"))).job.id)
    eng.before_batch.block()
    running = await eng.submit(params(), who("u1"))
    assert await asyncio.to_thread(eng.before_batch.entered.wait, WAIT)
    first = await eng.submit(params(size=(96, 64)), who("u2"))
    second = await eng.submit(params(size=(64, 96), count=2), who("u3"))
    eng.before_batch.release()
    assert eng.position(running.job.id) == (0, None)
    assert (first.position, second.position) == (1, 2)
    assert 0 < first.eta_seconds < second.eta_seconds


async def test_position_of_unknown_job(engine: Engine) -> None:
    """A job that is not active has position -1."""
    assert engine.position(12345) == (-1, None)


def test_all_positions_at_once_match_each_jobs_own() -> None:
    """The refresh's one-pass positions and ETAs are the ones each job's own lookup gives."""
    queue = JobQueue()
    for i, (user, count) in enumerate([("a", 1), ("a", 2), ("b", 4), ("c", 1), ("b", 1)], start=1):
        queue.add(job(i, user, count=count))
    queue.next_batch(1)  # one running: its images count towards every ETA
    everyone = queue.positions(2.0)
    assert everyone == {job_id: queue.position(job_id, 2.0) for job_id in everyone}
    assert sorted(p for p, _ in everyone.values()) == [1, 2, 3, 4]


def test_positions_and_etas_follow_the_fair_order_on_random_queues() -> None:
    """Each job's own position and ETA (read from the members' lanes, priorities first) are its place in the fair
    order and the images up to it, after jobs were taken, cancelled and added again."""
    import random

    from engine.jobs.scheduling import fair_order

    rng = random.Random(3)
    for _ in range(50):
        queue = JobQueue()
        for i in rng.sample(range(1, 5_000), rng.randrange(2, 40)):
            queue.add(job(i, f"u{rng.randrange(6)}", count=rng.randrange(1, 4), priority=rng.choice((0, 0, 5))))
        queue.next_batch(rng.randrange(1, 5))
        for victim in rng.sample(sorted(queue._pending), min(3, len(queue._pending) - 1)):
            queue.cancel(victim)
        ordered = fair_order(list(queue._pending.values()), queue._last_served)
        running = sum(queue._images_left(j) for j in queue._running)
        for index, p in enumerate(ordered):
            images = running + sum(q.images for q in ordered[:index + 1])
            assert queue.position(p.job_id, 2.0) == (index + 1, pytest.approx(2.0 * images))
        assert queue.positions(2.0) == {p.job_id: queue.position(p.job_id, 2.0) for p in ordered}


def test_the_per_user_cap_counts_without_walking_the_queue() -> None:
    """A member's active jobs are counted as they come and go (queued, running, finished, cancelled, drained), so
    admission reads one number instead of walking every active job."""
    queue = JobQueue()
    for i in range(1, 4):
        queue.add(job(i, "a"))
    queue.add(job(4, "b"))
    queue.next_batch(1)  # job 1 runs: still active
    queue.cancel(2)
    with pytest.raises(Refused, match="already have 2"):
        queue.admit("a", per_user_cap=2, queue_cap=100)
    queue.finish([job(1, "a")])
    queue.admit("a", per_user_cap=2, queue_cap=100).release()
    queue.drain()
    assert queue._per_user == {}


def test_jobs_for_a_loaded_model_go_first_at_most_model_patience_times() -> None:
    """A queue of one job needing "other" then five for "base" (loaded): three base batches go ahead of it (each
    would otherwise cost a load), then it runs."""
    from dataclasses import replace

    from engine.jobs.queue import MODEL_PATIENCE

    queue = JobQueue()
    first = job(1, "a")
    queue.add(replace(first, params=replace(first.params, model="other")))
    for i in range(2, 7):
        j = job(i, f"u{i}")
        queue.add(replace(j, params=replace(j.params, model="base")))
    order = []
    while queue.counts()[0]:
        [taken] = queue.next_batch(1, timeout=0, loaded={"base"})
        order.append(taken.id)
        queue.finish([taken])
    assert MODEL_PATIENCE == 3 and order == [2, 3, 4, 1, 5, 6]
