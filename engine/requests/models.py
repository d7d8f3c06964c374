"""The models the operator offers (``MODELS``) and the one a request asks for (``--model NAME``, ``/imagine model:``).

``MODELS`` lists ``name=source`` entries (``name[nsfw]=source``: only in channels marked NSFW), comma-separated:
``source`` is a hub id or a local diffusers directory of any SDXL-architecture model, loaded through the same
``from_pretrained`` code as SSD-1B. The first is the default; unset, ``MODEL_ID`` alone is offered, named after its
last path part. A job stores its model's name ("" in jobs from before MODELS: the default); workers keep the default
loaded and others as MODEL_SLOTS allows (engine/gpu/model_pool.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.requests.checks import ParamError
from engine.requests.loras import LoraEntry, marked


@dataclass(frozen=True)
class ModelEntry:
    """One model the operator offers."""

    name: str
    source: str  # hub id or local diffusers directory
    nsfw: bool = False  # only in channels marked NSFW (``name[nsfw]=source``)
    description: str = ""  # a few words members see beside its name (set in the panel)


def default_name(source: str) -> str:
    """A model's name from its source: ``segmind/SSD-1B`` -> ``ssd-1b``."""
    tail = source.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9_-]+", "-", tail).strip("-_")[:32]
    return name or "default"


def parse_models(text: str) -> tuple[ModelEntry, ...]:
    """``MODELS`` as entries (the first is the default); ParamError names the entry that is wrong and why."""
    entries: dict[str, ModelEntry] = {}
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        name, eq, source = (part.strip() for part in raw.partition("="))
        if not eq or not source:
            raise ParamError(f"MODELS entry '{raw}' needs name=source (a hub id or a local diffusers directory)")
        name, nsfw = marked(name, "MODELS")
        if name in entries:
            raise ParamError(f"MODELS names '{name}' twice; keep one")
        entries[name] = ModelEntry(name, source, nsfw)
    return tuple(entries.values())


def offered_models(models: tuple[ModelEntry, ...], model_id: str) -> tuple[ModelEntry, ...]:
    """What members may choose from: MODELS, or MODEL_ID alone when it is unset."""
    return models or (ModelEntry(default_name(model_id), model_id),)


def choose_model(name: str, offered: tuple[ModelEntry, ...]) -> str:
    """The offered model ``name`` names (empty: the default, the first); ParamError lists what is offered."""
    wanted = name.strip().lower()
    if not offered:
        raise ParamError("no model this server allows is offered now; a server admin can change the list with "
                         "/settings limits models:")
    if not wanted:
        return offered[0].name
    if any(entry.name == wanted for entry in offered):
        return wanted
    raise ParamError("model '{model}' is not offered here; choose from: {offer}", model=wanted,
                     offer=", ".join(e.name for e in offered))


@dataclass(frozen=True)
class Offer:
    """What the operator offers now: the models (the first is the default) and the LoRAs. Held whole and replaced
    whole on a change (engine/rules/catalogue.py), so a worker thread reading it never sees half an edit."""

    models: tuple[ModelEntry, ...]
    loras: tuple[LoraEntry, ...] = ()

    def model(self, name: str) -> ModelEntry | None:
        """The offered model ``name`` ("": the default), None when it is not offered."""
        return next((e for e in self.models if e.name == (name or self.models[0].name)), None)

    def lora(self, name: str) -> LoraEntry | None:
        """The offered LoRA ``name``, None when it is not offered."""
        return next((e for e in self.loras if e.name == name), None)
