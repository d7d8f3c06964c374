"""The Edit button: a form with the prompts; its submission queues the edited job with the same settings."""

from __future__ import annotations

import re

import pytest

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import CALLBACK_MODAL, FakeDiscord


async def _result(fake: FakeDiscord, prompt: str) -> dict:
    inter = await fake.slash("imagine", {"prompt": prompt})
    return await inter.wait_original(message_has_result, timeout=30)


async def _open_form(fake: FakeDiscord, msg: dict, user=None) -> str:
    """Press Edit on a result as ``user``; the custom_id of the form they were shown."""
    click = await fake.click("imagine:edit:1", int(msg["id"]), user=user)
    assert await click.wait_acked(timeout=3) == CALLBACK_MODAL
    return click.modal["custom_id"]


def _inputs(modal: dict) -> dict[str, dict]:
    return {c["custom_id"]: c for row in modal["components"] for c in row["components"]}


async def test_edit_opens_a_form_filled_with_the_prompts(engine, fake: FakeDiscord, start_bot):
    """Edit answers with a form whose fields hold the job's prompt and negative prompt."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --no rain")
        click = await fake.click("imagine:edit:1", int(msg["id"]))
        assert await click.wait_acked(timeout=3) == CALLBACK_MODAL
    fields = _inputs(click.modal)
    assert re.fullmatch(r"imagine:editform:1:[0-9a-f]{16}", click.modal["custom_id"])
    assert fields["prompt"]["value"] == "a red fox" and fields["negative"]["value"] == "rain"


async def test_edit_queues_the_new_words_with_the_same_settings(engine, fake: FakeDiscord, start_bot):
    """The submitted form makes a new job for the submitter: new words, the source's size, steps, guidance, seed."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11 --steps 3 --cfg 5 --ar 96x64")
        bob = fake.add_user("bob")
        form = await _open_form(fake, msg, bob)
        submit = await fake.submit_modal(form, {"prompt": "a blue fox", "negative": "snow"}, user=bob)
        await submit.wait_original(message_has_result, timeout=30)
    source, edited = (await engine.get_job(1)).params, await engine.get_job(2)
    assert (edited.params.prompt, edited.params.negative_prompt) == ("a blue fox", "snow")
    assert (edited.params.width, edited.params.height, edited.params.steps, edited.params.guidance,
            edited.params.seed) == (source.width, source.height, source.steps, source.guidance, source.seed)
    assert edited.requester.user_name == "bob"


async def test_edit_inline_parameters_change_only_those_settings(engine, fake: FakeDiscord, start_bot):
    """An inline --steps in the edited prompt changes the steps; the seed stays the source's."""
    async with start_bot(engine):
        form = await _open_form(fake, await _result(fake, "a red fox --seed 11"))
        submit = await fake.submit_modal(form, {"prompt": "a red fox at dusk --steps 3", "negative": ""})
        await submit.wait_original(message_has_result, timeout=30)
    edited = (await engine.get_job(2)).params
    assert (edited.prompt, edited.steps, edited.seed, edited.negative_prompt) == ("a red fox at dusk", 3, 11, "")


async def test_edit_goes_through_the_blocklist(engine, fake: FakeDiscord, start_bot):
    """Edited words are moderated like any /imagine: a blocked word is refused privately and nothing is queued."""
    await engine.policy.set_blocklist("global", ["dragon"])
    async with start_bot(engine):
        form = await _open_form(fake, await _result(fake, "a red fox"))
        submit = await fake.submit_modal(form, {"prompt": "a red dragon", "negative": ""})
        await submit.wait_acked(timeout=3)
    data = submit.callbacks[0].json["data"]
    assert data["flags"] & 64 and "blocked words" in data["content"]
    assert await engine.get_job(2) is None


async def test_edit_form_is_answered_after_a_restart(engine, fake: FakeDiscord, start_bot):
    """A form opened before the bot restarted is still answered by the new bot process."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox --seed 11")
        click = await fake.click("imagine:edit:1", int(msg["id"]))
        await click.wait_acked(timeout=3)
    async with start_bot(engine):
        submit = await fake.submit_modal(click.modal["custom_id"], {"prompt": "a grey fox", "negative": ""})
        await submit.wait_original(message_has_result, timeout=30)
    assert (await engine.get_job(2)).params.prompt == "a grey fox"


async def test_edit_of_a_deleted_job_says_why(engine, fake: FakeDiscord, start_bot):
    """Submitting the form of a job deleted meanwhile answers only the submitter, saying it no longer exists."""
    async with start_bot(engine):
        form = await _open_form(fake, await _result(fake, "a red fox"))
        await engine.delete_job(1)
        submit = await fake.submit_modal(form, {"prompt": "a blue fox", "negative": ""})
        await submit.wait_acked(timeout=3)
    data = submit.callbacks[0].json["data"]
    assert data["flags"] & 64 and "no longer exists" in data["content"]


@pytest.mark.parametrize("forged", ["another member's form", "a form id without a key"])
async def test_a_form_not_shown_to_the_submitter_is_refused(engine, fake: FakeDiscord, start_bot, forged: str):
    """Submitting an Edit form that was opened by someone else, or one whose id was made up, queues nothing and
    tells the submitter privately (a forged edit once ran another member's job from another server)."""
    async with start_bot(engine):
        msg = await _result(fake, "a red fox")
        form = await _open_form(fake, msg) if forged == "another member's form" else "imagine:editform:1"
        mallory = fake.add_user("mallory")
        submit = await fake.submit_modal(form, {"prompt": "a blue fox", "negative": ""}, user=mallory)
        await submit.wait_acked(timeout=3)
    data = submit.callbacks[0].json["data"]
    assert data["flags"] & 64 and "not opened by you" in data["content"]
    assert await engine.get_job(2) is None
