"""The forms (modals) in every language: within Discord's limits, and shown in the member's language."""

from __future__ import annotations

import pytest

from bot import modals
from bot.i18n.catalogue import LOCALES
from engine.requests.params import GenerationParams
from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import CALLBACK_MODAL, FakeDiscord

PLACEHOLDER_MAX = 100
BIG_JOB = 9_999_999  # seven digits: a title must still fit whole


def _forms(locale: str) -> list:
    params = GenerationParams(prompt="a fox", negative_prompt="", width=64, height=64, steps=2, guidance=5.0, seed=1)
    return [modals.edit_form(BIG_JOB, params, "k", locale),
            modals.remix_form(BIG_JOB, None, params, "k", False, locale),
            modals.remix_form(BIG_JOB, 3, params, "k", False, locale),
            modals.zoom_form(BIG_JOB, 3, params, "k", locale),
            modals.region_form(BIG_JOB, 3, 1, False, params, "k", locale),
            modals.vary_form("k", "a fox", 0.6, locale)]


@pytest.mark.parametrize("locale", ["", *LOCALES])
def test_every_form_fits_discords_limits(locale: str) -> None:
    """Titles whole within 45 characters (a seven-digit job number included), labels within 45, placeholders
    within 100; a label over its limit would make Discord refuse the whole form."""
    for form in _forms(locale):
        assert len(form.title) <= modals.TITLE_MAX and str(BIG_JOB) in form.title or "Imagine" in form.title
        for item in form.children:
            assert len(item.label) <= modals.LABEL_MAX and len(item.placeholder or "") <= PLACEHOLDER_MAX


async def test_a_german_member_gets_the_edit_form_in_german(engine, fake: FakeDiscord, start_bot) -> None:
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "ein Fuchs"}, locale="de")
        msg = await inter.wait_original(message_has_result, timeout=60)
        click = await fake.click("imagine:edit:1", int(msg["id"]), locale="de")
        assert await click.wait_acked(timeout=3) == CALLBACK_MODAL
    labels = [c["label"] for row in click.modal["components"] for c in row["components"]]
    assert click.modal["title"] == "Auftrag 1 bearbeiten und neu starten"
    assert labels == ["Prompt", "Negativprompt"]
