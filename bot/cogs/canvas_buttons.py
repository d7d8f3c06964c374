"""The canvas-edit buttons under a single image, one DynamicItem per behaviour: Zoom Out 2x and 1.5x, Custom Zoom (a
form), the four pans, and Vary (Region): a private copy of the image with a lettered grid and a select menu of its
cells, whose choice opens the form for the words (its submission is bot/cogs/forms.py's).

Why a grid: Discord has no drawing tool, and a web editor would need a login of its own and a browser round trip
for what is, at SDXL's scale, a coarse choice anyway. A 5x5 grid is what one select menu holds (25 options), is
chosen in two taps on a phone, and each choice is named (``A1``) in the result, so the member sees what was asked.

Like the other buttons they are rebuilt from each click's ``custom_id`` and go through the one submit flow.
"""

from __future__ import annotations

import io
import re
from typing import Any

import discord

from bot import render
from bot.cogs.buttons import Button, actions
from bot.cogs.image_buttons import place_rule, private_message, queue_made
from bot.components import (
    CUSTOM_ZOOM,
    PAN_TEMPLATE,
    REGION,
    REGION_PICK_TEMPLATE,
    ZOOM_TEMPLATE,
    image_template,
    per_image_button,
    region_picker,
    region_select,
)
from bot.i18n.speech import locale_of
from bot.modals import REGION_FORM, ZOOM_FORM, canvas_subject, region_form, zoom_form
from bot.replies import reply_ephemeral, reply_error
from engine.requests.canvas_edits import GRID, CanvasEdit
from engine.requests.params import ParamError


def _image_of(match: re.Match[str]) -> tuple[int, int]:
    return int(match["job"]), int(match["image"])


async def _gone(interaction: discord.Interaction, exc: ParamError) -> None:
    await reply_error(interaction, exc)


class ZoomButton(discord.ui.DynamicItem[Button], template=ZOOM_TEMPLATE):
    """Zoom Out 2x and 1.5x: the image shrunk in the middle of a canvas of its size, the border painted."""

    def __init__(self, job_id: int, image: int, factor: str) -> None:
        super().__init__(per_image_button(f"zoom{factor}", job_id, image))
        self.job_id, self.image, self.factor = job_id, image, factor

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ZoomButton:
        return cls(*_image_of(match), match["factor"])

    async def callback(self, interaction: discord.Interaction) -> None:
        edit = CanvasEdit.zoom_out(self.factor)
        await queue_made(interaction, actions(interaction).engine.remix.canvas(self.job_id, self.image, edit))


class PanButton(discord.ui.DynamicItem[Button], template=PAN_TEMPLATE):
    """⬅️ ➡️ ⬆️ ⬇️: the canvas grows that way (to an allowed size), only the new strip painted."""

    def __init__(self, job_id: int, image: int, direction: str) -> None:
        super().__init__(per_image_button(f"pan{direction}", job_id, image))
        self.job_id, self.image, self.direction = job_id, image, direction

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> PanButton:
        return cls(*_image_of(match), match["direction"])

    async def callback(self, interaction: discord.Interaction) -> None:
        edit = CanvasEdit(self.direction)
        await queue_made(interaction, actions(interaction).engine.remix.canvas(self.job_id, self.image, edit))


class CustomZoomButton(discord.ui.DynamicItem[Button], template=image_template(CUSTOM_ZOOM)):
    """Custom Zoom: a form for the factor (1.1 to 2) and the words, bound to the member who opened it."""

    def __init__(self, job_id: int, image: int) -> None:
        super().__init__(per_image_button(CUSTOM_ZOOM, job_id, image))
        self.job_id, self.image = job_id, image

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> CustomZoomButton:
        return cls(*_image_of(match))

    async def callback(self, interaction: discord.Interaction) -> None:
        flow = actions(interaction)
        try:  # said now, not after the member has typed a prompt
            job = await flow.engine.remix.editable(self.job_id, self.image, "Custom Zoom")
        except ParamError as exc:
            await _gone(interaction, exc)
            return
        key = flow.form_keys.key(canvas_subject(ZOOM_FORM, self.job_id, self.image), interaction.user.id)
        await interaction.response.send_modal(zoom_form(self.job_id, self.image, job.params, key,
                                                        locale_of(interaction)))


class RegionButton(discord.ui.DynamicItem[Button], template=image_template(REGION)):
    """Vary (Region): the image with its grid, only for the member, and a select menu of its cells."""

    def __init__(self, job_id: int, image: int) -> None:
        super().__init__(per_image_button(REGION, job_id, image))
        self.job_id, self.image = job_id, image

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RegionButton:
        return cls(*_image_of(match))

    async def callback(self, interaction: discord.Interaction) -> None:
        allowed = await place_rule(interaction, self.job_id, self.image)  # the image is shown again, privately
        if allowed is None:
            return
        try:
            png = await actions(interaction).engine.remix.region_grid(self.job_id, self.image)
        except ParamError as exc:
            await _gone(interaction, exc)
            return
        grid = discord.File(io.BytesIO(png), filename=f"region-{self.job_id}-{self.image + 1}.png",
                            spoiler=allowed[1] == "spoiler", description="The image with a 5 by 5 grid of cells")
        await interaction.response.send_message(
            f"**Vary (Region)** of image {self.image + 1} of job {self.job_id}: choose the cells to paint again "
            f"(columns A\u2013E, rows 1\u20135), then say what goes there. The rest of the image stays as it is.",
            file=grid, view=region_picker(self.job_id, self.image, private_message(interaction)), ephemeral=True,
            allowed_mentions=render.NO_MENTIONS)


class RegionSelect(discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]], template=REGION_PICK_TEMPLATE):
    """The cells chosen under a Vary (Region) grid: opens the form for their words, bound to the member."""

    def __init__(self, job_id: int, image: int, private: bool) -> None:
        super().__init__(region_select(job_id, image, private))
        self.job_id, self.image, self.private = job_id, image, private

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RegionSelect:
        return cls(*_image_of(match), bool(match["private"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        chosen = [str(v) for v in (interaction.data or {}).get("values", [])]  # type: ignore[union-attr]
        if not chosen or any(not v.isdigit() or int(v) >= GRID * GRID for v in chosen):
            await reply_ephemeral(interaction, "Choose one or more cells of the grid (A1 to E5).")
            return
        cells = sum(1 << int(v) for v in set(chosen))
        flow = actions(interaction)
        try:
            job = await flow.engine.remix.editable(self.job_id, self.image, "Vary (Region)")
        except ParamError as exc:
            await _gone(interaction, exc)
            return
        subject = canvas_subject(REGION_FORM, self.job_id, self.image, cells, self.private)
        key = flow.form_keys.key(subject, interaction.user.id)
        await interaction.response.send_modal(region_form(self.job_id, self.image, cells, self.private, job.params,
                                                          key, locale_of(interaction)))


CANVAS_BUTTONS = (ZoomButton, PanButton, CustomZoomButton, RegionButton, RegionSelect)
