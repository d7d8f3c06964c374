"""Result retention by age and size; undelivered results are never removed."""

from __future__ import annotations

import time
from pathlib import Path

from engine.jobs import Requester
from engine.params import ParamRequest


async def _done_job(engine, source: str = "admin"):
    params = engine.resolve(ParamRequest(prompt="a fox", seed=1))
    requester = Requester(user_id="u1", source=source, delivery={"token": "t"} if source == "discord" else {})
    # subscribe before submitting, so the "done" event cannot be missed
    with engine.subscribe() as stream:
        sub = await engine.submit(params, requester)
        while True:
            event = await stream.next(30)
            if event.job.id == sub.job.id and event.kind == "done":
                break
    return await engine.get_job(sub.job.id)


async def test_old_delivered_results_are_removed_by_age(make_settings):
    """Results older than RETENTION_DAYS lose their files (a panel job needs no delivery); the row stays."""
    from engine.service import Engine

    async with Engine(make_settings(retention_days=1)) as engine:
        await engine.wait_ready(60)
        job = await _done_job(engine)
        from engine.retention import run_cleanup

        report = run_cleanup(engine.store, max_age_days=1, max_gb=0, now=time.time() + 2 * 86400)
        after = await engine.get_job(job.id)
    assert report.jobs == 1 and report.files == 2
    assert not Path(job.results[0]).exists() and after.results == ()


async def test_undelivered_discord_results_survive_cleanup(make_settings):
    """A Discord job not yet delivered keeps its files even when far past the age limit."""
    from engine.retention import run_cleanup
    from engine.service import Engine

    async with Engine(make_settings()) as engine:
        await engine.wait_ready(60)
        job = await _done_job(engine, source="discord")
        report = run_cleanup(engine.store, max_age_days=1, max_gb=0.000001, now=time.time() + 30 * 86400)
    assert report.jobs == 0 and Path(job.results[0]).exists()


async def test_size_limit_removes_the_oldest_first(make_settings):
    """Over RETENTION_MAX_GB, the oldest removable results go first until the rest fits."""
    from engine.retention import run_cleanup
    from engine.service import Engine

    async with Engine(make_settings()) as engine:
        await engine.wait_ready(60)
        first = await _done_job(engine)
        second = await _done_job(engine)
        one_job = sum(Path(p).stat().st_size for p in first.results) * 2 + 1024
        report = run_cleanup(engine.store, max_age_days=0, max_gb=one_job / 2**30)
    assert report.jobs == 1
    assert not Path(first.results[0]).exists() and Path(second.results[0]).exists()
