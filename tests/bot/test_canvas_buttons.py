"""Zoom Out, Pan, Custom Zoom and Vary (Region) under a single image, through discord.py against the emulator: each
queues a canvas edit for whoever clicks, through the same submit flow as /imagine."""

from __future__ import annotations

import io
import re

from PIL import Image

from tests.bot.conftest import message_has_result
from tests.bot.test_commands import _answer
from tests.support.discord_emulator import CALLBACK_MODAL, FakeDiscord


async def _single(fake: FakeDiscord, prompt: str = "a red fox --seed 11") -> dict:
    """A result's image 1 posted alone (U1): the message with the canvas buttons."""
    grid = await (await fake.slash("imagine", {"prompt": prompt})).wait_original(message_has_result, timeout=30)
    pressed = await fake.click("imagine:select:1:0", int(grid["id"]))
    return await pressed.wait_original(message_has_result, timeout=30)


def _fields(message: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}


async def test_a_single_image_has_the_zoom_region_and_pan_rows(engine, fake: FakeDiscord, start_bot):
    """Below the vary and upscale row: Zoom Out 2x, 1.5x, Custom Zoom and Vary (Region), then the four arrows."""
    async with start_bot(engine):
        single = await _single(fake)
    rows = [[c["custom_id"] for c in row["components"]] for row in single["components"]]
    assert rows[1:] == [["imagine:zoom2:1:0", "imagine:zoom1.5:1:0", "imagine:zoomcustom:1:0", "imagine:region:1:0"],
                        ["imagine:panleft:1:0", "imagine:panright:1:0", "imagine:panup:1:0", "imagine:pandown:1:0"]]
    assert [c.get("label") for c in single["components"][1]["components"]] == [
        "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom", "Vary (Region)"]
    assert all("label" not in c and c["emoji"] for c in single["components"][2]["components"])


async def test_zoom_out_queues_a_zoom_for_the_clicker(engine, fake: FakeDiscord, start_bot):
    """Zoom Out 2x by another member: a job of theirs at the image's size, which says what it zoomed."""
    async with start_bot(engine):
        single = await _single(fake)
        click = await fake.click("imagine:zoom2:1:0", int(single["id"]), user=fake.add_user("bob"))
        zoomed = await click.wait_original(message_has_result, timeout=60)
    job = await engine.get_job(2)
    assert (job.params.canvas, job.params.zoom, job.params.width, job.requester.user_name) == ("zoom", 2.0, 64, "bob")
    assert _fields(zoomed)["Zoom Out 2x of"] == "job 1, image 1"


async def test_pan_left_makes_a_wider_image(engine, fake: FakeDiscord, start_bot):
    """⬅️ on a 64x64 image: a 96x64 result (the allowed size nearest half as wide again)."""
    async with start_bot(engine):
        single = await _single(fake)
        panned = await (await fake.click("imagine:panleft:1:0", int(single["id"]))).wait_original(
            message_has_result, timeout=60)
    with Image.open(io.BytesIO(fake.attachment_bytes(panned["attachments"][0]))) as image:
        assert image.size == (96, 64)
    assert _fields(panned)["Pan left of"] == "job 1, image 1"


async def test_a_pan_past_the_widest_size_says_what_works(engine, fake: FakeDiscord, start_bot):
    """➡️ on a 96x64 image (the widest size offered): refused privately, naming the size and the other ways."""
    async with start_bot(engine):
        single = await _single(fake, "a red fox --ar 3:2 --seed 11")
        text = await _answer(await fake.click("imagine:panright:1:0", int(single["id"])))
    assert "no size this server offers is wider than 96x64" in text and "pan it up or down, or zoom out" in text
    assert await engine.get_job(2) is None


async def test_custom_zoom_takes_the_factor_and_words_from_its_form(engine, fake: FakeDiscord, start_bot):
    """Custom Zoom opens a form (factor 2 filled in); 1.5 with new words queues that zoom in those words."""
    async with start_bot(engine):
        single = await _single(fake)
        click = await fake.click("imagine:zoomcustom:1:0", int(single["id"]))
        assert await click.wait_acked(timeout=3) == CALLBACK_MODAL
        assert re.fullmatch(r"imagine:zoomform:1:0:[0-9a-f]{16}", click.modal["custom_id"])
        submit = await fake.submit_modal(click.modal["custom_id"],
                                         {"zoom": "1.5x", "prompt": "a red fox in a meadow", "negative": ""})
        await submit.wait_original(message_has_result, timeout=60)
    params = (await engine.get_job(2)).params
    assert (params.canvas, params.zoom, params.prompt, params.source_job) == ("zoom", 1.5, "a red fox in a meadow", 1)


async def test_custom_zoom_out_of_range_says_the_range(engine, fake: FakeDiscord, start_bot):
    """A factor of 3 is refused with the allowed range, and nothing is queued."""
    async with start_bot(engine):
        single = await _single(fake)
        click = await fake.click("imagine:zoomcustom:1:0", int(single["id"]))
        await click.wait_acked(timeout=3)
        text = await _answer(await fake.submit_modal(click.modal["custom_id"],
                                                     {"zoom": "3", "prompt": "a fox", "negative": ""}))
    assert "the zoom-out factor must be from 1.1 to 2 (got 3)" in text
    assert await engine.get_job(2) is None


async def test_someone_elses_zoom_form_is_refused(engine, fake: FakeDiscord, start_bot):
    """A Custom Zoom form is bound to the member it was shown to."""
    async with start_bot(engine):
        single = await _single(fake)
        click = await fake.click("imagine:zoomcustom:1:0", int(single["id"]))
        await click.wait_acked(timeout=3)
        text = await _answer(await fake.submit_modal(click.modal["custom_id"], {"zoom": "2", "prompt": "x"},
                                                     user=fake.add_user("mallory")))
    assert text.startswith("This form was not opened by you")


async def test_vary_region_shows_the_grid_then_paints_the_chosen_cells(engine, fake: FakeDiscord, start_bot):
    """Vary (Region): a private copy of the image with a 5x5 grid and a select menu of its 25 cells; choosing A1 and
    B2 opens the form, and its submission repaints those two cells in the new words."""
    async with start_bot(engine):
        single = await _single(fake)
        click = await fake.click("imagine:region:1:0", int(single["id"]))
        chooser = await click.wait_original(lambda m: bool(m.get("components")), timeout=30)
        assert chooser["flags"] & 64  # only the member sees it
        with Image.open(io.BytesIO(fake.attachment_bytes(chooser["attachments"][0]))) as grid:
            assert grid.size == (64, 64)
        select = chooser["components"][0]["components"][0]
        assert select["custom_id"] == "imagine:regionpick:1:0" and select["max_values"] == 25
        assert [o["label"] for o in select["options"]][:6] == ["A1", "B1", "C1", "D1", "E1", "A2"]
        picked = await fake.click("imagine:regionpick:1:0", int(chooser["id"]), values=["0", "6"])
        assert await picked.wait_acked(timeout=3) == CALLBACK_MODAL
        assert re.fullmatch(r"imagine:regionform:1:0:41:[0-9a-f]{16}", picked.modal["custom_id"])
        # as Discord does, the submission names the message the form was opened from: the private grid
        submit = await fake.submit_modal(picked.modal["custom_id"], {"prompt": "a blue fox", "negative": ""},
                                         message_id=int(chooser["id"]))
        result = await submit.wait_original(message_has_result, timeout=60)
    params = (await engine.get_job(2)).params
    assert (params.canvas, params.region, params.prompt) == ("region", 0b1000001, "a blue fox")
    assert _fields(result)["Vary (Region) A1, B2 of"] == "job 1, image 1"
    assert not result.get("flags", 0) & 64  # public like the image it repaints, though the grid was private


async def test_vary_region_of_a_private_result_stays_private(engine, fake: FakeDiscord, start_bot):
    """From a private result's single image, the grid's form makes a private job (the grid cannot tell, its id does)."""
    async with start_bot(engine):
        grid = await (await fake.slash("imagine", {"prompt": "a red fox --seed 11", "private": True})).wait_original(
            message_has_result, timeout=30)
        single = await (await fake.click("imagine:select:1:0", int(grid["id"]))).wait_original(
            message_has_result, timeout=30)
        chooser = await (await fake.click("imagine:region:1:0", int(single["id"]))).wait_original(
            lambda m: bool(m.get("components")), timeout=30)
        assert chooser["components"][0]["components"][0]["custom_id"] == "imagine:regionpick:1:0:p"
        picked = await fake.click("imagine:regionpick:1:0:p", int(chooser["id"]), values=["24"])
        await picked.wait_acked(timeout=3)
        submit = await fake.submit_modal(picked.modal["custom_id"], {"prompt": "a red fox", "negative": ""},
                                         message_id=int(chooser["id"]))
        result = await submit.wait_original(message_has_result, timeout=60)
    assert result["flags"] & 64 and (await engine.get_job(2)).requester.delivery["private"]
