"""The Prefer cog: /prefer shows, sets or resets a member's own defaults for their requests, wherever they use
/imagine (engine/rules/preferences.py keeps and applies them; an option typed in a request still wins).

Built per instance like /settings: the number options declare the deployment's bounds, so annotations are
evaluated at definition time (no ``from __future__ import annotations``).
"""

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.cogs.options import size_choices, style_completer
from bot.i18n.speech import locale_of, say
from bot.replies import reply_ephemeral, reply_error
from engine.engine_settings import EngineSettings
from engine.requests.params import ParamError
from engine.rules.preferences import PREF_FIELDS, PRIVATE, REMIX, SWITCHES, TRANSLATE
from engine.service import Engine

_LABELS = {"size": "Size", "steps": "Steps", "guidance": "Guidance", "count": "Images", "negative_prompt": "Negative",
           "fast": "Fast mode", "style": "Style", PRIVATE: "Private results", REMIX: "Remix",
           TRANSLATE: "Translate"}
_SHOWN = (*PREF_FIELDS, *SWITCHES)


def prefs_text(prefs: dict[str, Any], *, changed: bool = False, locale: str = "") -> str:
    """What /prefer answers, in ``locale``: the member's preferences, or that they have none, and how they apply."""
    head = "\u2705 " + say(locale, "Saved.") + " " if changed else ""
    if not prefs:
        return head + say(locale, "You have no preferences: each server's defaults apply. `/prefer set` chooses your "
                                  "own size, steps, guidance, images, negative prompt, fast mode or style, private "
                                  "results, remix mode or translation.")
    shown = []
    for key in _SHOWN:
        if key in prefs:
            value = prefs[key]
            text = say(locale, "on" if value else "off") if key in ("fast", *SWITCHES) else \
                (value or say(locale, "none")) if key == "style" else value
            shown.append(f"{say(locale, _LABELS[key])} "
                         f"{render.safe(f'{text:g}' if isinstance(text, float) else str(text), 200)}")
    return (head + "**" + say(locale, "Your preferences") + "** " + say(
        locale, "(wherever you use /imagine; an option you type wins, and a server's limits still hold)") + "\n" +
        " \u00b7 ".join(shown))


class PreferCog(commands.Cog, name="Prefer"):
    """A member's own defaults, for the member alone."""

    def __init__(self, bot: commands.Bot, engine: Engine) -> None:
        self.bot = bot
        self.engine = engine
        self.group = self._build_group(engine.settings)

    async def cog_load(self) -> None:
        """Add /prefer to the tree (built in ``__init__``)."""
        self.bot.tree.add_command(self.group)

    async def cog_unload(self) -> None:
        """Take /prefer away again."""
        self.bot.tree.remove_command(self.group.name)

    def _build_group(self, settings: EngineSettings) -> app_commands.Group:
        group = app_commands.Group(name="prefer", description="Your own defaults for /imagine, wherever you use it")
        max_steps, max_guidance, max_count = settings.max_steps, float(settings.max_guidance), settings.max_count

        @group.command(name="show", description="Show your preferences")
        async def show(interaction: discord.Interaction) -> None:
            await reply_ephemeral(interaction, prefs_text(await self.engine.preferences.get(str(interaction.user.id)),
                                                          locale=locale_of(interaction)))

        @group.command(name="set", description="Choose your own defaults (the options you leave out stay as they are)")
        @app_commands.describe(
            size="Your size", steps="Your steps", guidance="Your guidance", count="Your number of images",
            negative_prompt="Your negative prompt (where you type none; it replaces the server's default one)",
            fast="Fast mode by default",
            style="Your style preset (none: no style, even where the server has one)",
            private="Your results reach only you (a private message; by DM if it takes longer than 15 minutes)",
            remix="Reroll and V buttons ask you for new words first",
            translate="Your words go to the model in English (where the bot has a translation model)")
        @app_commands.choices(size=size_choices(settings))
        @app_commands.autocomplete(style=style_completer(self.engine.styles))
        async def set_(interaction: discord.Interaction, size: str | None = None,
                       steps: app_commands.Range[int, 1, max_steps] | None = None,
                       guidance: app_commands.Range[float, 0.0, max_guidance] | None = None,
                       count: app_commands.Range[int, 1, max_count] | None = None,
                       negative_prompt: str | None = None, fast: bool | None = None, style: str | None = None,
                       private: bool | None = None, remix: bool | None = None,
                       translate: bool | None = None) -> None:
            changes = {k: v for k, v in dict(size=size, steps=steps, guidance=guidance, count=count,
                                             negative_prompt=negative_prompt, fast=fast, style=style,
                                             private=private, remix=remix, translate=translate).items()
                       if v is not None}
            if not changes:
                await reply_ephemeral(interaction, "Give at least one option to set; `/prefer show` lists yours.")
                return
            try:
                prefs = await self.engine.preferences.set(str(interaction.user.id), changes)
            except ParamError as exc:
                await reply_error(interaction, exc)
                return
            await reply_ephemeral(interaction, prefs_text(prefs, changed=True, locale=locale_of(interaction)))

        @group.command(name="reset", description="Forget one of your preferences, or all of them")
        @app_commands.describe(which="The preference to forget (leave empty: all of them)")
        @app_commands.choices(which=[app_commands.Choice(name=_LABELS[k], value=k) for k in _SHOWN])
        async def reset(interaction: discord.Interaction, which: str | None = None) -> None:
            user = str(interaction.user.id)
            if which:
                prefs = await self.engine.preferences.set(user, {which: None})
            else:
                await self.engine.preferences.reset(user)
                prefs = {}
            await reply_ephemeral(interaction, prefs_text(prefs, changed=True, locale=locale_of(interaction)))

        return group
