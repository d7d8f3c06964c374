"""Midjourney-style inline parameters in a prompt (``a fox --ar 16:9 --seed 42 --no text``), and merging
them with a command's explicit options into one request."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.requests.checks import Phrase
from engine.requests.params import ParamError, ParamRequest


@dataclass(frozen=True)
class InlineParam:
    """One inline parameter: its spellings (the first is the one shown), the request field it sets, an example
    value (empty for a flag) and what it does, as /help says it."""

    names: tuple[str, ...]
    field: str
    example: str
    meaning: str

    @property
    def flag(self) -> bool:
        """Takes no value (``--fast``)."""
        return not self.example


# the one table of inline parameters: the parser, its error messages and /help read it; several spellings people
# know from other bots
INLINE: tuple[InlineParam, ...] = (
    InlineParam(("ar", "aspect", "size"), "size", "16:9", "aspect ratio or size, one of the server's sizes"),
    InlineParam(("no", "neg", "negative"), "negative_prompt", "text, watermark", "what to keep out of the image"),
    InlineParam(("seed",), "seed", "42", "the same seed and settings make the same image"),
    InlineParam(("steps",), "steps", "30", "denoising steps: more is slower, often finer"),
    InlineParam(("count", "n"), "count", "2", "images in one request"),
    # read by bot/permutations.py in /imagine, before the other parameters
    InlineParam(("repeat",), "repeat", "3", "the prompt run as that many jobs, each with new seeds"),
    InlineParam(("cfg", "guidance"), "guidance", "7", "how closely the image follows the prompt"),
    InlineParam(("scheduler", "sampler"), "scheduler", "euler", "the sampler"),
    InlineParam(("fast",), "fast", "", "fast mode: a few steps, when the operator offers it"),
    InlineParam(("style",), "style", "cinematic", "one of the operator's style presets"),
    InlineParam(("strength",), "strength", "0.5", "with your picture: 0.05 keeps it, 1 ignores it"),
    InlineParam(("tile",), "tile", "", "a seamless tile: the image repeats without edges"),
    InlineParam(("translate",), "translate", "", "your words go to the model in English first"),
    InlineParam(("lora", "loras"), "loras", "pixel:0.8", "LoRAs the operator offers, by name (several: a:0.8,b)"),
    InlineParam(("model",), "model", "ssd-1b", "one of the models the operator offers"),
)
_ALIASES = {name: param.field for param in INLINE for name in param.names}
_FLAG_ONLY = {name for param in INLINE if param.flag for name in param.names}
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
            known = ", ".join(f"--{param.names[0]}" for param in INLINE)
            raise ParamError("unknown parameter --{name}; known: {known}", name=name, known=known)
        if key in values and key != "loras":  # several --lora add up
            raise ParamError("--{name} is given twice; keep one", name=name)
        if name in _FLAG_ONLY:
            if value:  # "--fast a castle": the words after a flag belong to the prompt
                prompt = f"{prompt} {value}".strip()
            values[key] = "true"
            continue
        if not value:
            raise ParamError("--{name} needs a value, for example --{name} {example}", name=name,
                             example=_EXAMPLES.get(key, "1"))
        if key != "negative_prompt" and " " in value:
            # only --no takes several words; the rest of the text goes back to the prompt
            value, rest = value.split(" ", 1)
            prompt = f"{prompt} {rest}".strip()
        values[key] = f"{values[key]},{value}" if key in values else value
    return InlineParams(prompt=prompt, values=values)


_EXAMPLES = {param.field: param.example for param in INLINE}


# the ParamRequest fields a command option can set, and the inline name that sets the same field
_OPTION_FIELDS = ("negative_prompt", "size", "steps", "guidance", "seed", "count", "scheduler", "fast", "style",
                  "strength", "tile", "loras", "model", "translate")
_INLINE_NAMES = {param.field: f"--{param.names[0]}" for param in INLINE}


def build_request(prompt: str, options: dict[str, Any]) -> tuple[ParamRequest, tuple[Phrase, ...]]:
    """Merge inline ``--`` parameters and explicit options (an explicit option wins, and a note says so).

    Returns the raw request (defaults and bounds are the engine's to apply) and the notes for the user.
    Raises ParamError for malformed inline parameters.
    """
    inline = parse_inline(prompt)
    if "repeat" in inline.values:
        raise ParamError("--repeat works in /imagine only (here each request is one job); leave it out")
    values: dict[str, Any] = dict(inline.values)
    notes: list[Phrase] = []
    for key in _OPTION_FIELDS:
        explicit = options.get(key)
        if explicit is None:
            continue
        if key in values and str(values[key]).lower() != str(explicit).lower():
            notes.append(Phrase.of("{inline} {value} in the prompt was replaced by the {option} option ({explicit}).",
                                   inline=_INLINE_NAMES[key], value=values[key], option=key, explicit=explicit))
        values[key] = explicit
    for switch in ("fast", "tile", "translate"):  # flags: present inline, or a boolean option
        if switch in values:
            values[switch] = str(values[switch]).lower() in ("true", "1", "yes", "on")
    req = ParamRequest(prompt=inline.prompt, **{k: v for k, v in values.items() if k in _OPTION_FIELDS})
    return req, tuple(notes)
