"""Result and progress buttons. The job id lives in each ``custom_id``, so they survive restarts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from bot.actions import Actions


def _actions(interaction: discord.Interaction) -> Actions:
    return interaction.client.actions  # type: ignore[attr-defined,no-any-return]


class RerollButton(discord.ui.DynamicItem[discord.ui.Button], template=r"imagine:reroll:(?P<job>\d+)"):
    """Run the same parameters again with a new seed, for whoever clicks."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Reroll", emoji="\U0001f3b2", style=discord.ButtonStyle.primary,
                                           custom_id=f"imagine:reroll:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> RerollButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _actions(interaction).reroll(interaction, self.job_id)


class InfoButton(discord.ui.DynamicItem[discord.ui.Button], template=r"imagine:info:(?P<job>\d+)"):
    """Show every parameter and a reproducing /imagine line, to the clicker only."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Info", emoji="\u2139\ufe0f", style=discord.ButtonStyle.secondary,
                                           custom_id=f"imagine:info:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> InfoButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _actions(interaction).info(interaction, self.job_id)


class DeleteButton(discord.ui.DynamicItem[discord.ui.Button], template=r"imagine:delete:(?P<job>\d+)"):
    """Delete the result message (requester or Manage Messages)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Delete", emoji="\U0001f5d1\ufe0f", style=discord.ButtonStyle.danger,
                                           custom_id=f"imagine:delete:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> DeleteButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _actions(interaction).delete(interaction, self.job_id)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=r"imagine:cancel:(?P<job>\d+)"):
    """Cancel a queued or running job (requester only)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", emoji="\u2716\ufe0f", style=discord.ButtonStyle.secondary,
                                           custom_id=f"imagine:cancel:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> CancelButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await _actions(interaction).cancel(interaction, self.job_id)


DYNAMIC_ITEMS = (RerollButton, InfoButton, DeleteButton, CancelButton)


def _static(*items: discord.ui.Item[Any]) -> discord.ui.View:
    # the dynamic items route clicks themselves, so the view is stopped: discord.py then does
    # not keep it in its view store (one per message forever)
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    view.stop()
    return view


def result_view(job_id: int) -> discord.ui.View:
    """Buttons under a finished result."""
    return _static(RerollButton(job_id), InfoButton(job_id), DeleteButton(job_id))


def pending_view(job_id: int) -> discord.ui.View:
    """The button under a queued or running job."""
    return _static(CancelButton(job_id))
