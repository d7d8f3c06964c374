"""The checks every request's text and numbers go through, and the error that says what is wrong with one.

``ParamError`` (also reached as ``engine.requests.params.ParamError``) names the parameter and what is allowed.
Its words are a ``Phrase``: an English template with the values kept apart, so a front door can say it in the
member's language (bot/i18n) and fill in the values as they are.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_PROMPT_CHARS = 6000  # Discord's own cap on a string option; longer input is refused


@dataclass(frozen=True)
class Phrase:
    """Words for a member: an English ``template`` with ``{named}`` fields and their values (text, or a Phrase said
    in the same language). ``str()`` gives the English."""

    template: str
    fields: tuple[tuple[str, str | Phrase], ...] = ()

    @classmethod
    def of(cls, template: str, **fields: object) -> Phrase:
        """The phrase ``template`` with ``fields`` (values other than Phrases kept as their text)."""
        return cls(template, tuple((k, v if isinstance(v, Phrase) else str(v)) for k, v in fields.items()))

    def __str__(self) -> str:
        if not self.fields:  # a template without fields is said as it is: a brace in it is only a brace
            return self.template
        return self.template.format(**{name: str(value) for name, value in self.fields})


Note = str | Phrase  # what a member is told beside a job (a replaced option, a cut prompt): text or a Phrase


class ParamError(ValueError):
    """A parameter outside its bounds. The message names the parameter and what is allowed: ``ParamError(template,
    **fields)`` (or a Phrase), its English the exception's text and its ``phrase`` what a front door translates."""

    def __init__(self, template: str | Phrase, /, **fields: object) -> None:
        self.phrase = template if isinstance(template, Phrase) else Phrase.of(template, **fields)
        super().__init__(str(self.phrase))

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a decoding process: its phrase comes back whole
        return type(self), (self.phrase,)


def phrase_of(exc: BaseException) -> Phrase:
    """An error's words as a Phrase: its own where it has one, else its text as a template without fields."""
    own = getattr(exc, "phrase", None)
    return own if isinstance(own, Phrase) else Phrase(str(exc))


# control characters (NUL included) and bidi overrides, which can make an echoed prompt display reversed
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_ZERO_WIDTH_RE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")
# combining marks stacked beyond this per base character are "zalgo" noise, not language
_MAX_COMBINING_RUN = 3


def clean_prompt(text: str, *, allow_empty: bool = False) -> str:
    """Normalise a prompt: strip control characters (NUL included), tame zalgo, trim whitespace.

    Raises ParamError for an empty prompt (unless ``allow_empty``), one over MAX_PROMPT_CHARS, or one
    holding a lone UTF-16 surrogate (no character; it cannot be encoded, stored as UTF-8 or shown).
    """
    text = str(text)
    lone = _SURROGATE_RE.search(text)
    if lone:
        raise ParamError("the text has an invalid character at position {position} (a lone UTF-16 surrogate, "
                         "{code}); retype or paste that part again", position=lone.start() + 1,
                         code=f"U+{ord(lone.group()):04X}")
    text = _CONTROL_RE.sub(" ", text)
    out: list[str] = []
    run = 0
    for ch in text:
        if unicodedata.combining(ch):
            run += 1
            if run > _MAX_COMBINING_RUN:
                continue
        else:
            run = 0
        out.append(ch)
    text = re.sub(r"\s+", " ", "".join(out)).strip()
    if not _ZERO_WIDTH_RE.sub("", text).strip():
        text = ""  # only invisible characters: nothing to draw
    if not text and not allow_empty:
        raise ParamError("the prompt is empty; describe the image you want, for example 'a red fox in the snow'")
    if len(text) > MAX_PROMPT_CHARS:
        raise ParamError("the prompt is {length} characters long; the limit is {limit}", length=len(text),
                         limit=MAX_PROMPT_CHARS)
    return text


def int_in(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
        if isinstance(value, str) and str(number) != value.strip().lstrip("+"):
            raise ValueError
    except (TypeError, ValueError):
        raise ParamError("{name} must be a whole number from {lo} to {hi} (got '{value}')", name=name, lo=lo, hi=hi,
                         value=value) from None
    if not lo <= number <= hi:
        raise ParamError("{name} must be from {lo} to {hi} (got {value})", name=name, lo=lo, hi=hi, value=number)
    return number


def float_in(name: str, value: Any, lo: float, hi: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParamError("{name} must be a number from {lo} to {hi} (got '{value}')", name=name, lo=f"{lo:g}",
                         hi=f"{hi:g}", value=value) from None
    if number != number or not lo <= number <= hi:  # NaN fails too
        raise ParamError("{name} must be from {lo} to {hi} (got {value})", name=name, lo=f"{lo:g}", hi=f"{hi:g}",
                         value=value)
    return round(number, 4)
