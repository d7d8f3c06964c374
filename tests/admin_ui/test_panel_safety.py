"""The panel with image safety on, through gradio_client: scores in History, the classifier in Status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.service import Engine
from tests.admin_ui.support import run_job


@pytest.fixture
async def engine(make_settings: Callable[..., Any], tiny_classifier_dir: Callable[..., Path]) -> AsyncIterator[Engine]:
    """The panel's engine with SAFETY_MODEL_ID set to a classifier that scores every image 0.9."""
    eng = Engine(make_settings(safety_model_id=str(tiny_classifier_dir(0.9))))
    await eng.start()
    assert await eng.wait_ready(60), eng.model_error
    yield eng
    await eng.stop()


async def test_job_record_lists_each_images_score_and_the_flagged_ones(call, engine):
    """The selected job shows every image's NSFW score and which images reach SAFETY_THRESHOLD."""
    job = await run_job(engine, "a tiny boat", count=2)
    details = await call("/job", job.id)
    assert details["nsfw_scores"] == [0.9, 0.9]
    assert details["nsfw_flagged"] == [1, 2]


async def test_gallery_captions_carry_the_score(call, engine):
    """Each tile's caption shows its image's score and that it is flagged."""
    await run_job(engine, "a tiny boat")
    gallery, _summary = await call("/history", "", "", "")
    assert [item["caption"].split(" · ")[3] for item in gallery] == ["NSFW 0.90 (flagged)"]


async def test_status_tab_names_the_classifier(call, engine, tiny_classifier_dir):
    """The Status tab says image safety is on, with which model and threshold."""
    table, _banner = await call("/status")
    assert f"{tiny_classifier_dir(0.9)}, flags images scoring 0.5 or more (servers may set their own)" in table


async def test_nsfw_threshold_is_stored_per_server(call, engine):
    """The Moderation tab stores a server's own NSFW threshold beside its policy, and shows it again."""
    message = await call("/save_nsfw_policy", "111", "block", 0.8)
    assert "'block', flagging from score 0.8" in message
    assert engine.policy.overrides("111") == {"nsfw_policy": "block", "nsfw_threshold": 0.8}
    assert engine.policy.defaults("222").nsfw_threshold == 0.5
    _words, _note, policy, threshold, _message = await call("/load_moderation", "111")
    assert (policy, threshold) == ("block", 0.8)


async def test_flags_follow_the_servers_threshold(call, engine):
    """A job is flagged against its server's own threshold: 0.9 is not NSFW where the bar is 0.95."""
    await engine.policy.set_defaults("111", {"nsfw_threshold": 0.95})
    job = await run_job(engine, "a tiny boat", guild_id="111")
    details = await call("/job", job.id)
    assert details["nsfw_scores"] == [0.9] and details["nsfw_flagged"] == []
