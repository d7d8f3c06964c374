"""bench_gpu.py's building blocks: the SSD-1B architecture with random weights, and measuring helpers.

Timing does not depend on weight values, so the architecture is built from benchmarks/configs/
(copied from shared/reference/ssd-1b/) with random weights, seeded, so every phase builds the very
same weights and their images can be compared (PSNR). Tokenizers are byte-level CLIP tokenizers
made offline with the real vocabulary size (49408).
"""

from __future__ import annotations

import copy
import gc
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"
NEGATIVE = "ugly, blurry, poor quality"
CLIP_VOCAB = 49408
WEIGHT_SEED = 0


# --- building the model --------------------------------------------------------------------------------


def clip_tokenizer(vocab_size: int) -> Any:
    """A byte-level CLIP tokenizer padded to ``vocab_size`` ids, BOS/EOS at the real ids (49406/7)."""
    from transformers import CLIPTokenizer

    from engine.gpu.tiny_model import BOS, EOS, tiny_vocab

    vocab, merges = tiny_vocab()
    vocab.pop(BOS)
    vocab.pop(EOS)
    for i in range(len(vocab), vocab_size - 2):
        vocab[f"<|unused{i}|>"] = i
    vocab[BOS] = vocab_size - 2
    vocab[EOS] = vocab_size - 1
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_ssd1b(device: str, dtype: Any, seed: int = WEIGHT_SEED) -> Any:
    """StableDiffusionXLPipeline with SSD-1B's architecture and random weights (reference §2), seeded."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def load(name: str) -> dict[str, Any]:
        return json.loads((CONFIGS / f"{name}.json").read_text())

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(load("unet")).to(dtype)
        vae = AutoencoderKL.from_config(load("vae")).to(dtype)
        te1 = CLIPTextModel(CLIPTextConfig(**load("text_encoder"))).to(dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**load("text_encoder_2"))).to(dtype)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=clip_tokenizer(CLIP_VOCAB),
                                     tokenizer_2=clip_tokenizer(CLIP_VOCAB), unet=unet,
                                     scheduler=EulerDiscreteScheduler.from_config(load("scheduler")))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def random_model_id(tiny: bool) -> str:
    """The MODEL_ID of the random-weight model: the engine's settings must name it, or its model pool takes the model
    for one whose source changed, unloads it and asks the loader again (every job then failed)."""
    return "random-weights:tiny" if tiny else "random-weights:ssd-1b"


def build_model(tiny: bool, device: str, dtype_name: str) -> Any:
    """A LoadedModel around a random-weight pipeline (what engine.model.load_model returns); same weights
    every time."""
    import torch

    from engine.gpu.model import DeviceChoice, LoadedModel
    from engine.gpu.tiny_model import build_tiny_pipeline

    started = time.perf_counter()
    if tiny:
        pipe = build_tiny_pipeline(WEIGHT_SEED).to(device, getattr(torch, dtype_name))
        pipe.set_progress_bar_config(disable=True)
    else:
        pipe = build_ssd1b(device, getattr(torch, dtype_name))
    sync(device)
    return LoadedModel(pipe=pipe, model_id=random_model_id(tiny),
                       choice=DeviceChoice(device, dtype_name), base_scheduler_config=dict(pipe.scheduler.config),
                       load_seconds=time.perf_counter() - started)


def save_random_lora(unet: Any, out_dir: Path, rank: int) -> dict[str, Any]:
    """A random LoRA with the LCM-LoRA's layout on the UNet's linear layers, saved for load_lora_weights."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "time_emb_proj"]
    unet = copy.deepcopy(unet)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights="gaussian"))
    # peft starts every B at zero (the adapter then changes nothing, and a switch to it can look free): B random too
    generator = torch.Generator().manual_seed(WEIGHT_SEED)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    nonzero_b = all(bool(v.abs().sum()) for k, v in state.items() if "lora_B" in k or "lora.up" in k)
    params = sum(v.numel() for v in state.values())
    StableDiffusionXLPipeline.save_lora_weights(out_dir, unet_lora_layers=state, safe_serialization=True)
    del unet
    return {"rank": rank, "params_M": round(params / 1e6, 2), "targets": targets, "b_nonzero": nonzero_b,
            "note": "linear layers only; the real lcm-lora-ssd-1b (105 M params) also adapts convolutions"}


def save_random_taesd(out_dir: Path, tiny: bool) -> dict[str, Any]:
    """A random AutoencoderTiny for FAST_VAE_ID: madebyollin/taesdxl's architecture (diffusers' default
    AutoencoderTiny config), or the tiny test one; saved, so the engine loads it with from_pretrained."""
    import torch
    from diffusers import AutoencoderTiny

    from engine.gpu.tiny_model import build_tiny_taesd

    torch.manual_seed(WEIGHT_SEED)
    ae = build_tiny_taesd() if tiny else AutoencoderTiny()
    ae.save_pretrained(out_dir, safe_serialization=True)
    return {"decoder_params_M": round(sum(p.numel() for p in ae.decoder.parameters()) / 1e6, 3),
            "note": "random weights with taesdxl's architecture: times are real, images are not"}


# --- measuring ------------------------------------------------------------------------------------------


def sync(device: str) -> None:
    """Wait for queued GPU work."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class Memory:
    """Peak accelerator memory of one phase (GiB), None on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        """Start a new peak."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> float | None:
        """The peak since ``reset`` (GiB)."""
        if not self.cuda:
            return None
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2)

    def now(self) -> float | None:
        """Memory allocated right now (GiB): what earlier phases left behind."""
        if not self.cuda:
            return None
        import torch

        return round(torch.cuda.memory_allocated() / 2**30, 2)


def free(device: str) -> None:
    """Give a finished phase's model back before the next phase measures its peak.

    The engine freezes long-lived objects out of the garbage collector once a model is loaded
    (engine/ops/heap.py); frozen reference cycles are never collected, so they are unfrozen first.
    """
    gc.unfreeze()
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


@dataclass
class Budget:
    """Seconds left in the run; phases ask before they start."""

    total: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        """Seconds left."""
        return self.total - (time.perf_counter() - self.started)

    def allows(self, seconds: float) -> bool:
        """True when ``seconds`` still fit."""
        return self.left() > seconds


def prompt_for(i: int) -> str:
    """The prompt of job ``i`` (the same in every phase, so images can be compared)."""
    return f"a photo of a red fox in the snow, number {i}"


def prompts(n: int) -> list[str]:
    """The first ``n`` prompts."""
    return [prompt_for(i) for i in range(n)]


def seed_for(i: int) -> int:
    """The seed of job ``i`` (the same in every phase)."""
    return 5000 + i


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (100 when equal, JSON has no infinity)."""
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return 100.0 if mse == 0 else min(100.0, round(10 * math.log10(255.0**2 / mse), 2))


def cpu_name() -> str:
    """The CPU's model name (Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def make_settings(**values: Any) -> Any:
    """EngineSettings from flat keyword values, the speed switches included.

    EngineSettings ignores unknown keywords (extra="ignore"), so a switch passed to it directly would
    be dropped without a word; the switches go to AccelerationSettings, and a name that is neither is
    an error here.
    """
    from engine.engine_settings import AccelerationSettings, EngineSettings

    accel = {k: values.pop(k) for k in list(values) if k in AccelerationSettings.model_fields}
    unknown = [k for k in values if k not in EngineSettings.model_fields]
    if unknown:
        raise TypeError(f"not engine settings: {', '.join(unknown)}")
    return EngineSettings(_env_file=None, accel=AccelerationSettings(_env_file=None, **accel), **values)
