"""Result buttons: reroll, info, delete, cancel — also after the bot restarted."""

from __future__ import annotations

import asyncio

from tests.bot.conftest import button_ids, message_has_result
from tests.support.discord_emulator import FakeDiscord

MANAGE_MESSAGES = 1 << 13


def _button(msg: dict, action: str) -> str:
    return next(i for i in button_ids(msg) if i.startswith(f"imagine:{action}:"))


async def _result(fake: FakeDiscord, prompt: str = "a red fox --seed 11", **kwargs) -> dict:
    inter = await fake.slash("imagine", {"prompt": prompt}, **kwargs)
    return await inter.wait_original(message_has_result, timeout=30)


async def test_info_button_works_after_a_restart(engine, fake: FakeDiscord, start_bot):
    """A button on a message from before a restart is handled by the new bot process (DynamicItem)."""
    async with start_bot(engine):
        msg = await _result(fake)
    async with start_bot(engine):  # a brand-new client: nothing of the first one survives
        click = await fake.click(_button(msg, "info"), int(msg["id"]))
        assert await click.wait_acked(timeout=3) == 4
    data = click.callbacks[0].json["data"]
    assert data["flags"] & 64
    assert "--seed 11" in data["content"] and "a red fox" in data["content"]


async def test_reroll_runs_the_same_parameters_with_a_new_seed(engine, fake: FakeDiscord, start_bot):
    """Reroll creates a new job with the same prompt and settings but another seed."""
    async with start_bot(engine):
        msg = await _result(fake)
        click = await fake.click(_button(msg, "reroll"), int(msg["id"]))
        assert await click.wait_acked(timeout=3) == 5
        await click.wait_original(message_has_result, timeout=30)
    first, second = await engine.get_job(1), await engine.get_job(2)
    assert second.params.prompt == first.params.prompt and second.params.steps == first.params.steps
    assert second.params.seed != first.params.seed


async def test_result_has_one_vary_button_per_image(engine, fake: FakeDiscord, start_bot):
    """A two-image result carries V1 and V2, on a row below reroll, info, delete, edit and PNG."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --count 2")
    rows = [[c["custom_id"] for c in row["components"]] for row in msg["components"]]
    assert rows == [["imagine:reroll:1", "imagine:info:1", "imagine:delete:1", "imagine:edit:1",
                     "imagine:png:1"],
                    ["imagine:vary:1:0", "imagine:vary:1:1"],
                    ["imagine:select:1:0", "imagine:select:1:1"]]


async def test_vary_button_generates_variations_of_that_image(engine, fake: FakeDiscord, start_bot):
    """V2 queues a variation of image 2 for the clicker and posts it with its source in the embed."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --count 2")
        click = await fake.click("imagine:vary:1:1", int(msg["id"]), user=fake.add_user("bob"))
        assert await click.wait_acked(timeout=3) == 5
        varied = await click.wait_original(message_has_result, timeout=30)
    job = await engine.get_job(2)
    assert (job.params.source_job, job.params.source_image, job.params.count) == (1, 1, 2)
    assert job.requester.user_name == "bob" and job.state == "done"
    fields = {f["name"]: f["value"] for f in varied["embeds"][0]["fields"]}
    assert fields["Variation of"].startswith("job 1, image 2")


async def test_vary_of_a_deleted_result_says_why(engine, fake: FakeDiscord, start_bot):
    """V1 on a result whose job was deleted answers only the clicker, saying it no longer exists."""
    async with start_bot(engine):
        msg = await _result(fake)
        await engine.delete_job(1)
        click = await fake.click("imagine:vary:1:0", int(msg["id"]))
        await click.wait_acked(timeout=3)
    data = click.callbacks[0].json["data"]
    assert data["flags"] & 64 and "no longer exists" in data["content"]
    assert await engine.get_job(2) is None


async def test_delete_is_refused_for_other_users(engine, fake: FakeDiscord, start_bot):
    """Someone else (without Manage Messages) cannot delete a result."""
    async with start_bot(engine):
        msg = await _result(fake)
        click = await fake.click(_button(msg, "delete"), int(msg["id"]), user=fake.add_user("mallory"))
        await click.wait_acked(timeout=3)
    assert click.callbacks[0].json["data"]["flags"] & 64
    assert fake.get_message(int(msg["id"])) is not None


async def test_delete_by_requester_removes_message_and_files(engine, fake: FakeDiscord, start_bot):
    """The requester's Delete removes the message and the stored job with its files."""
    async with start_bot(engine):
        msg = await _result(fake)
        files = (await engine.get_job(1)).results
        click = await fake.click(_button(msg, "delete"), int(msg["id"]))
        await fake.wait_until(lambda: fake.get_message(int(msg["id"])) is None, timeout=5, what="deletion")
        await asyncio.sleep(0.2)
    assert await engine.get_job(1) is None
    from pathlib import Path

    assert not any(Path(f).exists() for f in files)
    assert click.acked


async def test_delete_by_moderator_with_manage_messages(engine, fake: FakeDiscord, start_bot):
    """A member with Manage Messages may delete someone else's result."""
    async with start_bot(engine):
        msg = await _result(fake)
        await fake.click(_button(msg, "delete"), int(msg["id"]), user=fake.add_user("mod"),
                         permissions=MANAGE_MESSAGES)
        await fake.wait_until(lambda: fake.get_message(int(msg["id"])) is None, timeout=5, what="deletion")


async def test_cancel_button_cancels_a_queued_job(gated_engine, fake: FakeDiscord, start_bot):
    """The requester's Cancel on a queued job cancels it; the response says so."""
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "never mind"})
        msg = await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)
        click = await fake.click(_button(msg, "cancel"), int(msg["id"]))
        await click.wait_acked(timeout=3)
        await inter.wait_original(lambda m: "Cancelled" in m["content"], timeout=10)
        release()
    assert (await engine.get_job(1)).state == "cancelled"


async def test_cancel_button_refuses_other_users(gated_engine, fake: FakeDiscord, start_bot):
    """Only the requester can cancel."""
    engine, release = gated_engine
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "mine"})
        msg = await inter.wait_original(lambda m: "Queued" in m["content"], timeout=10)
        click = await fake.click(_button(msg, "cancel"), int(msg["id"]), user=fake.add_user("mallory"))
        await click.wait_acked(timeout=3)
        assert "Only the person" in click.callbacks[0].json["data"]["content"]
        release()
        await inter.wait_original(message_has_result, timeout=30)
