"""/imagine end to end: defer, queue position, progress with preview, result with embed and buttons."""

from __future__ import annotations

import asyncio

from tests.bot.conftest import button_ids, message_has_result
from tests.support.discord_emulator import FakeDiscord


async def test_imagine_delivers_image_embed_and_buttons(engine, fake: FakeDiscord, start_bot):
    """A slash command is deferred, then the original response becomes the image with embed and buttons."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox --seed 7"})
        assert await inter.wait_acked() == 5
        msg = await inter.wait_original(message_has_result, timeout=30)
    assert msg["attachments"][0]["filename"] == f"imagine-{1}-0.webp"
    embed = msg["embeds"][0]
    assert "a red fox" in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Seed"] == "7"
    assert fields["Size"] == "64\u00d764" and fields["Steps"] == "2"
    assert embed["image"]["url"].endswith("/imagine-1-0.webp")
    assert {i.split(":")[1] for i in button_ids(msg)} == {"reroll", "info", "delete", "edit", "png", "vary",
                                                               "select"}


async def test_result_is_marked_delivered_after_discord_accepts_it(engine, fake: FakeDiscord, start_bot):
    """The job's delivered mark is set once the final edit succeeded."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a lighthouse"})
        await inter.wait_original(message_has_result, timeout=30)
        for _ in range(50):
            job = await engine.get_job(1)
            if job.delivered_at:
                break
            await asyncio.sleep(0.1)
    assert job.state == "done" and job.delivered_at is not None


async def test_queue_position_is_shown_while_waiting(gated_engine, fake: FakeDiscord, start_bot):
    """While the model loads, the response says the job's queue position and that the model is loading."""
    engine, release = gated_engine
    async with start_bot(engine):
        first = await fake.slash("imagine", {"prompt": "one"})
        await first.wait_original(lambda m: "Queued" in m["content"], timeout=10)
        second = await fake.slash("imagine", {"prompt": "two"}, user=fake.add_user("bob"))
        msg = await second.wait_original(lambda m: "Queued" in m["content"], timeout=10)
        assert "position 2" in msg["content"]
        assert "still loading" in msg["content"]
        assert any(i.startswith("imagine:cancel:") for i in button_ids(msg))
        release()
        await second.wait_original(message_has_result, timeout=30)


async def test_progress_edits_show_step_and_preview(make_settings, fake: FakeDiscord, start_bot):
    """A longer job edits its response with the step count and a small preview image."""
    from engine.service import Engine

    engine = Engine(make_settings(sizes="512x512", default_size="512x512", preview_interval=0.3))
    await engine.start()
    try:
        async with start_bot(engine):
            inter = await fake.slash("imagine", {"prompt": "a castle", "steps": 40})
            msg = await inter.wait_original(lambda m: "step" in m["content"] and m.get("attachments"),
                                            timeout=30)
            assert msg["attachments"][0]["filename"] == "preview.jpg"
            assert "/40" in msg["content"]
            await inter.wait_original(message_has_result, timeout=60)
    finally:
        await engine.stop()


async def test_progress_edits_respect_the_edit_interval(make_settings, fake: FakeDiscord, start_bot):
    """Progress edits of one response are at least PROGRESS_EDIT_INTERVAL apart and never rate limited."""
    from engine.service import Engine

    fake.limits.advertise_rate_limit_headers = False  # any burst would then hit a real 429
    engine = Engine(make_settings(sizes="512x512", default_size="512x512", preview_interval=0.2))
    await engine.start()
    try:
        async with start_bot(engine, progress_edit_interval=1.5):
            # long enough for at least two progress edits 1.5 s apart, however fast the worker is
            inter = await fake.slash("imagine", {"prompt": "a castle", "steps": 60})
            await inter.wait_original(message_has_result, timeout=60)
    finally:
        await engine.stop()
    edits = [r for r in inter.requests if r.method == "PATCH" and r.path.endswith("/@original")]
    progress = [r for r in edits if "step" in str((r.json or {}).get("content", ""))]
    assert len(progress) >= 2
    gaps = [b.time - a.time for a, b in zip(progress, progress[1:])]
    assert min(gaps) >= 1.45, gaps
    assert all(r.status != 429 for r in inter.requests)


async def test_posted_images_carry_alt_text(engine, fake: FakeDiscord, start_bot):
    """Each posted image's attachment description says which image it is and what it shows (screen readers)."""
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red fox in the snow", "count": 2})
        msg = await inter.wait_original(message_has_result, timeout=30)
    assert [a.get("description") for a in msg["attachments"]] == [
        "Image 1 of 2: a red fox in the snow", "Image 2 of 2: a red fox in the snow"]
