"""FP8_LINEAR: the UNet's transformer linear layers in float8 through torchao (Hopper and Ada GPUs).

At 1024^2 the SSD-1B UNet is compute-bound, and half of its FLOPs are linear layers (2.1 of 4.2
TFLOP per forward, shared/reference/ssd-1b §4); float8 tensor cores run those at twice the bf16
rate. It is lossy (dynamic per-row scales), so it stays a switch until the GPU benchmark's PSNR
against plain diffusers says it keeps default quality. torchao is not a project dependency:
``pip install torchao`` on the GPU host (it is not installed on CPU hosts because diffusers then
imports it on every start).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.gpu.model import LoadedModel

log = logging.getLogger(__name__)

# float8 matmuls need both dimensions to be multiples of 16
_ALIGN = 16


def fp8_filter(module: Any, fqn: str) -> bool:
    """Which layers go to float8: linear layers inside transformer blocks (attention and feed-forward).

    The time and text-time embeddings are left alone (a few rows per call: quantising the activations
    would cost more than it saves), and so are LoRA adapters' own small matrices.
    """
    import torch

    if not isinstance(module, torch.nn.Linear) or "transformer_blocks" not in fqn or ".lora_" in f".{fqn}":
        return False
    return module.in_features % _ALIGN == 0 and module.out_features % _ALIGN == 0


def unsupported(model: LoadedModel) -> str | None:
    """Why float8 cannot run here (None when it can)."""
    import importlib.util

    import torch

    device = model.choice.device
    if not device.startswith("cuda"):
        return f"float8 matmuls need a CUDA GPU (this model runs on {device})"
    capability = torch.cuda.get_device_capability(torch.device(device))
    if capability < (8, 9):
        return f"float8 tensor cores need compute capability 8.9+ (Ada, Hopper); this GPU has {capability[0]}.{capability[1]}"
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (pip install torchao)"
    return None


def apply_fp8(model: LoadedModel, on: bool, fast_unet: Any, lines: list[str]) -> None:
    """Quantise the UNet's (and the fast UNet's) transformer linear layers to float8; one line in ``lines``."""
    if not on:
        return
    why = unsupported(model)
    if why is not None:
        lines.append(f"FP8_LINEAR: skipped, {why}")
        return
    import torchao
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        PerRow,
        quantize_,
    )

    done = []
    for name, unet in (("UNet", model.pipe.unet), ("fast UNet", fast_unet)):
        if unet is None:
            continue
        count = sum(1 for fqn, m in unet.named_modules() if fp8_filter(m, fqn))
        quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=fp8_filter)
        done.append(f"{count} in the {name}")
    lines.append(f"FP8_LINEAR: float8 linear layers ({', '.join(done)}; torchao {torchao.__version__}, dynamic "
                 f"per-row scales); lossy, see the PSNR in benchmarks/README.md")
