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
