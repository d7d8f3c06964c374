"""Saying the engine's phrases (errors, refusals) in a member's language: bot/i18n/speech.py."""

from __future__ import annotations

from bot.i18n.speech import spoken
from engine.requests.checks import Phrase


def test_a_phrase_is_translated_with_its_fields_as_they_are() -> None:
    """The template is looked up, the values (names, words a member typed, numbers) go in untouched."""
    phrase = Phrase.of("model '{model}' is not offered here; choose from: {offer}", model="{x}", offer="a, b")
    assert spoken(phrase, "ja") == "モデル '{x}' はここでは提供されていません。次から選んでください: a, b"


def test_a_phrase_inside_a_phrase_is_translated_too() -> None:
    what = Phrase("this server's daily quota")
    phrase = Phrase.of("This would go over {what}: {used} of {limit} images used, {left} left. It resets at {at} "
                       "UTC, in {wait}.", what=what, used=3, limit=3, left=0, at="00:00", wait="5 h 2 min")
    assert spoken(phrase, "de") == ("Damit würdest du das tägliche Kontingent dieses Servers überschreiten: 3 von 3 "
                                    "Bildern verbraucht, 0 übrig. Es wird um 00:00 UTC zurückgesetzt, in 5 h 2 min.")


def test_a_phrase_the_catalogue_lacks_is_said_in_english() -> None:
    phrase = Phrase.of("the {thing} is not known to any catalogue", thing="gizmo")
    assert spoken(phrase, "fr") == "the gizmo is not known to any catalogue" == str(phrase)
    assert spoken(phrase, "") == str(phrase)


def test_a_phrase_without_fields_is_looked_up_whole() -> None:
    """A text starting with a non-letter ("--repeat ...") is a sentence, not an emoji before one."""
    assert spoken(Phrase("--repeat is given twice; keep one"), "de") == "--repeat steht zweimal da; lass eins stehen"


def test_a_canvas_error_is_a_phrase() -> None:
    from engine.requests.canvas_edits import CanvasEdit, CanvasError

    try:
        CanvasEdit.zoom_out("9x")
    except CanvasError as exc:
        said = spoken(exc.phrase, "fr")
    assert said == "le facteur de dézoom doit être compris entre 1.1 et 2 (reçu : 9)"


def test_a_settings_validators_error_keeps_its_phrase() -> None:
    """/prefer set style: and /settings go through pydantic validators: their errors still reach the member as
    phrases, in the member's language."""
    import pytest

    from engine.requests.params import Limits, ParamError
    from engine.rules.policy import validate_overrides

    with pytest.raises(ParamError) as info:
        validate_overrides({"style": "zzz"}, Limits.from_settings(_settings()), styles=())
    said = spoken(info.value.phrase, "es-ES")
    assert said.startswith("el estilo 'zzz' es desconocido; estilos conocidos: aún ninguno")


def test_an_error_keeps_a_discord_timestamp_and_escapes_the_members_words() -> None:
    """Each text field is made inert (a member's words), while the engine's own markup (a ban's end as a Discord
    timestamp) is kept: escaping the whole reply showed the timestamp as raw text."""
    from bot.replies import error_text
    from engine.jobs.records import Refused

    ban = Refused("denied", "You may not make images here until {until}. If you think this is a mistake, ask this "
                  "server's moderators (or the bot's operator).", until=Phrase("<t:1700000000:f>"))
    assert "<t:1700000000:f>" in error_text(ban, "de") and error_text(ban, "de").startswith("\u270b Du darfst")
    blocked = Refused("blocked", "Your prompt contains blocked words ({words}). Please rephrase it.", words="**x**")
    assert "\\*\\*x\\*\\*" in error_text(blocked, "")


def _settings():
    from engine.engine_settings import EngineSettings

    return EngineSettings(_env_file=None, model_id="m", data_dir="/tmp/unused")
