"""discord.py's translator for the command tree: every command, group and option name, description and choice the
bot declares is sent to Discord with its translations (``name_localizations``, ``description_localizations``), so
a member whose client is in German sees ``/hilfe`` and German descriptions. ``/imagine`` keeps its name in every
language: it is the bot's name for itself, in every guide and in members' habits."""

from __future__ import annotations

from discord import Locale, app_commands

from bot.i18n import catalogue

KEEP_NAMES = frozenset({"imagine"})
_NAMES = {app_commands.TranslationContextLocation.command_name, app_commands.TranslationContextLocation.group_name,
          app_commands.TranslationContextLocation.parameter_name}


class CatalogueTranslator(app_commands.Translator):
    """Translations from bot/i18n's files."""

    async def translate(self, string: app_commands.locale_str, locale: Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        """``string`` in ``locale``, or None to keep the English."""
        if context.location in _NAMES:
            return None if string.message in KEEP_NAMES else catalogue.name(string.message, locale.value)
        return catalogue.text(string.message, locale.value)


__all__ = ["KEEP_NAMES", "CatalogueTranslator"]
