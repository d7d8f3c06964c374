"""The worker runtime: accepting jobs while the model loads, freezing the model's objects, status after a job."""

from __future__ import annotations

import gc

from engine.service import Engine
from tests.engine.helpers import WAIT, GatedLoader, params, wait_final, wait_idle, who

# --- model loading -------------------------------------------------------------------------------


async def test_submit_accepted_while_model_loading(make_engine) -> None:
    """The model loads in the background: jobs are accepted meanwhile and run once it is ready."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    assert eng.model_state == "loading" and eng.status().model_state == "loading"
    sub = await eng.submit(params(), who("u1"))
    assert sub.position == 1
    loader.open()
    assert await eng.wait_ready(WAIT)
    assert (await wait_final(eng, sub.job.id)).state == "done"


async def test_model_objects_are_frozen_before_ready(make_engine) -> None:
    """Once the model is loaded its objects are out of the garbage collector's full collections."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    gc.unfreeze()  # earlier tests' engines froze theirs
    loader.open()
    assert await eng.wait_ready(WAIT)
    assert gc.get_freeze_count() > 0

async def test_status_after_a_job(engine: Engine) -> None:
    """status() reports the loaded model, device, dtype, fast mode and the last hour's jobs."""
    await wait_final(engine, (await engine.submit(params(), who())).job.id)
    await wait_idle(engine)
    status = engine.status()
    assert (status.model_state, status.device, status.dtype) == ("ready", "cpu", "float32")
    assert status.fast_available and status.jobs_last_hour == 1 and (status.queued, status.running) == (0, 0)
    assert status.seconds_per_image and status.seconds_per_image > 0
