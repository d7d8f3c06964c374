"""LoRAs: the ones the operator offers (``LORAS``) and the ones a request asks for (``--lora NAME[:WEIGHT]``,
``/imagine lora:``).

``LORAS`` lists entries ``name=source[:weight][|trigger words]``, comma-separated: ``source`` is a hub id, a local
directory or a ``.safetensors`` file; ``weight`` is the default strength when a request names none (1); the trigger
words (commas allowed) are added to the prompt the model gets when a request uses the LoRA and its words lack them.
``name[nsfw]=...`` marks a LoRA (or a model of MODELS) as NSFW: it is used only in channels marked NSFW
(engine/rules/admission.py).
A request names up to MAX_LORAS of them, each with an optional weight from MIN_WEIGHT to MAX_WEIGHT. The worker
loads every offered LoRA once as an adapter and switches between sets per batch (engine/gpu/pipeline.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.requests.checks import ParamError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
NSFW_MARK = "[nsfw]"  # after an entry's name: only in channels marked NSFW
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0
# an entry starts at "name=": a comma before one ends the previous entry (trigger words may hold commas)
_ENTRY_SPLIT = re.compile(r",\s*(?=[A-Za-z0-9][A-Za-z0-9_-]*(?:\[nsfw\])?\s*=)", re.IGNORECASE)
_TOKEN_SPLIT = re.compile(r"[\s,]+")

Chosen = tuple[tuple[str, float], ...]  # (name, weight) per LoRA, sorted by name


@dataclass(frozen=True)
class LoraEntry:
    """One LoRA the operator offers."""

    name: str
    source: str  # hub id, local directory or .safetensors file
    weight: float = 1.0  # the strength when a request names none
    triggers: str = ""  # words its training used, added to the prompt when missing
    nsfw: bool = False  # only in channels marked NSFW
    description: str = ""  # a few words members see beside its name (set in the panel)

    @property
    def adapter(self) -> str:
        """Its adapter name on the UNet."""
        return adapter_name(self.name)


def adapter_name(name: str) -> str:
    """A LoRA's adapter name on the UNet (kept apart from the fast-mode LoRA's)."""
    return f"lora-{name}"


def _weight(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ParamError("{what}: '{text}' is not a weight; use a number from {lo} to {hi}, for example 0.8",
                         what=what, text=text, lo=f"{MIN_WEIGHT:g}", hi=f"{MAX_WEIGHT:g}") from None
    if not MIN_WEIGHT <= value <= MAX_WEIGHT:  # NaN fails too
        raise ParamError("{what}: the weight must be from {lo} to {hi} (got {text})", what=what, lo=f"{MIN_WEIGHT:g}",
                         hi=f"{MAX_WEIGHT:g}", text=text)
    return round(value, 3)


def parse_loras(text: str) -> tuple[LoraEntry, ...]:
    """``LORAS`` as entries; ParamError names the entry that is wrong and why."""
    entries: dict[str, LoraEntry] = {}
    for raw in _ENTRY_SPLIT.split(text.strip()) if text.strip() else []:
        spec, _, triggers = raw.partition("|")
        name, eq, source = (part.strip() for part in spec.partition("="))
        if not eq or not source:
            raise ParamError(f"LORAS entry '{raw.strip()}' needs name=source (a hub id, a directory or a .safetensors "
                             f"file)")
        name, nsfw = marked(name, "LORAS")
        if name in entries:
            raise ParamError(f"LORAS names '{name}' twice; keep one")
        weight = 1.0
        head, colon, tail = source.rpartition(":")
        if colon and head and re.fullmatch(r"[-+]?[0-9.]+", tail.strip()):
            source, weight = head.strip(), _weight(tail.strip(), f"LORAS entry '{name}'")
        entries[name] = LoraEntry(name, source, weight, " ".join(triggers.split()), nsfw)
    return tuple(entries.values())


def marked(name: str, variable: str) -> tuple[str, bool]:
    """An entry's name without its NSFW mark, lower-cased and checked, and whether it had the mark."""
    name = name.strip().lower()
    nsfw = name.endswith(NSFW_MARK)
    name = name.removesuffix(NSFW_MARK).strip()
    if not NAME_RE.match(name):
        raise ParamError(f"{variable} name '{name}' must be 1-32 lower-case letters, digits, - or _, starting with a "
                         f"letter or digit (then [nsfw] to mark it NSFW)")
    return name, nsfw


def choose(spec: str, offered: tuple[LoraEntry, ...], limit: int) -> Chosen:
    """The LoRAs ``spec`` asks for (``pixel:0.8 ink`` or ``pixel:0.8,ink``; ``none`` for none), each known here, with
    its weight (the entry's default when none is given); ParamError says what is offered or allowed."""
    by_name = {entry.name: entry for entry in offered}
    chosen: dict[str, float] = {}
    for token in _TOKEN_SPLIT.split(spec.strip()):
        if not token or token.lower() == "none":
            continue
        name, colon, weight = token.partition(":")
        name = name.lower()
        entry = by_name.get(name)
        if entry is None:
            if not by_name:
                raise ParamError("LoRA '{name}' is not offered here: the operator has not set LORAS", name=name)
            raise ParamError("LoRA '{name}' is not offered here; choose from: {offer}", name=name,
                             offer=", ".join(sorted(by_name)))
        chosen[name] = _weight(weight, f"LoRA '{name}'") if colon else entry.weight
    if len(chosen) > limit:
        raise ParamError("{count} LoRAs asked for; at most {limit} at once (MAX_LORAS)", count=len(chosen),
                         limit=limit)
    return tuple(sorted(chosen.items()))


def spec_of(chosen: Chosen) -> str:
    """The request text that chooses ``chosen`` again (``ink:1 pixel:0.8``); ``none`` for none."""
    return " ".join(f"{name}:{weight:g}" for name, weight in chosen) or "none"


def with_triggers(prompt: str, chosen: Chosen, offered: tuple[LoraEntry, ...]) -> str:
    """``prompt`` with the trigger words of each chosen LoRA added at the end, where the prompt lacks them."""
    by_name = {entry.name: entry for entry in offered}
    lower = prompt.lower()
    extra = [by_name[name].triggers for name, _ in chosen
             if name in by_name and by_name[name].triggers and by_name[name].triggers.lower() not in lower]
    return ", ".join([prompt, *extra]) if extra else prompt
