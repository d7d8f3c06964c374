"""The LoRA slot: one adapter on a compiled UNet whose weights take each batch's LoRAs, so that LoRA batches run
compiled graphs and switching LoRAs never recompiles.

torch.compile specialises a graph on which adapters a LoRA layer runs (peft's ``active_adapters``, a Python list) and
on their scalings, not on the values of their weights. So the UNet gets one adapter more, the slot, on every layer
any loaded adapter adapts, of rank LORA_SLOT_RANK and scaling 1. A batch with LoRAs a and b at weights wa and wb
copies them into it, side by side along the rank: ``A = [A_a; A_b; 0]`` and ``B = [B_a * s_a * wa, B_b * s_b * wb,
0]``, where ``s`` is each adapter's own scaling (alpha / r). ``B @ A`` is then exactly the sum of their updates, and
the graphs compiled once with the slot on serve every LoRA set. A plain batch turns the slot off and runs the plain
graphs: no LoRA matmul is added to it.

diffusers' own hot-swap (``enable_lora_hotswap``) keeps one adapter per slot and reads its file at each swap; a batch
here has several LoRAs with weights, plus the LCM-LoRA in fast mode, and their weights are already in memory, so the
slot is filled from the loaded adapters instead.

A LoRA set that does not fit (more rank than the slot in some layer, a layer kind the slot cannot take: DoRA, a LoRA
bias, embeddings), and a batch whose shape has no warm slot graph (another size, a batch size not compiled for LoRAs,
the warm-up not done), runs its own adapters eagerly, as without the slot: the slot's rank-128 matmuls would cost
more there than the LoRAs' own small ones.

The compile warm-up traces the slot's graphs while the worker serves: it pins the slot on (``pinned``). Meanwhile a
plain batch zeroes the slot instead of turning it off (adding exact zeros changes no value), so it runs eagerly until
that shape is compiled, and the slot is turned off again when the last pin goes and no LoRA is in it.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

SLOT = "hotswap-slot"  # members' LoRAs are "lora-<name>" (engine/requests/loras.adapter_name), fast mode's "lcm"
Wanted = Sequence[tuple[str, float]]  # (adapter name, weight), the order the batch asks for


def _slot_layers(unet: Any) -> list[tuple[str, Any]]:
    """(name, peft LoRA layer) of every Linear or Conv2d LoRA layer of ``unet`` that holds an adapter."""
    from peft.tuners.lora.layer import Conv2d, Linear

    return [(name, module) for name, module in unet.named_modules()
            if isinstance(module, (Linear, Conv2d)) and module.lora_A]


class LoraSlot:
    """The slot adapter on one UNet: what it holds, who pinned it on, and the lock every switch takes."""

    def __init__(self, unet: Any, rank: int) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.unet = unet
        self.rank = rank
        self.layers = [layer for _, layer in _slot_layers(unet) if SLOT in layer.lora_A]
        # adapters with a layer the slot does not cover (an embedding): they cannot go in. Fixed once built: a LoRA
        # added later loads the model again (``lora_fixed``), and a removed one is only forgotten
        covered = {id(layer) for layer in self.layers}
        self._outside = frozenset(name for module in unet.modules()
                                  if isinstance(module, BaseTunerLayer) and id(module) not in covered
                                  for name in getattr(module, "lora_A", {}))
        self.filled: tuple[tuple[str, float], ...] | None = None  # what the slot holds (None: not known, refill)
        self.on = False  # whether the UNet runs the slot (and only it)
        self.pins = 0
        self.lock = threading.Lock()

    @classmethod
    def build(cls, unet: Any, rank: int) -> LoraSlot | None:
        """Add the slot to every layer of ``unet`` that holds an adapter (None when none does), zeroed and off."""
        import torch
        from peft import LoraConfig

        names = [name for name, _ in _slot_layers(unet)]
        if not names:
            return None
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=names, init_lora_weights=True)
        unet.add_adapter(config, adapter_name=SLOT)
        slot = cls(unet, rank)
        slot.zero()
        for layer in slot.layers:  # CHANNELS_LAST: the slot's convolutions take their layer's memory format
            if layer.get_base_layer().weight.dim() == 4 and \
                    layer.get_base_layer().weight.is_contiguous(memory_format=torch.channels_last):
                layer.lora_A[SLOT].to(memory_format=torch.channels_last)
                layer.lora_B[SLOT].to(memory_format=torch.channels_last)
        unet.disable_adapters()
        return slot

    def fits(self, want: Wanted) -> bool:
        """Whether the slot can hold ``want``: every adapter a plain LoRA on layers the slot covers (and on one at
        least), their ranks within the slot's per layer."""
        names = {name for name, _ in want}
        if names & self._outside:
            return False
        seen: set[str] = set()
        for layer in self.layers:
            rank = 0
            for name, _ in want:
                if name not in layer.lora_A:
                    continue
                if layer.use_dora.get(name) or getattr(layer.lora_B[name], "bias", None) is not None:
                    return False
                rank += layer.r[name]
                seen.add(name)
            if rank > self.rank:
                return False
        return seen == names

    def fill(self, want: Wanted) -> None:
        """Copy ``want``'s adapters into the slot at their weights (the rest of its rank zero)."""
        import torch

        if self.filled == tuple(want):
            return
        with torch.no_grad():
            for layer in self.layers:
                a, b = layer.lora_A[SLOT].weight, layer.lora_B[SLOT].weight
                a.zero_()
                b.zero_()
                offset = 0
                for name, weight in want:
                    if name not in layer.lora_A:
                        continue
                    r = layer.r[name]
                    root = math.sqrt(r) if layer.use_rslora.get(name, False) else r
                    scale = weight * layer.lora_alpha[name] / root  # peft's set_scale, from the adapter's own alpha
                    a[offset:offset + r].copy_(layer.lora_A[name].weight)
                    b[:, offset:offset + r].copy_(layer.lora_B[name].weight * scale)
                    offset += r
        self.filled = tuple(want)

    def zero(self) -> None:
        """Every slot weight zero: running the slot then adds exactly nothing."""
        self.fill(())

    def turn_on(self) -> None:
        """The UNet runs the slot and nothing else."""
        self.unet.enable_adapters()
        self.unet.set_adapters([SLOT], weights=[1.0])
        self.on = True

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """The slot on for the compile warm-up's call: zeroed when it was off (a plain batch running meanwhile gets
        the same image), and off again after the last pin when no LoRA went in meanwhile."""
        with self.lock:
            self.pins += 1
            if not self.on and not self._others_on():
                self.zero()
                self.turn_on()
        try:
            yield
        finally:
            with self.lock:
                self.pins -= 1
                if self.pins == 0 and self.on and self.filled == ():
                    self.unet.disable_adapters()
                    self.on = False

    def _others_on(self) -> bool:
        """Whether the worker runs other adapters now (a LoRA set that did not fit): the pin leaves them alone, and
        the warm-up's call, traced that way, is not counted."""
        layer = self.layers[0]
        return not layer.disable_adapters and list(layer.active_adapters) != [SLOT]
