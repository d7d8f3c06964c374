"""The Engine: admission caps, cancellation, positions, events, background loading, results."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from PIL import Image

from engine.jobs.records import JobRequest, Refused
from engine.requests.params import ParamRequest
from engine.service import Engine
from tests.engine.helpers import WAIT, GatedLoader, params, wait_final, wait_idle, who

# --- admission -----------------------------------------------------------------------------------


async def test_job_is_persisted_before_submit_returns(make_engine) -> None:
    """When submit returns, the queued job is already committed to the database file."""
    eng = await make_engine(loader=GatedLoader())
    sub = await eng.submit(params(seed=77), who("u1"))
    con = sqlite3.connect(eng.settings.db_path)
    try:
        row = con.execute("SELECT state, user_id, params FROM jobs WHERE id=?", (sub.job.id,)).fetchone()
    finally:
        con.close()
    assert row[:2] == ("queued", "u1") and json.loads(row[2])["seed"] == 77


async def test_per_user_cap_refuses_with_the_limit(make_engine) -> None:
    """A user at the per-user cap is refused with reason 'user_cap' and a message stating the limit."""
    eng = await make_engine(loader=GatedLoader(), per_user_cap=2)
    for _ in range(2):
        await eng.submit(params(), who("u1"))
    with pytest.raises(Refused) as info:
        await eng.submit(params(), who("u1"))
    assert info.value.reason == "user_cap"
    assert "the limit is 2" in info.value.message and "/cancel" in info.value.message


async def test_per_user_cap_holds_for_concurrent_submits(make_engine) -> None:
    """Many simultaneous submits by one user admit no more than the cap."""
    eng = await make_engine(loader=GatedLoader(), per_user_cap=2)
    results = await asyncio.gather(*(eng.submit(params(), who("u1")) for _ in range(6)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(results) - len(refused) == 2
    assert {r.reason for r in refused} == {"user_cap"}


async def test_a_place_is_held_while_the_request_is_acknowledged(make_engine) -> None:
    """The place under the cap is taken before the acknowledgement, so a second request meanwhile is refused."""
    eng = await make_engine(loader=GatedLoader(), per_user_cap=1)
    acked = asyncio.Event()
    go_on = asyncio.Event()

    async def acknowledge() -> None:
        acked.set()
        await go_on.wait()

    first = asyncio.create_task(eng.request(JobRequest(params(), who("u1")), acknowledge=acknowledge))
    await acked.wait()
    with pytest.raises(Refused, match="the limit is 1"):
        await eng.submit(params(), who("u1"))
    go_on.set()
    assert (await first).position == 1


async def test_a_failed_acknowledgement_gives_the_place_back(make_engine) -> None:
    """A request whose acknowledgement fails (an expired interaction) stores nothing and frees its place."""
    eng = await make_engine(loader=GatedLoader(), per_user_cap=1)

    async def acknowledge() -> None:
        raise ConnectionError("interaction expired")

    with pytest.raises(ConnectionError):
        await eng.request(JobRequest(params(), who("u1")), acknowledge=acknowledge)
    assert (await eng.submit(params(), who("u1"))).position == 1


async def test_per_user_cap_leaves_other_users_alone(make_engine) -> None:
    """One user at the cap does not stop another user."""
    eng = await make_engine(loader=GatedLoader(), per_user_cap=1)
    await eng.submit(params(), who("u1"))
    sub = await eng.submit(params(), who("u2"))
    assert sub.position == 2


async def test_guild_override_of_per_user_cap_applies(make_engine) -> None:
    """A guild's per_user_cap override is enforced for requests from that guild."""
    eng = await make_engine(loader=GatedLoader(), per_user_cap=4)
    await eng.policy.set_defaults("g1", {"per_user_cap": 1})
    await eng.submit(params(), who("u1", "g1"))
    with pytest.raises(Refused, match="the limit is 1"):
        await eng.submit(params(), who("u1", "g1"))


async def test_global_queue_cap_refuses_when_full(make_engine) -> None:
    """With QUEUE_CAP jobs waiting, a new user is refused with reason 'queue_full'."""
    eng = await make_engine(loader=GatedLoader(), queue_cap=2)
    await eng.submit(params(), who("u1"))
    await eng.submit(params(), who("u2"))
    with pytest.raises(Refused) as info:
        await eng.submit(params(), who("u3"))
    assert info.value.reason == "queue_full" and "queue is full" in info.value.message


async def test_priority_job_bypasses_caps(make_engine) -> None:
    """An operator's priority job is queued even when the caps are reached, and goes first."""
    eng = await make_engine(loader=GatedLoader(), queue_cap=1, per_user_cap=1)
    await eng.submit(params(), who("u1"))
    sub = await eng.submit(params(), who("u1"), priority=10)
    assert sub.position == 1


async def test_finished_jobs_free_the_users_slot(make_engine) -> None:
    """Once a user's jobs finish, the cap admits them again."""
    eng = await make_engine(per_user_cap=1)
    first = await eng.submit(params(), who("u1"))
    await wait_final(eng, first.job.id)
    await wait_idle(eng)
    second = await eng.submit(params(), who("u1"))
    assert (await wait_final(eng, second.job.id)).state == "done"


# --- cancellation --------------------------------------------------------------------------------


async def test_cancel_queued_job_never_reaches_pipeline(make_engine) -> None:
    """A job cancelled while queued is marked cancelled and never given to the pipeline."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    doomed = await eng.submit(params(), who("u1"))
    kept = await eng.submit(params(), who("u2"))
    assert await eng.cancel(doomed.job.id, user_id="u1") == "cancelled"
    assert (await eng.get_job(doomed.job.id)).state == "cancelled"
    loader.open()
    assert (await wait_final(eng, kept.job.id)).state == "done"
    assert doomed.job.id not in eng.before_batch.job_ids


async def test_cancel_running_job_stops_at_next_step(make_engine) -> None:
    """A running job cancelled during step 2 of 20 stops after that step, with no result."""
    eng = await make_engine()
    assert await eng.wait_ready(WAIT)
    unet_calls: list[int] = []
    in_step_two, go_on = threading.Event(), threading.Event()

    def count_step(module, args) -> None:  # a torch forward pre-hook on the real UNet
        unet_calls.append(1)
        if len(unet_calls) == 2:
            in_step_two.set()
            go_on.wait(WAIT)

    handle = eng.model.pipe.unet.register_forward_pre_hook(count_step)
    try:
        sub = await eng.submit(params(steps=20), who("u1"))
        assert await asyncio.to_thread(in_step_two.wait, WAIT)
        assert await eng.cancel(sub.job.id, user_id="u1") == "cancelled"
        go_on.set()
        await wait_idle(eng)
    finally:
        go_on.set()
        handle.remove()
    job = await eng.get_job(sub.job.id)
    assert job.state == "cancelled" and job.results == ()
    assert len(unet_calls) == 2
    assert not list(eng.settings.results_dir.rglob("*.png"))


async def test_cancel_one_job_of_a_batch_keeps_the_other(make_engine) -> None:
    """Cancelling one job of a running batch drops its result; the other job still finishes."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    cancelled = await eng.submit(params(seed=1), who("u1"))
    kept = await eng.submit(params(seed=2), who("u2"))
    eng.before_batch.block()
    loader.open()
    assert await asyncio.to_thread(eng.before_batch.entered.wait, WAIT)
    assert await eng.cancel(cancelled.job.id) == "cancelled"
    eng.before_batch.release()
    done = await wait_final(eng, kept.job.id)
    await wait_idle(eng)
    assert eng.before_batch.calls == [[cancelled.job.id, kept.job.id]]
    assert done.state == "done" and len(done.results) == 1
    assert (await eng.get_job(cancelled.job.id)).results == ()


async def test_cancel_by_another_user_is_refused(make_engine) -> None:
    """Only the requester may cancel: another user gets 'not_owner' and the job stays queued."""
    eng = await make_engine(loader=GatedLoader())
    sub = await eng.submit(params(), who("u1"))
    assert await eng.cancel(sub.job.id, user_id="u2") == "not_owner"
    assert (await eng.get_job(sub.job.id)).state == "queued"


async def test_cancel_finished_or_unknown_job(make_engine) -> None:
    """A finished job reports 'finished' (to its owner), 'not_owner' to others; unknown ids 'not_found'."""
    eng = await make_engine()
    sub = await eng.submit(params(), who("u1"))
    await wait_final(eng, sub.job.id)
    await wait_idle(eng)
    assert await eng.cancel(sub.job.id, user_id="u1") == "finished"
    assert await eng.cancel(sub.job.id, user_id="u2") == "not_owner"
    assert await eng.cancel(10_000) == "not_found"


async def test_cancel_user_cancels_only_their_queued_jobs(make_engine) -> None:
    """cancel_user cancels every queued job of that user and nobody else's."""
    eng = await make_engine(loader=GatedLoader())
    mine = [(await eng.submit(params(), who("u1"))).job.id for _ in range(2)]
    other = (await eng.submit(params(), who("u2"))).job.id
    assert sorted(await eng.cancel_user("u1")) == sorted(mine)
    assert [(await eng.get_job(i)).state for i in (*mine, other)] == ["cancelled", "cancelled", "queued"]


# --- events --------------------------------------------------------------------------------------


async def test_events_follow_queued_started_progress_done(make_engine) -> None:
    """A subscriber sees queued, started, one progress event per step with step/total, then done."""
    eng = await make_engine()
    with eng.subscribe() as stream:
        sub = await eng.submit(params(steps=3), who("u1"))
        events = []
        while not events or events[-1].kind not in ("done", "failed"):
            event = await stream.next(WAIT)
            if event.job.id == sub.job.id:
                events.append(event)
    assert [e.kind for e in events] == ["queued", "started", "progress", "progress", "progress", "done"]
    assert [(e.step, e.total) for e in events if e.kind == "progress"] == [(1, 3), (2, 3), (3, 3)]
    assert events[-1].job.state == "done"


async def test_job_is_running_in_store_during_pipeline_call(make_engine) -> None:
    """While the pipeline works on a job, the store says 'running' with one attempt."""
    eng = await make_engine()
    seen: list[tuple[str, int]] = []

    def look(jobs) -> None:
        job = eng.store.get(jobs[0].id)
        seen.append((job.state, job.attempts))

    eng.before_batch = look
    sub = await eng.submit(params(), who("u1"))
    await wait_final(eng, sub.job.id)
    assert seen == [("running", 1)]


async def test_progress_events_carry_jpeg_previews(make_engine) -> None:
    """With a small PREVIEW_INTERVAL, progress events carry a JPEG preview of the first image."""
    eng = await make_engine(preview_interval=0.001)
    with eng.subscribe() as stream:
        sub = await eng.submit(params(steps=3), who("u1"))
        previews = []
        while True:
            event = await stream.next(WAIT)
            if event.kind == "progress" and event.preview is not None:
                previews.append(event.preview)
            if event.kind in ("done", "failed") and event.job.id == sub.job.id:
                break
    assert previews and all(p.startswith(b"\xff\xd8") for p in previews)
    with Image.open(io.BytesIO(previews[0])) as img:
        assert img.format == "JPEG" and min(img.size) >= 64


async def test_job_subscription_only_sees_that_job(make_engine) -> None:
    """A subscription for one job id receives only that job's events."""
    eng = await make_engine(loader=GatedLoader())
    first = await eng.submit(params(), who("u1"))
    with eng.subscribe(first.job.id) as stream:
        await eng.submit(params(), who("u2"))
        await eng.cancel(first.job.id)
        event = await stream.next(WAIT)
    assert (event.kind, event.job.id) == ("cancelled", first.job.id)


async def test_event_loop_not_blocked_while_generating(make_engine) -> None:
    """While a bigger job generates on the worker, a ticking task on the loop is never late by 200 ms."""
    eng = await make_engine(sizes="64x64,256x256", preview_interval=0.05)
    assert await eng.wait_ready(WAIT)
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    ticker = asyncio.create_task(tick())
    sub = await eng.submit(params(size=(256, 256), steps=10), who("u1"))
    job = await wait_final(eng, sub.job.id)
    stop.set()
    await ticker
    assert job.state == "done" and job.gen_seconds > 0.2
    assert len(lags) > 20
    assert max(lags) < 0.2


# --- results -------------------------------------------------------------------------------------


async def test_result_png_carries_parameters(engine: Engine) -> None:
    """The result is a PNG of the requested size whose text chunks hold the prompt, seed and settings."""
    sub = await engine.submit(params("a red fox", seed=1234, steps=2, guidance=5.0), who())
    job = await wait_final(engine, sub.job.id)
    assert job.state == "done" and len(job.results) == 1
    with Image.open(job.results[0]) as img:
        assert (img.format, img.size) == ("PNG", (64, 64))
        text = dict(img.text)
    assert text["parameters"].startswith("a red fox\n")
    assert "Seed: 1234" in text["parameters"] and "Steps: 2" in text["parameters"]
    data = json.loads(text["imagine"])
    assert (data["seed"], data["job_id"], data["prompt"]) == (1234, job.id, "a red fox")


async def test_result_has_webp_delivery_copy(engine: Engine) -> None:
    """Next to each PNG there is a WebP copy for delivery."""
    job = await wait_final(engine, (await engine.submit(params(), who())).job.id)
    copy = Path(job.delivery_paths[0])
    assert copy.suffix == ".webp" and copy.is_file()
    with Image.open(copy) as img:
        assert (img.format, img.size) == ("WEBP", (64, 64))


async def test_multi_image_job_uses_consecutive_seeds(engine: Engine) -> None:
    """A job of two images writes two PNGs, with seed and seed+1 in their metadata."""
    job = await wait_final(engine, (await engine.submit(params(seed=50, count=2), who())).job.id)
    seeds = []
    for path in job.results:
        with Image.open(path) as img:
            seeds.append(json.loads(img.text["imagine"])["seed"])
    assert seeds == [50, 51]


async def test_random_seed_is_recorded(engine: Engine) -> None:
    """A request without a seed gets a concrete one, stored with the job and written into the PNG."""
    p = engine.resolve(ParamRequest("a fox"))
    job = await wait_final(engine, (await engine.submit(p, who())).job.id)
    assert job.params.seed == p.seed
    with Image.open(job.results[0]) as img:
        assert json.loads(img.text["imagine"])["seed"] == p.seed


async def test_long_prompt_gets_a_truncation_note(engine: Engine) -> None:
    """A prompt over the 77-token window comes back with a note saying the rest is ignored."""
    sub = await engine.submit(params("a fox " * 40), who())
    assert len(sub.notes) == 1 and "77" in str(sub.notes[0]) and "ignored" in str(sub.notes[0])


async def test_short_prompt_has_no_note(engine: Engine) -> None:
    """A prompt within the token window gets no note."""
    assert (await engine.submit(params("a fox"), who())).notes == ()


async def test_finished_job_is_undelivered_until_marked(engine: Engine) -> None:
    """A finished job is listed as undelivered until the front door marks it delivered."""
    job = await wait_final(engine, (await engine.submit(params(), who())).job.id)
    assert [j.id for j in await engine.undelivered()] == [job.id]
    await engine.mark_delivered(job.id)
    assert await engine.undelivered() == []
    assert (await engine.get_job(job.id)).state == "done"


async def test_history_and_delete(engine: Engine) -> None:
    """Finished jobs appear in history; deleting one removes the row and its files."""
    job = await wait_final(engine, (await engine.submit(params("a blue whale"), who("u9"))).job.id)
    assert [j.id for j in await engine.history(user="u9", text="whale")] == [job.id]
    files = [Path(job.results[0]), Path(job.delivery_paths[0])]
    assert all(f.is_file() for f in files)
    await engine.delete_job(job.id)
    assert await engine.get_job(job.id) is None and not any(f.exists() for f in files)


async def test_start_up_objects_are_kept_out_of_full_collections(make_engine) -> None:
    """Once started, and before any model is loaded (a bot host whose model runs on GPU workers never loads one),
    the libraries' objects are frozen: a full collection walked half a million of them on the event loop."""
    import gc

    gc.unfreeze()  # earlier tests' engines froze theirs
    loader = GatedLoader()
    try:
        eng = await make_engine(loader=loader)
        assert eng.model_state == "loading"
        assert gc.get_freeze_count() > 100_000
    finally:
        loader.open()
