"""The checks every request goes through, and the words of the error they raise: engine/requests/checks.py."""

from __future__ import annotations


def test_a_param_errors_text_is_its_phrase_in_english() -> None:
    """ParamError keeps its words as a Phrase (template and values apart) for the front doors to translate; its
    text is the English, a phrase inside it said too."""
    from engine.requests.checks import ParamError, Phrase

    exc = ParamError("size: {why}", why=Phrase.of("size {size} is not offered here", size="64x64"))
    assert str(exc) == "size: size 64x64 is not offered here"
    assert exc.phrase.template == "size: {why}" and dict(exc.phrase.fields)["why"].template.startswith("size {size}")
    assert str(ParamError("pick {red, blue}")) == "pick {red, blue}"  # no fields: braces are only braces
