"""Shared by the switch, compile and half-precision tests: batched calls as arrays, image checks, a LoRA.

Their fixtures (``load``, ``strong_lora_dir``) are in tests/engine/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.gpu.acceleration import padded_batch_size
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import ImageSpec, run_batch

SPECS = [ImageSpec("a red fox in the snow", "blurry", seed) for seed in (11, 22, 33)]
# uint8 pixels: float reorderings (fused matmuls, other memory layouts, other batch sizes) may
# flip a rounding; anything larger would be a different image
PIXEL_TOLERANCE = 2


def generate(model: LoadedModel, specs: list[ImageSpec] = SPECS, *, size: tuple[int, int] = (64, 64),
             fast: bool = False, guidance: float = 5.0) -> np.ndarray:
    """Images of one batched call as a (n, h, w, 3) int array, padded to a compiled size as the worker does."""
    batch_size = padded_batch_size(model, len(specs), width=size[0], height=size[1], guidance=guidance, fast=fast)
    images = run_batch(model, specs, width=size[0], height=size[1], steps=2, guidance=guidance,
                       scheduler="euler", fast=fast, batch_size=batch_size)
    return np.stack([np.asarray(img, dtype=np.int16) for img in images])


def assert_same_image(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert int(np.abs(a - b).max()) <= PIXEL_TOLERANCE


def save_random_lora(out_dir: Path, seed: int = 5) -> Path:
    """A LoRA for the tiny UNet with non-zero weights (the shared one is a no-op: lora_B = 0)."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    from engine.gpu.tiny_model import build_tiny_pipeline

    pipe = build_tiny_pipeline(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionXLPipeline.save_lora_weights(out_dir, unet_lora_layers=state, safe_serialization=True)
    return out_dir
