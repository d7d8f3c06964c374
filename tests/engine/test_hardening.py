"""Guards added after review: one service per DATA_DIR, consistent defaults, invisible prompts."""

from __future__ import annotations

import pytest

from engine.jobs.store import StoreError
from engine.requests.params import ParamError, ParamRequest
from engine.service import Engine


async def test_second_engine_on_the_same_data_dir_is_refused(make_settings):
    """Two services on one DATA_DIR would run jobs twice; the second start is refused with the reason."""
    settings = make_settings()
    async with Engine(settings):
        with pytest.raises(StoreError, match="in use by another running instance"):
            await Engine(settings).start()


async def test_data_dir_is_free_again_after_stop(make_settings):
    """Stopping releases DATA_DIR for the next start."""
    settings = make_settings()
    async with Engine(settings):
        pass
    async with Engine(settings) as again:
        assert again.store is not None


async def test_default_steps_above_max_steps_is_refused(engine):
    """A guild cannot set default steps above its own max_steps."""
    await engine.policy.set_defaults("g1", {"max_steps": 10})
    with pytest.raises(ParamError, match="above max_steps"):
        await engine.policy.set_defaults("g1", {"steps": 20})
    assert engine.policy.defaults("g1").steps == 2


def test_zero_width_only_prompt_is_empty(engine):
    """A prompt of zero-width spaces is refused as empty."""
    with pytest.raises(ParamError, match="empty"):
        engine.resolve(ParamRequest(prompt="\u200b\u200b \ufeff"))


async def test_stored_override_outside_new_sizes_is_ignored(make_settings):
    """A stored default size that SIZES no longer offers is ignored after a restart, not fatal."""
    first = make_settings()
    async with Engine(first) as engine:
        await engine.policy.set_defaults("global", {"size": "96x64"})
    async with Engine(make_settings(sizes="64x64,64x96")) as engine:
        assert engine.policy.defaults().size == "64x64"
        assert engine.resolve(ParamRequest(prompt="a fox")).width == 64


async def test_concurrent_default_changes_are_both_kept(engine):
    """Two changes to one scope at the same moment (panel and /settings) both survive."""
    import asyncio

    await asyncio.gather(engine.policy.set_defaults("g1", {"steps": 3}), engine.policy.set_defaults("g1", {"guidance": 4.0}))
    assert engine.policy.overrides("g1") == {"steps": 3, "guidance": 4.0}


async def test_failed_start_releases_data_dir(make_settings):
    """If recovery fails after the store opened, DATA_DIR is free for the next attempt."""
    settings = make_settings()
    broken = Engine(settings)

    def fail(*_: object) -> None:
        raise RuntimeError("recovery failed")

    broken._recover = fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await broken.start()
    async with Engine(settings) as engine:
        assert engine.store is not None


async def test_burst_after_idle_is_batched_from_the_first_call(make_settings):
    """Jobs submitted one after another into an idle engine share the first pipeline call (BATCH_WINDOW)."""
    from engine.jobs.records import Requester

    calls: list[int] = []
    async with Engine(make_settings(batch_window=0.5)) as engine:
        await engine.wait_ready(60)
        engine.before_batch = lambda jobs: calls.append(len(jobs))
        with engine.subscribe() as stream:
            for i in range(4):
                await engine.submit(engine.resolve(ParamRequest(prompt=f"fox {i}")), Requester(user_id=f"u{i}"))
            done = 0
            while done < 4:
                done += (await stream.next(30)).kind == "done"
    assert calls == [4]
