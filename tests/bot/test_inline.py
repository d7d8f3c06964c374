"""Parsing Midjourney-style inline parameters (pure function)."""

from __future__ import annotations

import pytest

from bot.inline import parse_inline
from engine.requests.params import ParamError


def test_plain_prompt_has_no_parameters():
    """Text without -- is all prompt."""
    assert parse_inline("a red fox").values == {} and parse_inline("a red fox").prompt == "a red fox"


def test_no_takes_everything_up_to_the_next_parameter():
    """--no keeps commas and spaces until the next --name."""
    parsed = parse_inline("castle --no text, watermark, people --seed 4")
    assert parsed.values == {"negative_prompt": "text, watermark, people", "seed": "4"}
    assert parsed.prompt == "castle"


def test_extra_words_after_a_single_value_return_to_the_prompt():
    """--ar 16:9 at sunset keeps 'at sunset' in the prompt."""
    parsed = parse_inline("a beach --ar 16:9 at sunset")
    assert parsed.values == {"size": "16:9"} and parsed.prompt == "a beach at sunset"


def test_em_dash_from_phones_is_accepted():
    """Phones turn -- into an em dash; it still works."""
    assert parse_inline("a fox \u2014seed 3").values == {"seed": "3"}


def test_fast_is_a_flag():
    """--fast needs no value."""
    assert parse_inline("a fox --fast").values == {"fast": "true"}


@pytest.mark.parametrize(("text", "message"), [
    ("fox --wat 3", "unknown parameter --wat"),
    ("fox --seed 1 --seed 2", "given twice"),
    ("fox --seed", "needs a value"),
])
def test_bad_inline_parameters_raise(text, message):
    """Unknown, repeated and empty parameters are errors naming the problem."""
    with pytest.raises(ParamError, match=message):
        parse_inline(text)


def test_hyphenated_words_are_not_parameters():
    """A word like 'well-known' or 'x--y' stays in the prompt."""
    assert parse_inline("a well-known x--y place").values == {}
