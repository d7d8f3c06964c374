"""The commands in members' languages: what the bot syncs to Discord (through discord.py against the emulator)
carries every name, description and choice in de, es-ES, es-419, fr, ja and pt-BR, within Discord's limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import regex

from bot.i18n import catalogue
from bot.i18n.translator import KEEP_NAMES
from engine.engine_settings import SCHEDULERS
from tests.support.discord_emulator import FakeDiscord

LOCALES = ("de", "es-ES", "es-419", "fr", "ja", "pt-BR")
# what Discord accepts as a slash command or option name (lower case where the script has case)
NAME_RE = regex.compile(r"^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$")
SIZE_RE = regex.compile(r"^\d+x\d+ \(\d+:\d+\)$")  # "1024x1024 (1:1)": the same in every language


def _walk(command: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named thing of a command: itself ("command"), its options ("option") and choices ("choice")."""
    yield "command", command
    for option in command.get("options") or []:
        if option["type"] in (1, 2):  # a subcommand or a group: a command of its own
            yield from _walk(option)
            continue
        yield "option", option
        for choice in option.get("choices") or []:
            yield "choice", choice


@pytest.fixture
async def synced(engine, fake: FakeDiscord, start_bot) -> list[dict[str, Any]]:
    """The commands as the bot declared them to Discord."""
    async with start_bot(engine):
        return fake.commands()


async def test_every_name_and_description_is_sent_in_every_language(synced) -> None:
    """Each command, option and choice has a localization for every language, except /imagine's name, sizes and
    sampler names (the same everywhere)."""
    missing = []
    for command in synced:
        for kind, item in _walk(command):
            technical = kind == "choice" and (SIZE_RE.match(item["name"]) or item["name"] in SCHEDULERS)
            names = item.get("name_localizations") or {}
            if not technical and item["name"] not in KEEP_NAMES and set(names) != set(LOCALES):
                missing.append((command["name"], kind, item["name"], sorted(set(LOCALES) - set(names))))
            if item.get("description") and set(item.get("description_localizations") or {}) != set(LOCALES):
                missing.append((command["name"], kind, item["description"], "description"))
    assert missing == []


async def test_localized_names_and_descriptions_fit_discords_rules(synced) -> None:
    """Slash command and option names: 1-32 letters, digits, - or _, lower case; descriptions and choice names: at
    most 100 characters; option names unique within their command in each language."""
    wrong = []
    for command in synced:
        slash = command.get("type", 1) == 1
        for kind, item in _walk(command):
            for locale, name in (item.get("name_localizations") or {}).items():
                if kind == "choice" or not slash:
                    ok = 1 <= len(name) <= (100 if kind == "choice" else 32)
                else:
                    ok = bool(NAME_RE.match(name)) and name == name.lower()
                if not ok:
                    wrong.append((locale, kind, name))
            for locale, text in (item.get("description_localizations") or {}).items():
                if not 1 <= len(text) <= 100:
                    wrong.append((locale, "description", text))
        for holder in [command, *(o for o in command.get("options") or [] if o["type"] in (1, 2))]:
            options = [o for o in holder.get("options") or [] if o["type"] not in (1, 2)]
            for locale in LOCALES:
                names = [(o.get("name_localizations") or {}).get(locale, o["name"]) for o in options]
                if len(names) != len(set(names)):
                    wrong.append((locale, "duplicate options", holder["name"], names))
    assert wrong == []


async def test_imagine_keeps_its_name_and_help_is_translated(synced) -> None:
    """A member in German sees /imagine (its own name everywhere) and /hilfe with a German description."""
    by_name = {c["name"]: c for c in synced}
    assert not (by_name["imagine"].get("name_localizations") or {})
    assert by_name["imagine"]["description_localizations"]["de"] == "Bilder aus einer Textbeschreibung erzeugen"
    assert by_name["help"]["name_localizations"]["de"] == "hilfe"
    assert by_name["help"]["name_localizations"]["ja"] == "ヘルプ"
    assert by_name["help"]["name_localizations"]["es-419"] == by_name["help"]["name_localizations"]["es-ES"]


def test_a_number_from_the_settings_is_carried_into_the_translation() -> None:
    """MAX_STEPS=50 makes the English "Denoising steps (1-50)": each language says 50 too."""
    assert catalogue.text("Denoising steps (1-50)", "fr") == "Étapes de débruitage (1-50)"
    assert catalogue.text("Denoising steps (1-50)", "en-US") is None


def test_every_language_file_has_every_entry() -> None:
    """The files name the same entries, and each translation has the placeholders of its English text."""
    english = catalogue.language("de")
    for code in catalogue.LANGUAGES:
        data = catalogue.language(code)
        assert set(data["names"]) == set(english["names"]), code
        assert set(data["texts"]) == set(english["texts"]), code
        for key, template in data["texts"].items():
            for hole in (r"\{\d+\}", r"\{\{\w+\}\}"):  # the numbers, and the fields filled after translation
                assert sorted(regex.findall(hole, template)) == sorted(regex.findall(hole, key)), (code, key)


def test_a_text_without_fields_is_said_as_it_is() -> None:
    """A fixed text (a button label, a description) goes out whole, a brace in it included; fields fill a
    template only when values are given."""
    from bot.i18n.speech import say

    assert say("", "pick {a, b} choices") == "pick {a, b} choices"
    assert say("de", "Reroll") == "Neu würfeln"
    assert say("de", "step {step}/{total}", step=2, total=4) == "Schritt 2/4"
