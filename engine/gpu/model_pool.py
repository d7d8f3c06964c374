"""The models one worker serves (MODELS): the default one always loaded, the others loaded when a batch needs them,
at most MODEL_SLOTS at once, the least recently used unloaded first: parked in CPU memory (MODEL_PARK of them, the
least recently used dropped first), from where it comes back with a copy to the GPU instead of a read from disk.

The in-process worker and a GPU worker over NATS both hold one pool through the batch runtime
(engine/gpu/batch_runner.py), so a job's model is honoured by whichever runs it. Every model loads through the
worker's own loader (``from_pretrained``, the fast-mode LoRA, the LoRAs offered, the switches); the other models run
without torch.compile (a warm-up per model would hold the GPU for minutes at each switch) and share the default
model's safety classifier. Call everything from the thread that owns the GPU.

What is offered is read at each batch (``Offer``: the catalogue of engine/rules/catalogue.py in-process, the
worker's .env plus what batches carry over NATS), so a model or LoRA the operator adds in the panel is loaded at its
first use, a LoRA given a new source is loaded again, and one no longer offered is deleted from every loaded model.
A LoRA new to a model whose switches fixed its layers (``lora_fixed``: fused or float8 layers, compiled graphs) loads
the model again, once, with every LoRA offered.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.model import LoadedModel, ModelLoadError, drop_loras, load_loras
from engine.ops.loading import LOADING
from engine.requests.loras import LoraEntry
from engine.requests.models import ModelEntry, Offer, offered_models

log = logging.getLogger(__name__)

Loader = Callable[[EngineSettings], LoadedModel]
BROKEN_RETRY_S = 600.0  # a LoRA that failed to load is tried again after this (a file being copied, the hub down)


def _broken_message(lora: str) -> str:
    return (f"The LoRA '{lora}' could not be loaded on this GPU; choose another, or ask the operator to check it in "
            f"/status and its source in the panel's Models tab (it is tried again within 10 minutes).")


def settings_for(settings: EngineSettings, entry: ModelEntry, loras: tuple[LoraEntry, ...], *, default: bool
                 ) -> EngineSettings:
    """The settings that load ``entry`` with ``loras`` (the LoRAs offered now): its source as MODEL_ID; another than
    the default without compile or its own safety classifier (the default's is shared)."""
    if entry.source == settings.model_id and default and loras == settings.loras:
        return settings
    update: dict[str, object] = {"model_id": entry.source, "loras": loras}
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
        model.accel = None  # its compile routers and fused fast UNet hold modules of their own
    model.pipe = model.fast_pipe = model.img2img = model.inpaint = model.fast_img2img = model.fast_inpaint = None
    model.upcast_vae = model.fast_vae = model.lora_slot = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelPool:
    """The loaded models by name, least recently used first."""

    def __init__(self, settings: EngineSettings, loader: Loader, offer: Callable[[], Offer] | None = None) -> None:
        self.settings = settings
        self._loader = loader
        env = Offer(offered_models(settings.models, settings.model_id), settings.loras)
        self._offer = offer or (lambda: env)  # read at each batch: the catalogue may change
        self.default_name = self._offer().models[0].name
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._parked: OrderedDict[str, LoadedModel] = OrderedDict()  # unloaded from the GPU, kept in CPU memory
        # what ``loaded`` says, replaced whole after each change: status views read it from other threads
        self._names: tuple[str, ...] = ()
        self._default: LoadedModel | None = None  # read by status views on other threads
        # (model, LoRA, source) -> when it failed to load there: not tried again for a while
        self._broken: dict[tuple[str, str, str], float] = {}

    def load_default(self) -> LoadedModel:
        """Load the default model (ModelLoadError, or anything the loader raises, says why not)."""
        offer = self._offer()
        model = self._loader(settings_for(self.settings, offer.models[0], offer.loras, default=True))
        self._loaded[self.default_name] = self._default = model
        self._names = tuple(self._loaded)
        self._remember_broken(self.default_name, model, offer)
        return model

    def _remember_broken(self, name: str, model: LoadedModel | None, offer: Offer) -> None:
        """Note each offered LoRA the loader could not load into ``model``: a request for it fails at once."""
        for lora in offer.loras:
            if model is not None and model.loras.get(lora.name) != lora.source:
                self._broken[name, lora.name, lora.source] = time.monotonic()

    @property
    def default(self) -> LoadedModel:
        """The default model (loaded first, never unloaded; loaded again only for a LoRA added since)."""
        return self._default  # type: ignore[return-value]  # set by load_default, before anyone asks

    @property
    def loaded(self) -> list[str]:
        """The names of the loaded models, least recently used first (safe to read from any thread)."""
        return list(self._names)

    def get(self, name: str, loras: Collection[str] = ()) -> LoadedModel:
        """Model ``name`` ("": the default) with the LoRAs ``loras`` loaded, loading what is not (another model
        unloaded first when MODEL_SLOTS are full); ModelLoadError says why it cannot be had."""
        offer = self._offer()
        entry = offer.model(name or self.default_name)
        if entry is None:
            raise ModelLoadError(f"The model '{name}' is not offered on this GPU (its MODELS lacks it, or it was "
                                 f"removed since the job was queued); choose another model.")
        # one model per source: another name for a source loaded already (the bot host's) is that model
        default = self._default
        name = self.default_name if default is not None and entry.source == default.model_id else \
            next(e.name for e in offer.models if e.source == entry.source)
        model = self._loaded.get(name)
        if model is not None and model.model_id != entry.source:  # the catalogue gave it another source since
            self._drop(name)
            model = None
        if model is None:
            model = self._bring(name, entry, offer)
        self._loaded.move_to_end(name)
        self._names = tuple(self._loaded)
        return self._with_loras(name, model, loras, offer)

    def _bring(self, name: str, entry: ModelEntry, offer: Offer) -> LoadedModel:
        """Load (or unpark) model ``name``, making room first; a LoRA it could not load is remembered."""
        self._make_room(self.settings.model_slots)
        started = time.perf_counter()
        model = self._parked.pop(name, None)
        if model is not None and model.model_id != entry.source:  # parked before its source changed
            unload(model)
            model = None
        if model is not None:
            move(model, model.choice.device)
        else:
            try:
                model = self._loader(settings_for(self.settings, entry, offer.loras,
                                                  default=name == self.default_name))
            except ModelLoadError as exc:
                raise ModelLoadError(f"The model '{name}' could not be loaded: {exc}") from exc
            self._remember_broken(name, model, offer)
        self._loaded[name] = model
        self._names = tuple(self._loaded)
        if name == self.default_name:
            self._default = model
        for other in [*self._loaded.values(), *self._parked.values()]:  # the default's classifier is everyone's
            if other is not self._default and other is not None and self._default is not None:
                other.safety = self._default.safety
        log.info("model %s (%s) ready in %.1f s; loaded now: %s", name, entry.source,
                 time.perf_counter() - started, ", ".join(self._loaded))
        return model

    def _with_loras(self, name: str, model: LoadedModel, loras: Collection[str], offer: Offer) -> LoadedModel:
        """``model`` holding each of ``loras`` as the offer has it, and no LoRA the offer dropped. A LoRA that
        failed to load on this model is not tried again for BROKEN_RETRY_S (or until its source changes)."""
        if model is None:  # a loader that gives no model (the crash-recovery test's) has no LoRAs either
            return model
        now = time.monotonic()
        self._broken = {key: at for key, at in self._broken.items() if now - at < BROKEN_RETRY_S}
        wanted = []
        for lora in loras:
            entry = offer.lora(lora)
            if entry is None:
                raise ModelLoadError(f"The LoRA '{lora}' is not offered on this GPU (it was removed since the job "
                                     f"was queued, or this worker's LORAS lacks it); choose another.")
            if (name, lora, entry.source) in self._broken:
                raise ModelLoadError(_broken_message(lora))
            wanted.append(entry)
        drop_loras(model, [n for n in model.loras if offer.lora(n) is None])
        missing = tuple(e for e in wanted if model.loras.get(e.name) != e.source)
        if not missing:
            return model
        if model.lora_fixed:  # loaded again with every LoRA offered, before its switches fix the layers
            log.info("loading model %s again for the LoRAs %s (it was loaded with %s)", name,
                     ", ".join(e.name for e in missing), model.lora_fixed)
            self._drop(name)
            model = self._bring(name, offer.model(name) or offer.models[0], offer)
        else:
            with LOADING:  # peft builds the adapters the way from_pretrained builds models (engine/ops/loading.py)
                model.notes.extend(note for note in load_loras(model, missing) if "could not" in note)  # /status
        for entry in missing:
            if model.loras.get(entry.name) != entry.source:  # the reason is in the log and the status
                self._broken[name, entry.name, entry.source] = now
                raise ModelLoadError(_broken_message(entry.name))
        return model

    def _drop(self, name: str) -> None:
        """Unload model ``name`` now (its source changed, or it loads again for new LoRAs)."""
        unload(self._loaded.pop(name))
        self._names = tuple(self._loaded)

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
