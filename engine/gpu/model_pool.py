"""The models one worker serves (MODELS): the default one always loaded, the others loaded when a batch needs them,
at most MODEL_SLOTS at once, the least recently used unloaded first: parked in CPU memory (MODEL_PARK of them, the
least recently used dropped first), from where it comes back with a copy to the GPU instead of a read from disk.

The in-process worker and a GPU worker over NATS both hold one pool through the batch runtime
(engine/gpu/batch_runner.py), so a job's model is honoured by whichever runs it. Every model loads through the
worker's own loader (``from_pretrained``, the fast-mode LoRA, LORAS, the switches); the other models run without
torch.compile (a warm-up per model would hold the GPU for minutes at each switch) and share the default model's
safety classifier. Call everything from the thread that owns the GPU.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.model import LoadedModel, ModelLoadError
from engine.requests.models import ModelEntry, offered_models

log = logging.getLogger(__name__)

Loader = Callable[[EngineSettings], LoadedModel]


def settings_for(settings: EngineSettings, entry: ModelEntry, *, default: bool) -> EngineSettings:
    """The settings that load ``entry``: its source as MODEL_ID; another than the default without compile or its
    own safety classifier (the default's is shared)."""
    if entry.source == settings.model_id and default:
        return settings
    update: dict[str, object] = {"model_id": entry.source}
    if not default:
        update |= {"safety_model_id": "", "accel": settings.accel.model_copy(update={"compile": "off"})}
    return settings.model_copy(update=update)


def _modules(model: LoadedModel) -> list[Any]:
    """Every module a model holds of its own (the default model's safety classifier is shared, so not moved)."""
    import torch

    found = [*model.pipe.components.values(), model.upcast_vae, model.fast_vae,
             model.fast_pipe.unet if model.fast_pipe is not None else None]
    return list({id(m): m for m in found if isinstance(m, torch.nn.Module)}.values())


def move(model: LoadedModel, device: str) -> None:
    """Move a model's own modules to ``device`` (parking in CPU memory, and back)."""
    import torch

    for module in _modules(model):
        module.to(device)
    if device == "cpu" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def unload(model: LoadedModel) -> None:
    """Give a model's memory back (its compile warm-up stopped first)."""
    import torch

    if model.accel is not None:
        model.accel.close()
    model.pipe = model.fast_pipe = model.img2img = model.inpaint = model.fast_img2img = model.fast_inpaint = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelPool:
    """The loaded models by name, least recently used first."""

    def __init__(self, settings: EngineSettings, loader: Loader) -> None:
        self.settings = settings
        self._loader = loader
        self.offered = {entry.name: entry for entry in offered_models(settings.models, settings.model_id)}
        self.default_name = next(iter(self.offered))
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._parked: OrderedDict[str, LoadedModel] = OrderedDict()  # unloaded from the GPU, kept in CPU memory
        # what ``loaded`` says, replaced whole after each change: status views read it from other threads
        self._names: tuple[str, ...] = ()

    def load_default(self) -> LoadedModel:
        """Load the default model (ModelLoadError, or anything the loader raises, says why not)."""
        model = self._loader(settings_for(self.settings, self.offered[self.default_name], default=True))
        self._loaded[self.default_name] = model
        self._names = tuple(self._loaded)
        return model

    @property
    def default(self) -> LoadedModel:
        """The default model (loaded first, never unloaded)."""
        return self._loaded[self.default_name]

    @property
    def loaded(self) -> list[str]:
        """The names of the loaded models, least recently used first (safe to read from any thread)."""
        return list(self._names)

    def get(self, name: str) -> LoadedModel:
        """Model ``name`` ("": the default), loaded now if it is not (another unloaded first when MODEL_SLOTS are
        full); ModelLoadError says why it cannot be had."""
        name = name or self.default_name
        if name in self._loaded:
            self._loaded.move_to_end(name)
            self._names = tuple(self._loaded)
            return self._loaded[name]
        entry = self.offered.get(name)
        if entry is None:
            raise ModelLoadError(f"The model '{name}' is not offered on this GPU (its MODELS lacks it, or it was "
                                 f"removed since the job was queued); choose another model.")
        self._make_room(self.settings.model_slots)
        started = time.perf_counter()
        if name in self._parked:
            model = self._parked.pop(name)
            move(model, model.choice.device)
        else:
            try:
                model = self._loader(settings_for(self.settings, entry, default=False))
            except ModelLoadError as exc:
                raise ModelLoadError(f"The model '{name}' could not be loaded: {exc}") from exc
            model.safety = self.default.safety
        self._loaded[name] = model
        self._names = tuple(self._loaded)
        log.info("model %s (%s) ready in %.1f s; loaded now: %s", name, entry.source,
                 time.perf_counter() - started, ", ".join(self._loaded))
        return model

    def trim(self) -> None:
        """Unload the least recently used models beyond MODEL_SLOTS (after a batch: with MODEL_SLOTS=1 another model
        stays only for its own batch)."""
        self._make_room(self.settings.model_slots + 1)

    def _make_room(self, slots: int) -> None:
        """Unload the least recently used models other than the default until fewer than ``slots`` are loaded."""
        while len(self._loaded) >= slots:
            victim = next((n for n in self._loaded if n != self.default_name), None)
            if victim is None:
                return
            model = self._loaded.pop(victim)
            self._names = tuple(self._loaded)
            if self.settings.model_park == 0:
                log.info("unloading model %s (MODEL_SLOTS=%d)", victim, self.settings.model_slots)
                unload(model)
                continue
            log.info("parking model %s in CPU memory (MODEL_SLOTS=%d)", victim, self.settings.model_slots)
            move(model, "cpu")
            self._parked[victim] = model
            while len(self._parked) > self.settings.model_park:
                dropped, parked = self._parked.popitem(last=False)
                log.info("dropping parked model %s (MODEL_PARK=%d)", dropped, self.settings.model_park)
                unload(parked)
