"""The Help cog: /help tells a member, privately, every command, the inline parameters and the buttons.

Everything it lists comes from where it is defined (the command tree, bot/inline.py's table, bot/components.py's
buttons), so it stays true as commands and parameters change.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.components import LOOKS, PAN_WHAT, RESULT_ACTIONS, SELECT_WHAT, SINGLE_ACTIONS, VARY_WHAT
from bot.i18n import catalogue
from bot.i18n.speech import locale_of, say
from bot.i18n.translator import KEEP_NAMES
from bot.inline import INLINE

EXAMPLE = "a lighthouse at dawn, oil painting --ar 16:9 --seed 42 --no text, watermark"


def command_lines(tree_commands: list[app_commands.AppCommand | app_commands.Command | app_commands.Group |
                                    app_commands.ContextMenu], locale: str = "") -> list[str]:
    """One line per command of the tree: slash commands with their description, then the message menus, with the
    names and descriptions the member's client shows (``locale``)."""
    lines, menus = [], []
    for command in sorted(tree_commands, key=lambda c: c.name):
        if isinstance(command, app_commands.ContextMenu):
            menus.append(f"**{_name(command.name, locale)}**: " + say(locale, "on any message, through its menu "
                                                                                "\u2192 Apps"))
            continue
        needs = getattr(command, "default_permissions", None)  # Discord hides such a command from the others
        who = say(locale, " (Manage Server only)") if needs is not None and needs.manage_guild else ""
        subs = ""
        if isinstance(command, app_commands.Group):
            subs = " " + " \u00b7 ".join(_name(sub.name, locale) for sub in command.commands)
        lines.append(f"`/{_name(command.name, locale)}`{subs}: {say(locale, command.description)}{who}")
    return lines + menus


def _name(english: str, locale: str) -> str:
    """A command's name as the member's client shows it (/imagine keeps its own)."""
    return english if english in KEEP_NAMES else catalogue.name(english, locale) or english


def help_embed(tree_commands: list, gallery_url: str = "", locale: str = "") -> discord.Embed:  # type: ignore[type-arg]
    """What /help answers, in ``locale``: commands, inline parameters with an example, the buttons under a result,
    and where the member's gallery is (``gallery_url``, when there is one)."""
    embed = discord.Embed(title=say(locale, "How to use Imagine"),
                          description="\n".join(command_lines(tree_commands, locale)))
    inline = [f"`--{p.names[0]}{' ' + p.example if p.example else ''}`: {say(locale, p.meaning)}"
              + (say(locale, " (also {names})", names=", ".join("--" + n for n in p.names[1:]))
                 if len(p.names) > 1 else "") for p in INLINE]
    embed.add_field(name=say(locale, "Inline parameters, typed after your prompt"), value="\n".join(inline),
                    inline=False)
    buttons = [f"**{say(locale, LOOKS[action].label)}**: {say(locale, LOOKS[action].what)}"
               for action in RESULT_ACTIONS]
    cancel = LOOKS["cancel"]
    buttons += [f"**V1\u2013V4**: {say(locale, VARY_WHAT)}",
                f"**U1\u2013U4**: {say(locale, SELECT_WHAT)} {say(locale, '(below)')}",
                f"**{say(locale, cancel.label)}** {say(locale, '(while it waits)')}: {say(locale, cancel.what)}"]
    embed.add_field(name=say(locale, "Buttons under a result"), value="\n".join(buttons), inline=False)
    single = [*(f"**{say(locale, label)}**: {say(locale, what)}" for _, label, _, what in SINGLE_ACTIONS if label),
              f"**{' '.join(emoji for _, label, emoji, _ in SINGLE_ACTIONS if not label)}**: {say(locale, PAN_WHAT)}"]
    embed.add_field(name=say(locale, "Buttons under one image (after U)"), value="\n".join(single), inline=False)
    embed.add_field(name=say(locale, "Example"), value=f"`/imagine prompt: {render.safe(EXAMPLE, 200)}`",
                    inline=False)
    if gallery_url:
        embed.add_field(name=say(locale, "Your images on the web"), value=say(
            locale, "{url}/ (log in with Discord: search, download and delete what you made)", url=gallery_url),
            inline=False)
    return embed


class HelpCog(commands.Cog, name="Help"):
    """/help, for anyone, answered privately."""

    def __init__(self, bot: commands.Bot, gallery_url: str = "") -> None:
        self.bot = bot
        self.gallery_url = gallery_url

    @app_commands.command(name="help", description="What the commands, inline parameters and buttons do")
    async def help(self, interaction: discord.Interaction) -> None:
        """Answer with the help, only for the member."""
        embed = help_embed(self.bot.tree.get_commands(), self.gallery_url, locale_of(interaction))
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=render.NO_MENTIONS)
