"""Choices shared by the slash commands' options; the sizes are the deployment's, so they are built at run time."""

from __future__ import annotations

from discord import app_commands

from engine.params import NSFW_POLICIES
from engine.settings import SCHEDULERS, EngineSettings

# Discord allows at most 25 choices per option
MAX_CHOICES = 25


def size_choices(settings: EngineSettings) -> list[app_commands.Choice[str]]:
    """The deployment's sizes (SIZES), labelled with their aspect ratio."""
    return [app_commands.Choice(name=f"{s} ({s.aspect_label()})", value=str(s)) for s in settings.sizes[:MAX_CHOICES]]


def scheduler_choices() -> list[app_commands.Choice[str]]:
    """The samplers the engine knows."""
    return [app_commands.Choice(name=n, value=n) for n in SCHEDULERS]


def nsfw_policy_choices() -> list[app_commands.Choice[str]]:
    """allow, spoiler, block."""
    return [app_commands.Choice(name=p, value=p) for p in NSFW_POLICIES]
