"""Image safety through Discord: the server's NSFW policy applied to each image by its classifier score."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.gpu.safety import recorded_actions
from engine.jobs.records import Job, Requester
from engine.service import Engine
from tests.bot.conftest import button_ids, message_has_result
from tests.engine.helpers import params
from tests.support.discord_emulator import FLAG_EPHEMERAL, FakeDiscord

FLAGS_ALL, FLAGS_NONE = 0.9, 0.05  # the fixed tiny classifiers' scores (threshold 0.5)
MANAGE_GUILD = 1 << 5  # the permission /settings needs


@pytest.fixture
def safe_engine(make_settings: Callable[..., Any], fake: FakeDiscord,
                tiny_classifier_dir: Callable[..., Path]) -> Callable[..., Any]:
    """``async with safe_engine(score, policy, **settings) as engine``: an engine with SAFETY_MODEL_ID set,
    started, with ``policy`` as the NSFW policy of the emulator's default server."""

    @contextlib.asynccontextmanager
    async def start(score: float | None, policy: str, **overrides: Any) -> AsyncIterator[Engine]:
        eng = Engine(make_settings(safety_model_id=str(tiny_classifier_dir(score)), **overrides))
        await eng.start()
        try:
            assert await eng.wait_ready(60), eng.model_error
            await eng.policy.set_defaults(str(fake.default_guild.id), {"nsfw_policy": policy})
            yield eng
        finally:
            await eng.stop()

    return start


def has_embed(msg: dict[str, Any]) -> bool:
    """The final message (with or without images) carries the result embed."""
    return bool(msg.get("embeds"))


def withheld(msg: dict[str, Any]) -> bool:
    """The final message of a result with withheld images."""
    return has_embed(msg) and "withheld" in (msg["content"] or "")


def names(msg: dict[str, Any]) -> list[str]:
    """The attachment names of a message."""
    return [a["filename"] for a in msg.get("attachments", [])]


async def result(fake: FakeDiscord, prompt: str, where: Callable[[dict[str, Any]], bool] = message_has_result,
                 **slash: Any) -> tuple[Any, dict[str, Any]]:
    """Run /imagine ``prompt`` and wait for its final message: (the interaction, the message)."""
    inter = await fake.slash("imagine", {"prompt": prompt}, **slash)
    return inter, await inter.wait_original(where, timeout=30)


async def test_spoiler_policy_leaves_unflagged_images_unspoilered(safe_engine, fake: FakeDiscord, start_bot):
    """With a classifier, 'spoiler' no longer blurs every image: an image it does not flag is posted and shown."""
    async with safe_engine(FLAGS_NONE, "spoiler") as engine:
        async with start_bot(engine):
            _inter, msg = await result(fake, "a fox")
    assert names(msg) == ["imagine-1-0.webp"]
    assert msg["embeds"][0]["image"]["url"].endswith("imagine-1-0.webp")


async def test_spoiler_policy_spoilers_flagged_images(safe_engine, fake: FakeDiscord, start_bot):
    """A flagged image is posted behind a spoiler and not shown un-blurred in the embed."""
    async with safe_engine(FLAGS_ALL, "spoiler") as engine:
        async with start_bot(engine):
            _inter, msg = await result(fake, "a fox")
    assert names(msg) == ["SPOILER_imagine-1-0.webp"]
    assert "image" not in msg["embeds"][0]


async def test_block_policy_with_a_classifier_generates_outside_nsfw_channels(safe_engine, fake: FakeDiscord,
                                                                              start_bot):
    """With a classifier, 'block' lets /imagine run anywhere and posts the images it does not flag."""
    async with safe_engine(FLAGS_NONE, "block") as engine:
        async with start_bot(engine):
            _inter, msg = await result(fake, "a fox")
    assert names(msg) == ["imagine-1-0.webp"]
    assert "withheld" not in (msg["content"] or "")


async def test_block_policy_withholds_flagged_images_with_a_message(safe_engine, fake: FakeDiscord, start_bot):
    """Flagged images are not uploaded at all; the message says why and where to ask instead, and the
    withheld images get no variation or upscale buttons."""
    async with safe_engine(FLAGS_ALL, "block") as engine:
        async with start_bot(engine):
            inter, msg = await result(fake, "a fox --count 2", withheld)
        job = await engine.get_job(1)
    assert names(msg) == [] and "image" not in msg["embeds"][0]
    assert "All 2 images were withheld: flagged as NSFW" in msg["content"]
    assert "channels marked NSFW" in msg["content"]
    assert not [i for i in button_ids(msg) if i.startswith(("imagine:vary:", "imagine:select:"))]
    assert not any(f.filename.startswith(("imagine-", "SPOILER_")) for r in inter.requests for f in r.files)
    assert job.delivered_at is not None  # the message is the delivery: nothing is retried later
    assert engine.metrics.registry.get_sample_value("imagine_safety_images_total", {"action": "withhold"}) == 2


async def test_block_policy_posts_everything_in_nsfw_channels(safe_engine, fake: FakeDiscord, start_bot):
    """In a channel marked NSFW every image is posted, flagged or not."""
    nsfw = fake.add_channel(fake.default_guild, "after-dark", nsfw=True)
    async with safe_engine(FLAGS_ALL, "block") as engine:
        async with start_bot(engine):
            _inter, msg = await result(fake, "a fox", channel_id=nsfw.id)
    assert names(msg) == ["imagine-1-0.webp"]


async def test_block_policy_decides_per_image(safe_engine, fake: FakeDiscord, start_bot, tmp_path: Path):
    """Of two images, only the one scoring over SAFETY_THRESHOLD is withheld; the other is posted with its V/U
    buttons, and the note names the withheld one."""
    prompt = "a fox --seed 5 --count 2"
    async with safe_engine(None, "allow", data_dir=tmp_path / "probe") as probe:  # the random classifier's scores
        async with start_bot(probe):
            await result(fake, prompt)
        scores = (await probe.get_job(1)).safety
    assert abs(scores[0] - scores[1]) > 0.01, scores
    flagged = 0 if scores[0] > scores[1] else 1
    async with safe_engine(None, "block", data_dir=tmp_path / "data", safety_threshold=sum(scores) / 2) as engine:
        async with start_bot(engine):
            _inter, msg = await result(fake, prompt)
        assert (await engine.get_job(1)).safety == scores  # the same images, the same scores
    kept = 1 - flagged
    assert names(msg) == [f"imagine-1-{kept}.webp"]
    assert f"Image {flagged + 1} of 2 was withheld" in msg["content"]
    ids = button_ids(msg)
    assert f"imagine:vary:1:{kept}" in ids and f"imagine:vary:1:{flagged}" not in ids


async def test_png_button_does_not_send_withheld_images(safe_engine, fake: FakeDiscord, start_bot):
    """PNG answers with the originals the result message showed, and says which image is withheld."""
    async with safe_engine(FLAGS_ALL, "block") as engine:
        async with start_bot(engine):
            _inter, msg = await result(fake, "a fox", withheld)
            click = await fake.click("imagine:png:1", int(msg["id"]))
            answer = await click.wait_original(lambda m: "withheld" in (m["content"] or ""), timeout=10)
    assert answer["flags"] & FLAG_EPHEMERAL
    assert names(answer) == []
    assert "Image 1 is withheld here by this server's NSFW policy" in answer["content"]


async def test_png_button_keeps_flagged_images_spoilered(safe_engine, fake: FakeDiscord, start_bot):
    """Under 'spoiler', the PNG of a flagged image comes behind a spoiler too."""
    async with safe_engine(FLAGS_ALL, "spoiler") as engine:
        async with start_bot(engine):
            _inter, msg = await result(fake, "a fox")
            click = await fake.click("imagine:png:1", int(msg["id"]))
            answer = await click.wait_original(lambda m: bool(m["attachments"]), timeout=10)
    assert names(answer) == ["SPOILER_imagine-1-0.png"]


@pytest.mark.parametrize(("policy", "preview_names"), [("spoiler", {"SPOILER_preview.jpg"}), ("block", set())])
async def test_progress_previews_follow_the_policy(safe_engine, fake: FakeDiscord, start_bot, policy: str,
                                                   preview_names: set[str]):
    """Previews are not checked by the classifier: blurred under 'spoiler', left out under 'block'."""
    async with safe_engine(FLAGS_NONE, policy, sizes="512x512", default_size="512x512",
                           preview_interval=0.3) as engine:
        async with start_bot(engine):
            inter = await fake.slash("imagine", {"prompt": "a castle", "steps": 40})
            await inter.wait_original(message_has_result, timeout=90)
    progress = [r for r in inter.requests if "step" in str((r.json or {}).get("content"))]
    assert progress, "the job showed no progress"
    sent = {f.filename for r in progress for f in r.files}
    assert sent == preview_names


def test_records_from_before_image_safety_keep_spoilering_every_image() -> None:
    """A job queued by an older bot (delivery record {"spoiler": true}, no scores) is still spoilered in full."""
    job = Job(id=1, state="done", priority=0, params=params(count=2), created_at=0.0, results=("a.png", "b.png"),
              requester=Requester(user_id="1", delivery={"token": "t", "spoiler": True}))
    assert recorded_actions(job, 0.5) == ("spoiler", "spoiler")
    plain = Job(id=2, state="done", priority=0, params=params(), created_at=0.0, results=("c.png",),
                requester=Requester(user_id="1", delivery={"token": "t", "spoiler": False}))
    assert recorded_actions(plain, 0.5) == ("post",)


async def test_status_says_image_safety_is_on(safe_engine, fake: FakeDiscord, start_bot):
    """/status names the classifier and the score from which it flags images in this server."""
    async with safe_engine(FLAGS_NONE, "allow") as engine:
        await engine.policy.set_defaults(str(fake.default_guild.id), {"nsfw_threshold": 0.8})
        async with start_bot(engine):
            inter = await fake.slash("status")
            await inter.wait_acked(timeout=3)
    text = inter.callbacks[0].json["data"]["content"]
    assert "**Image safety:**" in text and "flags images scoring 0.8 or more" in text


async def test_a_servers_own_threshold_decides(safe_engine, fake: FakeDiscord, start_bot):
    """/settings nsfw_threshold sets this server's bar: at 0.95 an image scoring 0.9 is no longer withheld."""
    async with safe_engine(FLAGS_ALL, "block") as engine:
        async with start_bot(engine):
            answer = await fake.slash("settings moderation", {"nsfw_threshold": 0.95}, permissions=MANAGE_GUILD)
            await answer.wait_acked(timeout=3)
            _inter, msg = await result(fake, "a fox")
    assert "NSFW from score 0.95" in answer.callbacks[0].json["data"]["content"]
    assert names(msg) == ["imagine-1-0.webp"]
    assert engine.policy.defaults(str(fake.default_guild.id)).nsfw_threshold == 0.95
