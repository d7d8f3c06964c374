"""Prompt blocklists: whole words after case, Unicode and look-alike normalisation."""

from __future__ import annotations

import pytest

from engine.rules.moderation import find_blocked, normalize, normalize_word

WORDS = ["nude", "gore", "bad word"]


@pytest.mark.parametrize("prompt", [
    "a nude statue",
    "NUDE",
    "Nude, in the rain",
    "a ｎｕｄｅ statue",          # fullwidth letters
    "a NÚDE statue",              # accent
    "a nu\u0301de statue",        # combining accent
    "a n\u200bude statue",        # zero-width space inside the word
    "a nud3 statue",              # leetspeak
    "a n00d3... no, a nud3",
    "a (nude) statue",
    "lots of gore",
    "g0r3",
    "a bad word here",
    "a bad   word here",
    "a bad-word here",
])
def test_blocked_word_is_found(prompt: str) -> None:
    """Blocked words are found regardless of case, width, accents, zero-width characters and leetspeak."""
    assert find_blocked(prompt, WORDS)


@pytest.mark.parametrize("prompt", [
    "a nudibranch in the sea",
    "denuded hills",
    "nudes",
    "Gorey's drawings",
    "a gorgeous sunset",
    "mangoreef",
    "a good word",
])
def test_no_hit_inside_other_words(prompt: str) -> None:
    """A blocked word inside a longer word is not a hit."""
    assert find_blocked(prompt, WORDS) == []


def test_phrase_also_matches_without_separator() -> None:
    """A blocked phrase also matches when its words are run together (a common dodge)."""
    assert find_blocked("a badword", WORDS) == ["bad word"]


def test_hits_name_the_normalised_entries() -> None:
    """The result lists each matching entry once, in normal form."""
    assert find_blocked("ＮＵＤＥ and GORE and nude", ["Nude", "GORE", "cat"]) == ["nude", "gore"]


def test_empty_entries_are_ignored() -> None:
    """Blank blocklist entries never match."""
    assert find_blocked("anything at all", ["", "  ", "\u200b"]) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("ＡＢＣ", "abc"), ("Crème Brûlée", "creme brulee"), ("STRASSE", "strasse"), ("Straße", "strasse"),
    ("a\u200bb\ufeffc", "abc"),
])
def test_normalize(text: str, expected: str) -> None:
    """Normalisation folds width, case and accents and drops zero-width characters."""
    assert normalize(text) == expected


def test_normalize_word_collapses_spaces() -> None:
    """Stored entries have single spaces and no padding."""
    assert normalize_word("  Bad \t  Word ") == "bad word"
