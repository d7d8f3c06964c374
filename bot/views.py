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
                template=r"imagine:(?P<action>reroll|info|delete|cancel):(?P<job>\d+)"):
    """One button on a job's message; a click is handled by the Actions method of its name."""

    def __init__(self, action: str, job_id: int) -> None:
        label, emoji, style = _BUTTONS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style,
                                           custom_id=f"imagine:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> JobButton:
        return cls(match["action"], int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        actions: Actions = interaction.client.actions  # type: ignore[attr-defined]
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


def result_view(job_id: int) -> discord.ui.View:
    """Buttons under a finished result."""
    return _static(*(JobButton(action, job_id) for action in ("reroll", "info", "delete")))


def pending_view(job_id: int) -> discord.ui.View:
    """The button under a queued or running job."""
    return _static(JobButton("cancel", job_id))
