"""Switching a model's adapters to a batch's: its LoRAs at their weights and the LCM-LoRA for fast batches, through
the LoRA slot when the UNet is compiled, the set fits there and the batch's shape has warm slot graphs
(engine/gpu/lora/slot.py), else as peft adapters."""

from __future__ import annotations

from typing import Any

from engine.gpu.lora.slot import LoraSlot, Wanted
from engine.gpu.model import LoadedModel, ModelLoadError
from engine.requests.loras import Chosen, adapter_name

Shape = tuple[int, int, int]  # width, height and the UNet's batch (twice the images with CFG)


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


def in_slot(model: LoadedModel, want: Wanted, shape: Shape | None = None) -> bool:
    """Whether a batch with adapters ``want`` runs them through the LoRA slot: they fit, and (given its ``shape``)
    that shape's slot graphs are warm."""
    slot = model.lora_slot
    if not want or not isinstance(slot, LoraSlot) or not slot.fits(want):
        return False
    compiler = getattr(model.accel, "compiler", None)
    return shape is None or (compiler is not None and compiler.slot_warm(*shape))


def set_adapters(model: LoadedModel, fast: bool, loras: Chosen, shape: Shape | None = None) -> None:
    """Switch the adapters to this batch's (``wanted``; ``shape`` says whether its slot graphs are warm), only when
    that changes.

    Switching peft adapters walks every LoRA layer (about 40 ms on SSD-1B), so it is not done per batch; filling the
    slot zeroes it and copies the adapters' weights in. While the slot is on, a switch only copies weights (the
    UNet's adapter state, which compiled graphs guard on, stays); the text encoders' parts of the LoRAs, which are
    not compiled, are switched as adapters.
    """
    want = wanted(model, fast, loras)
    slot = model.lora_slot
    if not isinstance(slot, LoraSlot):
        _switch(model, want)
        return
    use = in_slot(model, want, shape)
    with slot.lock:  # the compile warm-up pins the slot on from its own thread
        if use or not want and slot.pins:
            # a plain batch while the warm-up traces the slot: zeroed instead of off, the same image
            if model.adapters_on == want and slot.on and slot.filled == want:
                return
            _text_encoders(model.pipe, want)
            slot.fill(want)
            if not slot.on:  # only the slot's state is a mode: its weights are not traced
                slot.turn_on()
                model.mode_changes += 1
            model.adapters_on, model.lora_on = want, bool(want)
        elif model.adapters_on != want or slot.on:
            slot.on = False
            _switch(model, want, force=True)


def _text_encoders(pipe: Any, want: Wanted) -> None:
    """The text encoders' adapters set to ``want`` (those they hold), or off."""
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    for encoder in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)):
        held = getattr(encoder, "peft_config", None)
        if not held:
            continue
        names = [(name, weight) for name, weight in want if name in held]
        if names:
            enable_lora_for_text_encoder(encoder)
            set_adapters_for_text_encoder([n for n, _ in names], encoder, [w for _, w in names])
        else:
            disable_lora_for_text_encoder(encoder)


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
