"""Everything the bot builds stays within Discord's limits with the longest inputs, checked against Discord's own
OpenAPI spec (tests/support/discord_contract.py): forms, buttons, embeds, texts and alt text."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot import render
from bot.components import pending_view, result_view
from bot.modals import FormKeys, edit_form, vary_form
from engine.jobs.records import Job, Requester
from engine.requests.checks import MAX_PROMPT_CHARS
from engine.requests.params import MAX_SEED
from engine.requests.styles import NAME_MAX
from tests.engine.helpers import params
from tests.support.discord_contract import contract

CALLBACK = "/interactions/1579265020670377986/token/callback"
ORIGINAL = "/webhooks/1579265020670377986/token/messages/@original"
BIG_ID = 10**15  # a job id far beyond a year of a busy bot
LONGEST = "\u00e9" * MAX_PROMPT_CHARS  # the longest prompt a member may type (a 2-byte character, for good measure)


def longest_job(count: int = 4) -> Job:
    """A finished job with the longest prompt, negative prompt and style name, at the largest seed."""
    p = replace(params(LONGEST, count=count, negative=LONGEST), seed=MAX_SEED, style="s" * NAME_MAX,
                user_prompt=LONGEST, user_negative=LONGEST)
    return Job(id=BIG_ID, state="done", priority=0, requester=Requester("1" * 20, user_name="n" * 32), params=p,
               created_at=0.0, gen_seconds=12345.6, results=tuple(f"/r/{i}.png" for i in range(count)))


def refused(method: str, path: str, body: dict) -> list[str]:
    return [str(v) for v in contract().request_violations(method, path, body)]


@pytest.mark.parametrize("which", ["edit", "vary"])
def test_forms_fit_with_the_longest_prompt(which: str) -> None:
    """The Edit and Vary forms, filled with a 6 000-character prompt, are forms Discord opens."""
    keys = FormKeys(b"secret")
    form = edit_form(BIG_ID, longest_job().params, keys.key("editform:1", 1)) if which == "edit" else \
        vary_form("f" * 16, LONGEST, 0.6)
    assert refused("POST", CALLBACK, {"type": 9, "data": form.to_dict()}) == []


def test_a_result_message_fits_with_the_longest_inputs() -> None:
    """The result (embed, every button, attachments with alt text) for four images with the longest inputs."""
    job = longest_job()
    attachments = [{"id": i, "filename": f"imagine-{BIG_ID}-{i}.webp", "description": render.alt_text(job, i)}
                   for i in range(4)]
    body = {"embeds": [render.result_embed(job, image_name=attachments[0]["filename"]).to_dict()],
            "components": result_view(BIG_ID, 4).to_components(), "attachments": attachments}
    assert refused("PATCH", ORIGINAL, body) == []


def test_info_and_waiting_texts_fit() -> None:
    """Info's answer and the waiting message with long notes are within a message's 2 000 characters."""
    job = longest_job()
    info = {"type": 4, "data": {"content": render.info_text(job, "s" * NAME_MAX), "flags": 64}}
    waiting = {"content": render.queued_text(99999, 99999.0, loading=True, notes=(LONGEST, LONGEST, LONGEST)),
               "components": pending_view(BIG_ID).to_components()}
    assert refused("POST", CALLBACK, info) == [] and refused("PATCH", ORIGINAL, waiting) == []


def test_alt_text_says_which_image_and_what_it_shows() -> None:
    """Each image's alt text names its place and the member's words, within Discord's 1 024 characters."""
    job = replace(longest_job(2), params=params("a red fox in the snow", count=2))
    assert render.alt_text(job, 1) == "Image 2 of 2: a red fox in the snow"
    assert len(render.alt_text(longest_job(), 0)) == render.ALT_TEXT_MAX
