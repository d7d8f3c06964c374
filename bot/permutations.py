"""Prompt permutations and repeats: one /imagine that stands for several jobs.

``a {red, green, blue} car`` is three prompts (each ``{...}`` group multiplied by the others, anywhere in the text,
inline parameters included: ``--ar {1:1, 16:9}``), and ``--repeat 3`` runs each of them three times with new
seeds. Every one is a job of its own, through the one admission path, so each counts against the member's cap and
quota like any request.
"""

from __future__ import annotations

import itertools
import re

from engine.requests.params import ParamError

MAX_PROMPTS = 10  # jobs one /imagine may stand for
_GROUP_RE = re.compile(r"\{([^{}]*)\}")
_REPEAT_RE = re.compile(r"(?:^|\s)(?:--|\u2014)repeat(?:\s*(\S+))?(?=\s|$)", re.IGNORECASE)


def expand(text: str) -> list[str]:
    """Every prompt text ``text`` stands for, in order: its ``{a, b}`` groups multiplied out, each repeated as
    ``--repeat N`` says (the parameter itself removed). One text without groups or repeat is itself.

    Raises ParamError for a repeat that is not a whole number from 1, an empty group, or more than MAX_PROMPTS.
    """
    text, times = _repeat(text)
    parts = _GROUP_RE.split(text)  # literal text, group, literal text, group, ...
    if len(parts) == 1:
        return [text] * times
    choices = [[part] if i % 2 == 0 else _options(part) for i, part in enumerate(parts)]
    total = times
    for options in choices:
        total *= len(options)
    if total > MAX_PROMPTS:
        raise ParamError("this prompt stands for {total} jobs (its {{...}} choices multiplied by --repeat); one "
                         "/imagine may make at most {limit}" if times > 1 else
                         "this prompt stands for {total} jobs (its {{...}} choices multiplied); one /imagine may make "
                         "at most {limit}", total=total, limit=MAX_PROMPTS)
    prompts = [" ".join("".join(combo).split()) for combo in itertools.product(*choices)]
    return [p for p in prompts for _ in range(times)]


def _options(group: str) -> list[str]:
    options = [o.strip() for o in group.split(",")]
    if not all(options):
        raise ParamError("the choices {{{group}}} have an empty one; separate words with commas: {{red, blue}}",
                         group=group)
    return options


def _repeat(text: str) -> tuple[str, int]:
    matches = list(_REPEAT_RE.finditer(text))
    if not matches:
        return text, 1
    if len(matches) > 1:
        raise ParamError("--repeat is given twice; keep one")
    value = matches[0].group(1) or ""
    if not value.isdigit() or not 1 <= int(value) <= MAX_PROMPTS:
        raise ParamError("--repeat needs a whole number from 1 to {limit}, for example --repeat 3", limit=MAX_PROMPTS)
    return (text[:matches[0].start()] + " " + text[matches[0].end():]).strip(), int(value)
