"""The bot's own sentences in a member's language: ``say(locale, "Queued — {where}", where=...)``.

The English template is the key (bot/i18n/catalogue.py); its ``{fields}`` are filled after translation, so
prompts, names and numbers go in as they are. A template without a translation is said in English. ``spoken`` says
the engine's Phrases (its errors, refusals and notes) the same way; ``localized`` a finished text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import discord

from bot.i18n.catalogue import text
from engine.requests.checks import Phrase


def say(locale: str, template: str, **values: Any) -> str:
    """``template`` in ``locale`` (a Discord locale code; "" for English), its fields filled with ``values``; a
    text without fields is said as it is (a brace in it is only a brace)."""
    said = (text(template, locale) if locale else None) or template
    return said.format(**values) if values else said


def spoken(phrase: Phrase | str, locale: str, escape: Callable[[str], str] | None = None) -> str:
    """An engine's ``phrase`` (an error, a refusal, a note) in ``locale`` where the catalogue has its template, its
    fields filled as they are (a field that is a Phrase said in ``locale`` too); in English otherwise. ``escape``
    makes each text field inert (a member's words, a file name) while the template and Phrase fields, the engine's
    own words, keep their markup (a Discord timestamp). Plain text is said as ``localized`` says it."""
    if isinstance(phrase, str):
        return localized(phrase, locale)
    if not phrase.fields:
        return localized(phrase.template, locale)
    values = {name: spoken(value, locale, escape) if isinstance(value, Phrase) else escape(value) if escape else value
              for name, value in phrase.fields}
    return say(locale, phrase.template, **values)


def localized(reply: str, locale: str) -> str:
    """A finished reply in ``locale`` where the catalogue has it (its numbers carried over, an emoji before it
    kept); else as it is. Texts with names or words inside are Phrases, said by ``spoken``."""
    if not locale:
        return reply
    whole = text(reply, locale)  # first: "--repeat is ..." is a sentence, not a mark before one
    if whole is not None:
        return whole
    head, gap, body = reply.partition(" ")
    if gap and head and not head[0].isalnum():  # "❌ the prompt is empty..."
        translated = text(body, locale)
        return f"{head} {translated}" if translated else reply
    return reply


def locale_of(interaction: discord.Interaction) -> str:
    """The language of what answers ``interaction``: the member's own (their Discord client's). Not the server's
    "preferred locale", which Discord sets to en-US for every server that is not a community one."""
    return interaction.locale.value


__all__ = ["locale_of", "localized", "say", "spoken"]
