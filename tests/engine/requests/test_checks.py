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


def test_a_param_error_keeps_its_phrase_across_processes() -> None:
    """Members' pictures are decoded in processes of their own: the error comes back pickled, its phrase whole."""
    import pickle

    from engine.requests.checks import ParamError
    from engine.requests.sizes import SizeError

    for exc in (ParamError("the picture is {width}x{height} pixels", width=9000, height=9000), SizeError("x {y}", y=1)):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and back.phrase == exc.phrase and str(back) == str(exc)
