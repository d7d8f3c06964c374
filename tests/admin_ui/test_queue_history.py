"""Queue and History tabs through gradio_client."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from engine.jobs.records import Requester
from engine.requests.params import ParamRequest
from tests.admin_ui.support import run_job


async def test_queue_shows_jobs_and_cancel_removes_one(call, engine):
    """The live table lists the running and the queued job; cancelling the queued one removes it."""
    gate = threading.Event()
    engine.before_batch = lambda jobs: gate.wait(30)  # the engine's test seam: hold the worker
    try:
        running = await engine.submit(engine.resolve(ParamRequest(prompt="a running fox"), "111"),
                                      Requester(user_id="u1", user_name="alice", guild_id="111"))
        while not engine.queue_snapshot() or engine.queue_snapshot()[0].position != 0:
            await asyncio.sleep(0.01)
        queued = await engine.submit(engine.resolve(ParamRequest(prompt="a queued owl"), "222"),
                                     Requester(user_id="u2", user_name="bob", guild_id="222"))
        table = await call("/queue")
        rows = {row[0]: row for row in table["data"]}
        assert rows[running.job.id][1:5] == ["alice", "Fox Den (111)", "a running fox", "running"]
        assert rows[queued.job.id][1:5] == ["bob", "Pixel Club (222)", "a queued owl", "1"]
        assert table["headers"] == ["id", "user", "guild", "prompt", "position", "progress"]

        message, table = await call("/cancel", queued.job.id)
        assert f"Cancelled job #{queued.job.id}" in message
        assert [row[0] for row in table["data"]] == [running.job.id]
        assert (await engine.get_job(queued.job.id)).state == "cancelled"
    finally:
        gate.set()
        engine.before_batch = None


async def test_cancel_of_unknown_job_says_so(call):
    """A wrong id gets a message that says to check it."""
    message, _table = await call("/cancel", 424242)
    assert "no job #424242" in message


async def test_history_filters_by_user_guild_and_text(call, engine):
    """Filters narrow the gallery by user (name or id), server and prompt text."""
    fox = await run_job(engine, "a red fox", user_id="u1", user_name="alice", guild_id="111")
    owl = await run_job(engine, "a snowy owl", user_id="u2", user_name="bob", guild_id="222")
    both = await call("/history", "", "", "")
    assert [item["caption"].split(" ")[0] for item in both[0]] == [f"#{owl.id}", f"#{fox.id}"]

    by_user, _summary = await call("/history", "alice", "", "")
    by_guild, _summary = await call("/history", "", "Pixel Club", "")
    by_text, _summary = await call("/history", "", "", "owl")
    assert [i["caption"].split(" ")[0] for i in by_user] == [f"#{fox.id}"]
    assert [i["caption"].split(" ")[0] for i in by_guild] == [f"#{owl.id}"]
    assert [i["caption"].split(" ")[0] for i in by_text] == [f"#{owl.id}"]
    assert Path(by_user[0]["image"]).is_file()


async def test_history_shows_full_parameters_of_a_job(call, engine):
    """The selected job's record has every parameter and its seed."""
    job = await run_job(engine, "a tiny boat", guild_id="111")
    details = await call("/job", job.id)
    assert details["prompt"] == "a tiny boat" and details["seed"] == job.params.seed
    assert details["server"] == "Fox Den (111)" and details["steps"] == job.params.steps
    assert details["size"] == "64x64" and details["files"] == list(job.results)


async def test_history_names_the_source_of_a_variation(call, engine):
    """A variation's record says which job and image it varies, and how strongly."""
    source = await run_job(engine, "a tiny boat")
    varied = await engine.variation(source.id, 0, seed=3)
    with engine.subscribe(None) as stream:
        sub = await engine.submit(varied, Requester(user_id="u1", user_name="alice", guild_id="111"))
        while not ((event := await stream.next(timeout=60)).job.id == sub.job.id and event.kind == "done"):
            pass
    details = await call("/job", sub.job.id)
    assert details["variation_of"] == {"job_id": source.id, "image": 1, "strength": 0.6}


async def test_history_of_a_plain_job_has_no_source(call, engine):
    """A job made from a prompt alone has no variation source."""
    job = await run_job(engine, "a tiny boat")
    assert (await call("/job", job.id))["variation_of"] is None


async def test_history_delete_removes_job_and_files(call, engine):
    """Delete removes the record and its images, and the gallery no longer shows it."""
    keep = await run_job(engine, "keep me")
    gone = await run_job(engine, "delete me")
    message, _details, gallery, _summary = await call("/delete", gone.id, "", "", "")
    assert f"Deleted job #{gone.id}" in message
    assert await engine.get_job(gone.id) is None
    assert not any(Path(p).exists() for p in gone.results + gone.delivery_paths)
    assert [item["caption"].split(" ")[0] for item in gallery] == [f"#{keep.id}"]
