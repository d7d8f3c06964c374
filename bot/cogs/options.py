"""Choices shared by the slash commands' options; the sizes are the deployment's, so they are built at run time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from engine.engine_settings import SCHEDULERS, EngineSettings
from engine.requests.loras import LoraEntry
from engine.requests.models import ModelEntry
from engine.requests.params import NSFW_POLICIES, PICTURE_RULES, allowed
from engine.requests.styles import NO_STYLE, StyleBook
from engine.service import Engine

# Discord allows at most 25 choices per option, each name 1 to 100 characters
MAX_CHOICES = 25
CHOICE_NAME_MAX = 100

StyleCompleter = Callable[[discord.Interaction, str], Awaitable[list[app_commands.Choice[str]]]]


def size_choices(settings: EngineSettings) -> list[app_commands.Choice[str]]:
    """The deployment's sizes (SIZES), labelled with their aspect ratio."""
    return [app_commands.Choice(name=f"{s} ({s.aspect_label()})", value=str(s)) for s in settings.sizes[:MAX_CHOICES]]


def scheduler_choices() -> list[app_commands.Choice[str]]:
    """The samplers the engine knows."""
    return [app_commands.Choice(name=n, value=n) for n in SCHEDULERS]


def nsfw_policy_choices() -> list[app_commands.Choice[str]]:
    """allow, spoiler, block."""
    return [app_commands.Choice(name=p, value=p) for p in NSFW_POLICIES]


PICTURE_RULE_NAMES = {"off": "off", "nsfw_only": "in channels marked NSFW only", "on": "anywhere"}


def picture_rule_choices() -> list[app_commands.Choice[str]]:
    """Whether members may start from their own picture: off, in NSFW channels only, anywhere."""
    return [app_commands.Choice(name=PICTURE_RULE_NAMES[r], value=r) for r in PICTURE_RULES]


def style_completer(styles: StyleBook) -> StyleCompleter:
    """Autocomplete for a ``style`` option: the operator's styles matching what was typed, then ``none``.

    Read from memory (the StyleBook), so it answers well within Discord's 3 seconds.
    """

    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        found = styles.search(current, MAX_CHOICES - 1)
        choices = [app_commands.Choice(name=f"{s.name} \u2014 {s.template}"[:CHOICE_NAME_MAX], value=s.name)
                   for s in found]
        if NO_STYLE.startswith(current.strip().lower()):
            choices.append(app_commands.Choice(name="none (no style)", value=NO_STYLE))
        return choices

    return complete


def _allowed_here(engine: Engine, interaction: discord.Interaction) -> tuple[tuple[LoraEntry, ...],
                                                                             tuple[ModelEntry, ...]]:
    """The LoRAs and models members may choose where ``interaction`` was made (its server's lists)."""
    limits = engine.policy.limits
    d = engine.policy.defaults(str(interaction.guild_id) if interaction.guild_id else None)
    return allowed(limits.loras, d.loras_allowed), allowed(limits.models, d.models_allowed)


def _label(name: str, about: str, nsfw: bool) -> str:
    """A choice's name in Discord's list: the value, then its description, and where it may be used."""
    return (name + (" (nsfw channels only)" if nsfw else "") + (f" \u2014 {about}" if about else ""))[:CHOICE_NAME_MAX]


def model_completer(engine: Engine) -> StyleCompleter:
    """Autocomplete for a ``model`` option: the models allowed here matching what was typed, the default marked."""

    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        models = _allowed_here(engine, interaction)[1]
        word = current.strip().lower()
        return [app_commands.Choice(name=_label(e.name, e.description, e.nsfw), value=e.name)
                for e in models if e.name.startswith(word)][:MAX_CHOICES]

    return complete


def lora_completer(engine: Engine) -> StyleCompleter:
    """Autocomplete for a ``lora`` option, which takes several (``pixel:0.8 ink``): each LoRA allowed here matching
    the word being typed and not chosen yet, after the ones already typed, at its default weight; then ``none``."""

    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        offered = _allowed_here(engine, interaction)[0]
        head, _, last = current.strip().rpartition(" ")
        chosen = {token.partition(":")[0].lower() for token in head.split()}
        word = last.partition(":")[0].lower()
        choices = []
        for entry in offered:
            if entry.name.startswith(word) and entry.name not in chosen and len(choices) < MAX_CHOICES - 1:
                value = f"{head} {entry.name}:{entry.weight:g}".strip()
                about = entry.description or (f"adds: {entry.triggers}" if entry.triggers else "")
                choices.append(app_commands.Choice(name=_label(value, about, entry.nsfw), value=value[:100]))
        if not head and "none".startswith(word):
            choices.append(app_commands.Choice(name="none" if offered else "none (no LoRAs are offered here)",
                                               value="none"))
        return choices

    return complete
