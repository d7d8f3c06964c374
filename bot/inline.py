"""Midjourney-style inline parameters in a prompt (``a fox --ar 16:9 --seed 42 --no text``), and merging
them with a command's explicit options into one request."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.requests.params import ParamError, ParamRequest

# inline name -> ParamRequest field; several spellings people know from other bots
_ALIASES = {
    "ar": "size", "aspect": "size", "size": "size",
    "seed": "seed",
    "no": "negative_prompt", "neg": "negative_prompt", "negative": "negative_prompt",
    "steps": "steps",
    "count": "count", "n": "count", "repeat": "count",
    "cfg": "guidance", "guidance": "guidance",
    "scheduler": "scheduler", "sampler": "scheduler",
    "fast": "fast",
    "style": "style",
    "strength": "strength",
}
_FLAG_ONLY = {"fast"}
# "--" followed by a name at the start or after whitespace: the name ends the previous value
_PARAM_RE = re.compile(r"(?:^|\s)(?:--|\u2014)([A-Za-z][A-Za-z_-]*)")


@dataclass(frozen=True)
class InlineParams:
    """The prompt without its ``--`` parameters, and the parameters found."""

    prompt: str
    values: dict[str, str] = field(default_factory=dict)


def parse_inline(text: str) -> InlineParams:
    """Split ``--name value`` pairs off a prompt.

    ``--no`` takes everything up to the next parameter (``--no text, watermark``). Unknown or
    repeated names and missing values raise ParamError listing what is known. The em dash that
    phones auto-correct ``--`` into is accepted too.
    """
    matches = list(_PARAM_RE.finditer(text))
    if not matches:
        return InlineParams(prompt=text.strip())
    prompt = text[: matches[0].start()].strip()
    values: dict[str, str] = {}
    for i, match in enumerate(matches):
        name = match.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[match.end(): end].strip()
        key = _ALIASES.get(name)
        if key is None:
            known = ", ".join(f"--{n}" for n in ("ar", "seed", "no", "steps", "count", "cfg", "scheduler", "fast",
                                                 "style"))
            raise ParamError(f"unknown parameter --{name}; known: {known}")
        if key in values:
            raise ParamError(f"--{name} is given twice; keep one")
        if name in _FLAG_ONLY:
            if value:  # "--fast a castle": the words after a flag belong to the prompt
                prompt = f"{prompt} {value}".strip()
            values[key] = "true"
            continue
        if not value:
            raise ParamError(f"--{name} needs a value, for example --{name} {_EXAMPLES.get(key, '1')}")
        if key != "negative_prompt" and " " in value:
            # only --no takes several words; the rest of the text goes back to the prompt
            value, rest = value.split(" ", 1)
            prompt = f"{prompt} {rest}".strip()
        values[key] = value
    return InlineParams(prompt=prompt, values=values)


_EXAMPLES = {"size": "16:9", "seed": "42", "steps": "30", "count": "2", "guidance": "7", "scheduler": "euler",
             "style": "cinematic", "strength": "0.5"}


# the ParamRequest fields a command option can set, and the inline name that sets the same field
_OPTION_FIELDS = ("negative_prompt", "size", "steps", "guidance", "seed", "count", "scheduler", "fast", "style",
                  "strength")
_INLINE_NAMES = {"negative_prompt": "--no", "size": "--ar", "steps": "--steps", "guidance": "--cfg",
                 "seed": "--seed", "count": "--count", "scheduler": "--scheduler", "fast": "--fast",
                 "style": "--style", "strength": "--strength"}


def build_request(prompt: str, options: dict[str, Any]) -> tuple[ParamRequest, tuple[str, ...]]:
    """Merge inline ``--`` parameters and explicit options (an explicit option wins, and a note says so).

    Returns the raw request (defaults and bounds are the engine's to apply) and the notes for the user.
    Raises ParamError for malformed inline parameters.
    """
    inline = parse_inline(prompt)
    values: dict[str, Any] = dict(inline.values)
    notes: list[str] = []
    for key in _OPTION_FIELDS:
        explicit = options.get(key)
        if explicit is None:
            continue
        if key in values and str(values[key]).lower() != str(explicit).lower():
            notes.append(f"{_INLINE_NAMES[key]} {values[key]} in the prompt was replaced by the {key} option "
                         f"({explicit}).")
        values[key] = explicit
    if "fast" in values:
        values["fast"] = str(values["fast"]).lower() in ("true", "1", "yes", "on")
    req = ParamRequest(prompt=inline.prompt, **{k: v for k, v in values.items() if k in _OPTION_FIELDS})
    return req, tuple(notes)
