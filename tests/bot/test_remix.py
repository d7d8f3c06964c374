"""Remix mode (a member's /prefer choice): Reroll and V ask for new words first, through discord.py against the
emulator."""

from __future__ import annotations

import re

from tests.bot.conftest import message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import CALLBACK_MODAL, FakeDiscord


async def _remixing_result(fake: FakeDiscord) -> dict:
    await _answer(await fake.slash("prefer set", {"remix": True}))
    inter = await fake.slash("imagine", {"prompt": "a red fox --seed 11 --count 2"})
    return await inter.wait_original(message_has_result, timeout=60)


async def test_reroll_in_remix_mode_asks_for_new_words_then_rerolls(engine, fake: FakeDiscord, start_bot):
    """Reroll opens a form filled with the prompt; its submission is the reroll in the new words, a new seed."""
    async with start_bot(engine):
        msg = await _remixing_result(fake)
        click = await fake.click("imagine:reroll:1", int(msg["id"]))
        assert await click.wait_acked(timeout=3) == CALLBACK_MODAL
        assert re.fullmatch(r"imagine:remixform:1:r:[0-9a-f]{16}", click.modal["custom_id"])
        submit = await fake.submit_modal(click.modal["custom_id"], {"prompt": "a blue fox", "negative": ""})
        await submit.wait_original(message_has_result, timeout=60)
    source, remixed = (await engine.get_job(1)).params, (await engine.get_job(2)).params
    assert remixed.prompt == "a blue fox" and remixed.seed != source.seed and remixed.source_job is None


async def test_a_variation_in_remix_mode_varies_that_image_in_the_new_words(engine, fake: FakeDiscord, start_bot):
    """V2 opens a form; its submission varies image 2 of the job with the new prompt."""
    async with start_bot(engine):
        msg = await _remixing_result(fake)
        click = await fake.click("imagine:vary:1:1", int(msg["id"]))
        assert await click.wait_acked(timeout=3) == CALLBACK_MODAL
        submit = await fake.submit_modal(click.modal["custom_id"], {"prompt": "a fox in the snow", "negative": ""})
        await submit.wait_original(message_has_result, timeout=60)
    remixed = (await engine.get_job(2)).params
    assert (remixed.prompt, remixed.source_job, remixed.source_image) == ("a fox in the snow", 1, 1)
    assert remixed.strength == engine.settings.vary_strength


async def test_someone_elses_remix_form_is_refused(engine, fake: FakeDiscord, start_bot):
    """A remix form is bound to the member it was shown to."""
    async with start_bot(engine):
        msg = await _remixing_result(fake)
        click = await fake.click("imagine:reroll:1", int(msg["id"]))
        await click.wait_acked(timeout=3)
        text = await _answer(await fake.submit_modal(click.modal["custom_id"], {"prompt": "x", "negative": ""},
                                                     user=fake.add_user("mallory")))
    assert text.startswith("This form was not opened by you")


async def test_vary_subtle_in_remix_mode_stays_subtle(engine, fake: FakeDiscord, start_bot):
    """Vary (Subtle) under a single image opens the form too, and its submission varies at VARY_SUBTLE_STRENGTH."""
    async with start_bot(engine):
        grid = await _remixing_result(fake)
        pressed = await fake.click("imagine:select:1:0", int(grid["id"]))
        single = await pressed.wait_original(message_has_result, timeout=30)
        click = await fake.click("imagine:varysubtle:1:0", int(single["id"]))
        assert await click.wait_acked(timeout=3) == CALLBACK_MODAL
        submit = await fake.submit_modal(click.modal["custom_id"], {"prompt": "a quiet fox", "negative": ""})
        await submit.wait_original(message_has_result, timeout=60)
    remixed = (await engine.get_job(2)).params
    assert (remixed.prompt, remixed.strength) == ("a quiet fox", engine.settings.vary_subtle_strength)
