"""Switching a model's adapters to a batch's: its LoRAs at their weights and the LCM-LoRA for fast batches, through
the LoRA slot when the UNet is compiled and the set fits there (engine/gpu/lora/slot.py), else as peft adapters."""

from __future__ import annotations

from engine.gpu.lora.slot import LoraSlot, Wanted
from engine.gpu.model import LoadedModel, ModelLoadError
from engine.requests.loras import Chosen, adapter_name


def wanted(model: LoadedModel, fast: bool, loras: Chosen) -> tuple[tuple[str, float], ...]:
    """The adapters (name, weight) a batch runs on ``pipe``'s UNet: its LoRAs, and the LCM-LoRA for fast batches
    without a fused fast UNet (or with LoRAs). A LoRA that did not load on this worker fails the batch saying so."""
    want: list[tuple[str, float]] = []
    for name, weight in loras:
        if name not in model.loras:
            raise ModelLoadError(f"The LoRA '{name}' is not loaded on this GPU (it failed to load, or this worker's "
                                 f"LORAS lacks it); choose another, or ask the operator to check /status.")
        want.append((adapter_name(name), weight))
    if fast and (model.fast_pipe is None or loras):
        if model.fast_adapter is None:
            raise ModelLoadError("fast mode is not available: its LoRA is not loaded")
        want.append((model.fast_adapter, 1.0))
    return tuple(want)


def in_slot(model: LoadedModel, want: Wanted) -> bool:
    """Whether a batch with adapters ``want`` runs them through the LoRA slot (so on compiled graphs)."""
    slot = model.lora_slot
    return bool(want) and isinstance(slot, LoraSlot) and slot.fits(want)


def set_adapters(model: LoadedModel, fast: bool, loras: Chosen) -> None:
    """Switch the adapters to this batch's (``wanted``), only when that changes.

    Switching walks every LoRA layer (about 40 ms on SSD-1B), so it is not done per batch; filling the slot copies
    the adapters' weights (a few MB). A compiled UNet's slot holds the set when it fits; the text encoders' parts of
    the LoRAs, which are not compiled, are switched as adapters either way.
    """
    want = wanted(model, fast, loras)
    slot = model.lora_slot
    if not isinstance(slot, LoraSlot):
        _switch(model, want)
        return
    with slot.lock:  # the compile warm-up pins the slot on from its own thread
        if want and slot.fits(want) or not want and slot.pins:
            # a plain batch while the warm-up traces the slot: zeroed instead of off, the same image
            if model.adapters_on == want and slot.on and slot.filled == want:
                return
            if want:  # the text encoders' parts (the UNet's adapters are replaced by the slot next)
                model.pipe.enable_lora()
                model.pipe.set_adapters([name for name, _ in want], adapter_weights=[weight for _, weight in want])
            else:
                model.pipe.disable_lora()
            slot.fill(want)
            if not slot.on:  # only the slot's state is a mode: its weights are not traced
                model.mode_changes += 1
            slot.turn_on()
            model.adapters_on, model.lora_on = want, bool(want)
        elif model.adapters_on != want or slot.on:
            slot.on = False
            _switch(model, want, force=True)


def _switch(model: LoadedModel, want: Wanted, *, force: bool = False) -> None:
    """Set the pipeline's adapters to ``want`` (every one off for none); ``force`` even when the record says so."""
    if tuple(want) == model.adapters_on and not force:
        return
    if want:
        model.pipe.enable_lora()
        model.pipe.set_adapters([name for name, _ in want], adapter_weights=[weight for _, weight in want])
    else:
        model.pipe.disable_lora()
    model.adapters_on = tuple(want)
    model.lora_on = bool(want)
    model.mode_changes += 1
