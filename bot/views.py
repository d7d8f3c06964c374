"""Result and progress buttons. The job id lives in each ``custom_id``, so they survive restarts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from bot.actions import Actions

# action -> (label, emoji, style); the action names the Actions method a click runs
_BUTTONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "reroll": ("Reroll", "\U0001f3b2", discord.ButtonStyle.primary),  # same parameters, new seed
    "info": ("Info", "\u2139\ufe0f", discord.ButtonStyle.secondary),  # every parameter, to the clicker only
    "delete": ("Delete", "\U0001f5d1\ufe0f", discord.ButtonStyle.danger),  # requester or Manage Messages
    "cancel": ("Cancel", "\u2716\ufe0f", discord.ButtonStyle.secondary),  # requester only
}


class JobButton(discord.ui.DynamicItem[discord.ui.Button],
                template=r"imagine:(?P<action>reroll|info|delete|cancel|vary):(?P<job>\d+)(?::(?P<image>\d+))?"):
    """One button on a job's message; a click is handled by the Actions method of its name.

    ``vary`` buttons (V1..V4) also carry the 0-based image index: ``imagine:vary:<job>:<image>``.
    """

    def __init__(self, action: str, job_id: int, image: int | None = None) -> None:
        if action == "vary":
            assert image is not None
            # the first row holds reroll/info/delete, the V buttons the next ones (5 per row, MAX_COUNT <= 10)
            button = discord.ui.Button(label=f"V{image + 1}", style=discord.ButtonStyle.secondary, row=1 + image // 5,
                                       custom_id=f"imagine:vary:{job_id}:{image}")
        else:
            label, emoji, style = _BUTTONS[action]
            button = discord.ui.Button(label=label, emoji=emoji, style=style, row=0,
                                       custom_id=f"imagine:{action}:{job_id}")
        super().__init__(button)
        self.action = action
        self.job_id = job_id
        self.image = image

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> JobButton:
        image = match["image"]
        if (match["action"] == "vary") != (image is not None):
            raise ValueError(f"malformed button id {item.custom_id!r}")  # type: ignore[attr-defined]
        return cls(match["action"], int(match["job"]), int(image) if image is not None else None)

    async def callback(self, interaction: discord.Interaction) -> None:
        actions: Actions = interaction.client.actions  # type: ignore[attr-defined]
        if self.action == "vary":
            assert self.image is not None  # from_custom_id refuses a vary id without an image
            await actions.vary(interaction, self.job_id, self.image)
        else:
            await getattr(actions, self.action)(interaction, self.job_id)


DYNAMIC_ITEMS = (JobButton,)


def _static(*items: discord.ui.Item[Any]) -> discord.ui.View:
    # the dynamic item routes clicks itself, so the view is stopped: discord.py then does not keep
    # it in its view store (one per message forever)
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    view.stop()
    return view


def result_view(job_id: int, images: int) -> discord.ui.View:
    """Buttons under a finished result: reroll, info, delete, and V1..Vn (variations of image n)."""
    return _static(*(JobButton(action, job_id) for action in ("reroll", "info", "delete")),
                   *(JobButton("vary", job_id, i) for i in range(images)))


def pending_view(job_id: int) -> discord.ui.View:
    """The button under a queued or running job."""
    return _static(JobButton("cancel", job_id))
