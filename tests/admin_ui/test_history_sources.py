"""History tab through gradio_client: where an upscale or a job from a user's picture came from."""

from __future__ import annotations

import io

from PIL import Image

from engine.jobs.records import Requester
from engine.requests.params import ParamRequest
from tests.admin_ui.support import run_job


async def _run(engine, params):
    with engine.subscribe(None) as stream:
        sub = await engine.submit(params, Requester(user_id="u1", user_name="alice", guild_id="111"))
        while not ((event := await stream.next(timeout=60)).job.id == sub.job.id and event.kind == "done"):
            pass
    return sub.job


async def test_history_names_the_source_of_an_upscale(call, engine):
    """An upscale's record names the job and image it upscales, the scale and strength; its caption says so too."""
    source = await run_job(engine, "a tiny boat")
    job = await _run(engine, await engine.remix.upscale(source.id, 0))
    details = await call("/job", job.id)
    assert details["source"] == {"kind": "upscale", "job_id": source.id, "image": 1, "scale": 2, "strength": 0.3}
    assert details["size"] == "128x128"
    gallery, _summary = await call("/history", "", "", "")  # the State output is not returned
    assert any(f"upscale of #{source.id}/1" in (item.get("caption") or "") for item in gallery)


async def test_history_names_a_users_picture_as_the_source(call, engine):
    """A job made from a user's picture says so, with the stored file and the strength."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, "PNG")
    params = await engine.remix.from_picture(engine.resolve(ParamRequest("a green field", seed=1, strength=0.4)),
                                             buf.getvalue(), keep_size=False)
    job = await _run(engine, params)
    source = (await call("/job", job.id))["source"]
    assert source["kind"] == "picture" and source["file"].startswith("uploads/") and source["strength"] == 0.4


async def test_history_names_the_front_door_beside_the_source(call, engine):
    """A job's record says which front door it came through ("via") and, separately, what it started from."""
    job = await run_job(engine, "a tiny boat")
    details = await call("/job", job.id)
    assert details["via"] == "discord" and details["source"] is None
