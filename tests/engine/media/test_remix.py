"""Parameters of jobs made from earlier ones (engine/media/remix.py), resolved like any /imagine."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from engine.media.remix import edit_request, keep_source
from engine.requests.params import ParamError, ParamRequest
from engine.service import Engine
from tests.engine.helpers import WAIT, BatchLog, GatedLoader, params, wait_final, who


async def _finished(engine):
    submission = await engine.submit(engine.resolve(ParamRequest(prompt="a fox", seed=1)), who())
    return await wait_final(engine, submission.job.id)


async def test_edit_keeps_every_setting_but_the_words(engine):
    """An edit has the source's size, steps, guidance, seed, count, sampler and mode, with the new words."""
    source = engine.resolve(ParamRequest(prompt="a fox", size="96x64", steps=3, guidance=4.5, seed=7, count=2,
                                         scheduler="ddim"))
    edited = engine.resolve(edit_request(source, ParamRequest(prompt="a wolf", negative_prompt="rain")))
    assert (edited.prompt, edited.negative_prompt) == ("a wolf", "rain")
    assert edited.with_seed(7) == edited and edited.size == source.size
    assert (edited.steps, edited.guidance, edited.count, edited.scheduler) == (3, 4.5, 2, "ddim")


async def test_edit_takes_settings_typed_into_the_form(engine):
    """A setting given with the new words (an inline --steps) wins over the source's."""
    source = engine.resolve(ParamRequest(prompt="a fox", steps=3, seed=7))
    edited = engine.resolve(edit_request(source, ParamRequest(prompt="a wolf", steps=2)))
    assert (edited.steps, edited.seed) == (2, 7)


async def test_edit_is_checked_against_todays_limits(engine):
    """A source setting the server no longer allows is refused with the allowed range."""
    source = engine.resolve(ParamRequest(prompt="a fox", steps=5))
    await engine.policy.set_defaults("g1", {"max_steps": 4, "steps": 2})
    with pytest.raises(ParamError, match="steps must be from 1 to 4"):
        engine.resolve(edit_request(source, ParamRequest(prompt="a wolf")), "g1")


async def test_edit_of_a_variation_keeps_its_source_image(engine):
    """An edited variation is still a variation of the same image, at its size and strength."""
    done = await _finished(engine)
    varied = await engine.variation(done.id, 0, seed=3)
    edited = keep_source(engine.resolve(edit_request(varied, ParamRequest(prompt="a wolf"))), varied)
    assert (edited.source_job, edited.source_image, edited.strength) == (done.id, 0, varied.strength)
    assert edited.prompt == "a wolf" and edited.seed == varied.seed


async def test_edit_of_a_variation_refuses_another_size(engine):
    """The size of an image made from another image is that image's: a new size is refused, saying so."""
    done = await _finished(engine)
    varied = await engine.variation(done.id, 0, seed=3)
    with pytest.raises(ParamError, match="that image's size"):
        edit_request(varied, ParamRequest(prompt="a wolf", size="96x64"))


async def test_edit_of_a_missing_job_says_it_is_gone(engine):
    """Editing a job that no longer exists raises ParamError naming it."""
    with pytest.raises(ParamError, match="Job 99 no longer exists"):
        await engine.remix.edit(99, ParamRequest(prompt="a wolf"), None)


async def test_edit_of_a_styled_job_wraps_the_new_words_in_the_same_style(engine):
    """The edit starts from the user's own words; the style is applied again to the new ones."""
    from engine.requests.styles import make_style

    await engine.styles.save(make_style("noir", "noir photo of {prompt}", limits=engine.policy.limits))
    source = engine.resolve(ParamRequest(prompt="a fox", style="noir", seed=7))
    edited = engine.resolve(edit_request(source, ParamRequest(prompt="a wolf", negative_prompt="")))
    assert (edited.prompt, edited.style, edited.typed_prompt) == ("noir photo of a wolf", "noir", "a wolf")


async def test_edit_of_an_upscale_is_an_upscale_with_the_new_words(engine):
    """Editing an upscaled result upscales the same image again, at the same size, with the new words."""
    done = await _finished(engine)
    upscaled = await engine.remix.upscale(done.id, 0)
    edited = keep_source(engine.resolve(edit_request(upscaled, ParamRequest(prompt="a wolf"))), upscaled)
    assert (edited.upscale, edited.width, edited.height, edited.count) == (2, 128, 128, 1)
    assert (edited.source_job, edited.prompt, edited.seed) == (done.id, "a wolf", upscaled.seed)


# --- variations ----------------------------------------------------------------------------------


async def test_variation_of_a_finished_image_is_generated(engine: Engine) -> None:
    """V2 of a finished two-image job runs image-to-image from that image and finishes with new images."""
    source = await wait_final(engine, (await engine.submit(params(count=2, steps=4), who())).job.id)
    varied = await engine.variation(source.id, 1, seed=5)
    job = await wait_final(engine, (await engine.submit(varied, who())).job.id)
    assert job.state == "done" and len(job.results) == 2
    assert (job.params.source_job, job.params.source_image) == (source.id, 1)
    with Image.open(job.results[0]) as img:
        assert img.size == (64, 64)


async def test_variation_events_count_the_steps_it_runs(engine: Engine) -> None:
    """A variation at strength 0.5 of 4 steps reports progress out of 2 steps."""
    source = await wait_final(engine, (await engine.submit(params(steps=4), who())).job.id)
    varied = replace(await engine.variation(source.id, 0), strength=0.5)
    with engine.subscribe() as events:
        sub = await engine.submit(varied, who())
        totals = set()
        while True:
            event = await events.next(WAIT)
            if event.job.id == sub.job.id and event.kind in ("started", "progress"):
                totals.add(event.total)
            if event.job.id == sub.job.id and event.kind == "done":
                break
    assert totals == {2}


async def test_variation_of_a_deleted_job_is_refused(engine: Engine) -> None:
    """Varying a job that was deleted says so."""
    source = await wait_final(engine, (await engine.submit(params(), who())).job.id)
    await engine.delete_job(source.id)
    with pytest.raises(ParamError, match=f"Job {source.id} no longer exists"):
        await engine.variation(source.id, 0)


async def test_variation_of_an_unfinished_job_is_refused(make_engine) -> None:
    """A queued job has no images to vary yet."""
    eng = await make_engine(loader=GatedLoader())
    sub = await eng.submit(params(), who())
    with pytest.raises(ParamError, match="no finished images to vary yet"):
        await eng.variation(sub.job.id, 0)


async def test_variation_of_a_missing_image_index_is_refused(engine: Engine) -> None:
    """V2 of a one-image job names how many images there are."""
    source = await wait_final(engine, (await engine.submit(params(), who())).job.id)
    with pytest.raises(ParamError, match="has 1 image"):
        await engine.variation(source.id, 1)


async def test_variation_fails_clearly_when_its_source_vanished(make_engine) -> None:
    """If the source file is removed while the variation waits, the variation fails with the reason."""
    eng = await make_engine()
    source = await wait_final(eng, (await eng.submit(params(), who())).job.id)
    varied = await eng.variation(source.id, 0)
    log: BatchLog = eng.before_batch
    log.block()
    blocker = await eng.submit(params(seed=9), who("u2"))  # occupies the worker while the file goes away
    assert await asyncio.to_thread(log.entered.wait, WAIT)
    sub = await eng.submit(varied, who())
    Path(source.results[0]).unlink()
    log.release()
    job = await wait_final(eng, sub.job.id)
    assert job.state == "failed" and "was deleted" in (job.error or "")
    assert (await wait_final(eng, blocker.job.id)).state == "done"
