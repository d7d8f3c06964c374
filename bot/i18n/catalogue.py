"""The translations: one JSON file per language beside this module, read once.

Each file has ``names`` (command, group and option names, by their English name) and ``texts`` (descriptions,
choice names and messages, by their English text with every number replaced by ``{0}``, ``{1}``...: a number in
the text, which may come from the operator's settings such as MAX_STEPS, is carried into the translation as it
is). English needs no file: a string without a translation stays English.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Discord's locale codes -> the file that answers them (both Spanish locales read es.json)
LOCALES: dict[str, str] = {"de": "de", "es-ES": "es", "es-419": "es", "fr": "fr", "ja": "ja", "pt-BR": "pt-BR"}
LANGUAGES: tuple[str, ...] = ("de", "es", "fr", "ja", "pt-BR")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def key_of(text: str) -> tuple[str, list[str]]:
    """``text`` with its numbers replaced by ``{0}``, ``{1}``... (braces doubled first), and the numbers."""
    numbers: list[str] = []

    def hole(match: re.Match[str]) -> str:
        numbers.append(match.group(0))
        return "{" + str(len(numbers) - 1) + "}"

    return _NUMBER.sub(hole, text.replace("{", "{{").replace("}", "}}")), numbers


@cache
def language(code: str) -> dict[str, dict[str, str]]:
    """One language's file (``names`` and ``texts``)."""
    data: dict[str, dict[str, str]] = json.loads((HERE / f"{code}.json").read_text(encoding="utf-8"))
    return data


def name(english: str, locale: str) -> str | None:
    """A command, group or option name in ``locale`` (a Discord locale code), None where it stays English."""
    code = LOCALES.get(locale)
    return language(code)["names"].get(english) if code else None


def text(english: str, locale: str) -> str | None:
    """A description, choice name or message in ``locale``, its numbers carried over; None where it stays English."""
    code = LOCALES.get(locale)
    if code is None:
        return None
    key, numbers = key_of(english)
    template = language(code)["texts"].get(key)
    return template.format(*numbers) if template is not None else None


__all__ = ["LANGUAGES", "LOCALES", "key_of", "language", "name", "text"]
