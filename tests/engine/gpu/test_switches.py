"""The switches that depend on the device (``auto``), the fast-mode tiny autoencoder and float8 layers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.engine_settings import EngineSettings
from engine.gpu.acceleration import resolve_switches
from engine.gpu.fp8 import fp8_filter
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import ImageSpec, run_batch
from engine.gpu.tiny_model import save_tiny_taesd


@pytest.fixture(scope="module")
def taesd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_taesd(tmp_path_factory.mktemp("tiny-taesd"))


def fast(model: LoadedModel, seed: int = 4) -> np.ndarray:
    (image,) = run_batch(model, [ImageSpec("a fox", "", seed)], width=64, height=64, steps=4, guidance=1.0,
                         scheduler="euler", fast=True)
    return np.asarray(image).astype(np.int16)


# --- auto ----------------------------------------------------------------------------------------------


def test_auto_switches_are_the_fast_configuration_on_cuda_and_off_elsewhere(
        make_settings: Callable[..., EngineSettings]) -> None:
    on, line = resolve_switches(make_settings(), "cuda")
    assert (on.compile, on.fuse_qkv, on.channels_last, on.fast_fused_unet) == ("unet", True, True, True)
    assert line == "auto (the defaults for CUDA): COMPILE=unet, FUSE_QKV=true, CHANNELS_LAST=true, FAST_FUSED_UNET=true"
    on, line = resolve_switches(make_settings(), "cpu")
    assert (on.compile, on.fuse_qkv, on.channels_last, on.fast_fused_unet) == ("off", False, False, False)
    assert line is not None and line.startswith("auto (GPU switches stay off on cpu): COMPILE=off")
    # what the operator sets wins, and CPU offload excludes compile and the second UNet
    on, line = resolve_switches(make_settings(compile="unet+vae", fuse_qkv=False, channels_last=True,
                                              fast_fused_unet=False), "cuda")
    assert (on.compile, on.fuse_qkv, on.channels_last, on.fast_fused_unet, line) == \
        ("unet+vae", False, True, False, None)
    on, _ = resolve_switches(make_settings(cpu_offload=True), "cuda")
    assert (on.compile, on.fast_fused_unet, on.fuse_qkv) == ("off", False, True)


def test_cpu_defaults_are_unchanged(load: Callable[..., LoadedModel]) -> None:
    model = load()
    assert model.choice.dtype_name == "float32" and model.accel.compiler is None and model.fast_pipe is None
    assert not any(hasattr(m, "to_qkv") for m in model.pipe.unet.modules())
    assert any(line.startswith("auto (GPU switches stay off on cpu)") for line in model.accel.lines)


# --- FAST_VAE_ID: the tiny autoencoder for fast mode ------------------------------------------------------


def test_fast_vae_decodes_fast_batches_only(load: Callable[..., LoadedModel], taesd_dir: Path) -> None:
    from diffusers import AutoencoderTiny

    full = fast(load())
    model = load(fast_vae_id=str(taesd_dir))
    assert isinstance(model.fast_vae, AutoencoderTiny)
    assert any(line.startswith(f"FAST_VAE_ID: fast mode decodes with {taesd_dir} (AutoencoderTiny")
               for line in model.accel.lines)
    decoded: list[int] = []
    real = model.fast_vae.decode
    model.fast_vae.decode = lambda x, *a, **k: (decoded.append(int(x.shape[0])), real(x, *a, **k))[1]
    tiny = fast(model)
    assert decoded == [1] and tiny.shape == full.shape and np.abs(tiny - full).mean() > 1  # another decoder
    assert np.array_equal(fast(model), tiny)  # and deterministic
    run_batch(model, [ImageSpec("a fox", "", 1)], width=64, height=64, steps=2, guidance=5.0, scheduler="euler")
    assert decoded == [1, 1]  # quality batches keep the full VAE


def test_fast_vae_that_cannot_load_leaves_fast_mode_on_the_full_vae(load: Callable[..., LoadedModel],
                                                                     tmp_path: Path) -> None:
    model = load(fast_vae_id=str(tmp_path / "missing"))
    assert model.fast_vae is None
    assert any(line.startswith(f"FAST_VAE_ID: could not load '{tmp_path / 'missing'}'") for line in model.accel.lines)
    assert fast(model).shape == (64, 64, 3)
    model = load(fast_vae_id=str(tmp_path / "missing"), fast_lora_id="")
    assert "FAST_VAE_ID: skipped, fast mode is off (no fast-mode LoRA is loaded)" in model.accel.lines


def test_fast_vae_auto_is_taesd_on_cuda_and_none_on_a_cpu() -> None:
    """Fast mode at defaults decoded with the full VAE (~0.085 s of its ~0.12 s an image on an H200): FAST_VAE_ID
    defaults to auto, the tiny autoencoder on CUDA; a CPU keeps the full VAE, and off or empty turn it off."""
    from engine.engine_settings import EngineSettings
    from engine.gpu.model import TAESD_XL, fast_vae_repo

    assert EngineSettings(_env_file=None).accel.fast_vae_id == "auto"
    assert fast_vae_repo("auto", cuda=True) == TAESD_XL == "madebyollin/taesdxl"
    assert fast_vae_repo("auto", cuda=False) == ""
    assert fast_vae_repo("off", cuda=True) == fast_vae_repo("", cuda=True) == ""
    assert fast_vae_repo("/models/taesd", cuda=False) == "/models/taesd"


def _unet_batches(model: LoadedModel, **call: object) -> tuple[list[int], np.ndarray]:
    """The UNet's input batch at each step of one 4-step call, and the image it made."""
    seen: list[int] = []
    hook = model.pipe.unet.register_forward_pre_hook(lambda module, args: seen.append(int(args[0].shape[0])))
    try:
        [image] = run_batch(model, [ImageSpec("a fox", "", 3)], width=64, height=64, steps=4, guidance=5.0,
                            scheduler="euler", **call)  # type: ignore[arg-type]
    finally:
        hook.remove()
    return seen, np.asarray(image, dtype=np.int16)


def test_cfg_cutoff_drops_guidance_for_the_last_steps(load: Callable[..., LoadedModel]) -> None:
    """CFG_CUTOFF=0.5: the first two steps run guided (2 inputs), the last two unguided (1): faster, and the image
    changes (hence off by default and said so in the status)."""
    guided, full = _unet_batches(load(fast_lora_id=""))
    model = load(fast_lora_id="", cfg_cutoff=0.5)
    cut, image = _unet_batches(model)
    assert guided == [2, 2, 2, 2] and cut == [2, 2, 1, 1]
    assert np.abs(image - full).max() > 0  # the unguided last steps land elsewhere
    assert any(line.startswith("CFG_CUTOFF: guidance stops after 50% of the steps") and "changes the image" in line
               for line in model.accel.lines)


def test_cfg_cutoff_leaves_image_to_image_and_unguided_calls_alone(load: Callable[..., LoadedModel]) -> None:
    """Image-to-image drops guidance on its own steps too; a call without guidance is unchanged."""
    from PIL import Image

    model = load(fast_lora_id="", cfg_cutoff=0.5)
    img2img, _ = _unet_batches(model, init_images=[Image.new("RGB", (64, 64), "red")], strength=1.0)
    seen: list[int] = []
    hook = model.pipe.unet.register_forward_pre_hook(lambda module, args: seen.append(int(args[0].shape[0])))
    try:
        run_batch(model, [ImageSpec("a fox", "", 3)], width=64, height=64, steps=4, guidance=1.0, scheduler="euler")
    finally:
        hook.remove()
    assert img2img == [2, 2, 1, 1] and seen == [1, 1, 1, 1]


# --- FP8_LINEAR -------------------------------------------------------------------------------------------


def test_fp8_is_skipped_with_the_reason_off_hopper(load: Callable[..., LoadedModel]) -> None:
    model = load(fp8_linear=True)
    assert "FP8_LINEAR: skipped, float8 matmuls need a CUDA GPU (this model runs on cpu)" in model.accel.lines


def test_fp8_takes_the_transformer_linear_layers_only(load: Callable[..., LoadedModel]) -> None:
    import torch

    unet = load().pipe.unet
    chosen = [fqn for fqn, m in unet.named_modules() if fp8_filter(m, fqn)]
    linears = [fqn for fqn, m in unet.named_modules() if isinstance(m, torch.nn.Linear)]
    assert chosen and all("transformer_blocks" in fqn for fqn in chosen)
    assert any(fqn.endswith("attn1.to_q.base_layer") for fqn in chosen)  # inside the (switched-off) LoRA
    assert not any("lora_" in fqn for fqn in chosen)
    assert any(fqn.startswith("time_embedding") for fqn in linears)  # left alone: a few rows per call


def test_cfg_cutoff_halves_the_inpainting_mask_too(load: Callable[..., LoadedModel]) -> None:
    """A canvas edit (inpainting: its mask is doubled for guidance like the prompts) drops guidance on its last
    steps too, one image still."""
    from PIL import Image

    model = load(fast_lora_id="", cfg_cutoff=0.5)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    seen, image = _unet_batches(model, init_images=[Image.new("RGB", (64, 64), "red")], strength=1.0, masks=[mask])
    assert seen == [2, 2, 1, 1] and image.shape == (64, 64, 3)
