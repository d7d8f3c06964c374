"""Batching in the engine: compatible jobs share one pipeline call, and a seed gives the same image either way."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.engine.helpers import GatedLoader, params, wait_final, wait_idle, who


def pixels(path: str) -> np.ndarray:
    """An image file as a signed integer array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(np.int16)


async def test_same_batch_key_runs_in_one_pipeline_call(make_engine) -> None:
    """Queued jobs of different users with equal batch keys are run together in one call."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    ids = [(await eng.submit(params(f"prompt {i}", seed=i), who(f"u{i}"))).job.id for i in range(3)]
    loader.open()
    for job_id in ids:
        assert (await wait_final(eng, job_id)).state == "done"
    assert eng.before_batch.calls == [ids]


async def test_different_batch_keys_run_in_separate_calls(make_engine) -> None:
    """Jobs that differ in size, steps or guidance never share a call."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    ids = [(await eng.submit(p, who(f"u{i}"))).job.id for i, p in enumerate(
        [params(), params(size=(96, 64)), params(steps=3), params(guidance=7.0)])]
    loader.open()
    for job_id in ids:
        await wait_final(eng, job_id)
    assert sorted(eng.before_batch.calls) == [[i] for i in ids]


async def test_batch_respects_max_batch_images(make_engine) -> None:
    """A call holds at most MAX_BATCH images; the rest wait for the next call."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader, max_batch=3)
    a = (await eng.submit(params(count=2), who("u1"))).job.id
    b = (await eng.submit(params(count=2), who("u2"))).job.id
    c = (await eng.submit(params(count=1), who("u3"))).job.id
    loader.open()
    for job_id in (a, b, c):
        await wait_final(eng, job_id)
    assert eng.before_batch.calls == [[a, c], [b]]


async def test_seed_gives_same_image_alone_and_batched(make_engine) -> None:
    """A seed's image is the same whether its job ran alone or in a batch with other jobs."""
    loader = GatedLoader()
    eng = await make_engine(loader=loader)
    batched = (await eng.submit(params("a red fox", seed=42), who("u1"))).job.id
    others = [(await eng.submit(params(f"other {i}", seed=100 + i, negative="ugly"), who(f"u{i + 2}"))).job.id
              for i in range(2)]
    loader.open()
    batched_job = await wait_final(eng, batched)
    await wait_idle(eng)
    alone_job = await wait_final(eng, (await eng.submit(params("a red fox", seed=42), who("u1"))).job.id)
    assert eng.before_batch.calls == [[batched, *others], [alone_job.id]]
    diff = np.abs(pixels(batched_job.results[0]) - pixels(alone_job.results[0]))
    assert diff.max() <= 2


async def test_different_seed_gives_a_different_image(make_engine) -> None:
    """Another seed with the same prompt gives a clearly different image."""
    eng = await make_engine()
    first = await wait_final(eng, (await eng.submit(params("a red fox", seed=42), who())).job.id)
    second = await wait_final(eng, (await eng.submit(params("a red fox", seed=43), who())).job.id)
    diff = np.abs(pixels(first.results[0]) - pixels(second.results[0]))
    assert diff.mean() > 10 and diff.max() > 50


async def test_images_of_one_job_differ(engine) -> None:
    """The images of a multi-image job use different seeds, so they differ."""
    job = await wait_final(engine, (await engine.submit(params(seed=9, count=2), who())).job.id)
    assert np.abs(pixels(job.results[0]) - pixels(job.results[1])).mean() > 10
