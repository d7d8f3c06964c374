"""Playground tab through gradio_client against the running panel."""

from __future__ import annotations

import asyncio
import html
import threading
from pathlib import Path

from gradio_client import Client
from PIL import Image

from admin_ui.tabs.playground import OPERATOR_PRIORITY
from engine.service import GLOBAL
from tests.admin_ui.support import PASSWORD, USER, run_job


async def test_generate_returns_image_and_seed(call, engine):
    """A playground run returns the image (as a file) captioned with its seed, and the parameters."""
    status, _preview, gallery, summary, details = await call(
        "/generate", "a red fox in the snow", "", "96x64", 2, 5.0, 1234, 1, "euler", False)
    assert "Done" in status
    assert len(gallery) == 1
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (96, 64)
    assert gallery[0]["caption"] == "seed 1234"
    assert details["seed"] == 1234 and details["seeds"] == [1234]
    assert "Seed 1234" in summary
    job = await engine.get_job(details["job_id"])
    assert job.state == "done" and job.requester.source == "admin" and job.requester.user_id == "admin:admin"
    assert job.priority == OPERATOR_PRIORITY


async def test_fast_mode_runs_the_engines_recipe(call, engine):
    """With fast mode on, the steps and guidance sliders are ignored: the engine applies FAST_STEPS and guidance 1."""
    status, _preview, gallery, summary, details = await call(
        "/generate", "a red fox", "", "64x64", 7, 5.0, 3, 1, "euler", True)
    assert "Done" in status and len(gallery) == 1
    assert details["fast"] is True
    assert (details["steps"], details["guidance"]) == (engine.settings.fast_steps, 1.0)
    assert "fast mode" in summary


async def test_generate_shows_parameter_errors_inline(call):
    """An empty prompt is refused with a message saying what to do, and nothing is queued."""
    status, _preview, gallery, _summary, _details = await call(
        "/generate", "   ", "", "64x64", 2, 5.0, -1, 1, "euler", False)
    assert "prompt is empty" in status and "press Generate again" in status
    assert gallery == []


async def test_use_as_defaults_stores_the_shown_result(call, engine):
    """After a run, "use as defaults" makes its size/steps/guidance/negative/scheduler the global defaults."""
    await call("/generate", "a lighthouse", "grainy", "64x96", 3, 7.5, 5, 1, "ddim", False)
    message = await call("/use_as_defaults")
    assert "Saved as global defaults" in message
    d = engine.policy.defaults()
    assert (d.size, d.steps, d.guidance, d.negative_prompt, d.scheduler) == ("64x96", 3, 7.5, "grainy", "ddim")
    assert engine.policy.overrides(GLOBAL)["scheduler"] == "ddim"


async def test_operator_job_goes_ahead_of_queued_users(call, engine):
    """Jobs from the panel share the Discord queue but run before users' queued jobs."""

    gate = threading.Event()
    order: list[str] = []

    def hold(jobs):  # the engine's own test seam: runs on the worker before each batch
        order.extend(j.requester.source for j in jobs)
        gate.wait(30)

    engine.before_batch = hold
    try:
        blocker = asyncio.create_task(run_job(engine, "first user job", user_id="u1"))
        while not order:
            await asyncio.sleep(0.01)
        waiting_user = asyncio.create_task(run_job(engine, "second user job", user_id="u2", guild_id="222"))
        panel_run = asyncio.create_task(call("/generate", "operator job", "", "96x64", 2, 5.0, 1, 1, "ddim",
                                              False))
        while len(engine.queue_snapshot()) < 3:
            await asyncio.sleep(0.02)
        gate.set()
        await asyncio.gather(blocker, waiting_user, panel_run)
    finally:
        gate.set()
        engine.before_batch = None
    assert order == ["discord", "admin", "discord"]


async def test_results_are_staged_off_the_loop_and_cleared_on_stop(panel):
    """Gradio serves results from our staged copies (made in a thread, so it copies nothing on the
    event loop), and stopping the panel removes them."""
    client = await asyncio.to_thread(Client, panel.url, auth=(USER, PASSWORD), verbose=False,
                                     analytics_enabled=False, download_files=False)
    try:
        result = await asyncio.to_thread(client.predict, "a fox", "", "64x64", 2, 5.0, 1, 1, "euler", False,
                                         api_name="/generate")
        served = Path(result[2][0]["image"]["path"])
        assert served.is_relative_to(panel.stage.folder) and served.is_file()
    finally:
        await panel.stop()
        await asyncio.to_thread(client.close)
    assert not panel.stage.folder.exists()


async def test_the_playground_makes_a_tile_and_names_a_wrong_lora(engine, panel):
    """The Seamless tile box makes a tile job; a LoRA the operator does not offer is answered with the list."""
    client = await asyncio.to_thread(Client, panel.url, auth=(USER, PASSWORD), verbose=False,
                                     analytics_enabled=False, download_files=False)
    try:
        await asyncio.to_thread(client.predict, "leaves", "", "64x64", 2, 5.0, 1, 1, "euler", False, True, "",
                                api_name="/generate")
        status, *_rest = await asyncio.to_thread(client.predict, "leaves", "", "64x64", 2, 5.0, 1, 1, "euler", False,
                                                 False, "sketch", api_name="/generate")
    finally:
        await asyncio.to_thread(client.close)
    assert (await engine.get_job(1)).params.tile
    assert "LoRA 'sketch' is not offered here" in html.unescape(status)
