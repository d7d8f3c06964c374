"""The acceleration switches (engine/gpu/acceleration.py) on the tiny model, on CPU.

Each switch does on CPU what it can: module-changing switches really change the modules and
leave the image equal within rounding; CUDA-only switches are skipped with a reason. The
torch.compile machinery is tested in test_compile.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.engine_settings import EngineSettings, SettingsError, load_engine_settings
from engine.gpu import acceleration
from engine.gpu.acceleration import apply_accelerations
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import run_batch
from tests.engine.switch_helpers import SPECS, assert_same_image, generate

# --- switches that change modules ---------------------------------------------------------------------


def test_defaults_change_nothing_and_report_why(load: Callable[..., LoadedModel]) -> None:
    model = load()
    lines = model.accel.lines
    assert lines[0] == "DTYPE: float32 on cpu"
    assert any(line.startswith("SDPA: on (") for line in lines)
    assert any(line.startswith("VAE: decodes in float32 without upcast") for line in lines)
    assert model.accel.compiler is None and model.accel.routers == []
    assert model.pipe.unet._compiled_call_impl is None


def test_sdpa_replaces_a_classic_attention_processor(load: Callable[..., LoadedModel],
                                                     make_settings: Callable[..., EngineSettings]) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    model = load()
    model.accel = None
    model.pipe.unet.set_attn_processor(AttnProcessor())
    lines = apply_accelerations(model, make_settings())
    assert all(type(p) is AttnProcessor2_0 for p in model.pipe.unet.attn_processors.values())
    assert any("classic processor(s) replaced" in line for line in lines)


def test_fuse_qkv_and_channels_last_change_the_modules_not_the_image(load: Callable[..., LoadedModel]) -> None:
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    reference = generate(load(fast_lora_id=""))
    model = load(fast_lora_id="", fuse_qkv=True, channels_last=True)
    unet, vae = model.pipe.unet, model.pipe.vae
    assert all(type(p) is FusedAttnProcessor2_0 for p in unet.attn_processors.values())
    assert all(type(p) is FusedAttnProcessor2_0 for p in vae.attn_processors.values())
    assert any(hasattr(m, "to_qkv") for m in unet.modules())
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not unet.conv_in.weight.is_contiguous()
    assert vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_image(generate(model), reference)
    assert any(line.startswith("FUSE_QKV: fused q/k/v projections in UNet, VAE") for line in model.accel.lines)


def test_fuse_qkv_leaves_the_unet_alone_when_the_fast_lora_sits_on_qkv(load: Callable[..., LoadedModel]) -> None:
    model = load(fuse_qkv=True)  # the shared tiny LoRA is loaded by default
    assert model.fast_adapter == "lcm"
    assert not any(hasattr(m, "to_qkv") for m in model.pipe.unet.modules())
    assert any(hasattr(m, "to_qkv") for m in model.pipe.vae.modules())
    assert any("UNet skipped, the fast-mode LoRA" in line for line in model.accel.lines)


def test_fp16_vae_is_refused_for_the_models_own_vae(load: Callable[..., LoadedModel]) -> None:
    """The model's own VAE says it overflows in float16: FP16_VAE would give black images, so it is refused."""
    model = load(fp16_vae=True)
    assert model.pipe.vae.config.force_upcast is True
    line = next(x for x in model.accel.lines if x.startswith("FP16_VAE"))
    assert "refused" in line and "VAE_ID is not set" in line and "madebyollin/sdxl-vae-fp16-fix" in line


def test_fp16_vae_with_a_vae_id_that_failed_to_load_keeps_the_fp32_copy(load: Callable[..., LoadedModel],
                                                                          tmp_path: Path) -> None:
    """A VAE_ID that cannot be loaded leaves the model's own VAE: in float16 it still decodes in its private
    float32 copy, and the status says why (it decoded in float16, black images on real weights, silently)."""
    from engine.gpu import vae as vae_module

    model = load(fp16_vae=True, dtype="float16", vae_id=str(tmp_path / "no-such-vae"))
    assert model.pipe.vae.config.force_upcast is True
    assert vae_module.decoding_vae(model).dtype == torch.float32
    line = next(x for x in model.accel.lines if x.startswith("FP16_VAE"))
    assert "refused" in line and "VAE_ID failed to load" in line


def test_vae_id_loads_a_separate_vae_and_no_nan_warning(load: Callable[..., LoadedModel], tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    vae_dir = tmp_path / "fp16-fix-vae"
    vae = AutoencoderKL.from_pretrained(tiny_model_dir / "vae")
    vae.register_to_config(force_upcast=False)  # what madebyollin/sdxl-vae-fp16-fix ships
    vae.save_pretrained(vae_dir)
    model = load(vae_id=str(vae_dir), fp16_vae=True)
    assert model.pipe.vae.config.force_upcast is False
    assert any(line.startswith(f"VAE: decodes in float32 without upcast (VAE_ID={vae_dir})")
               for line in model.accel.lines)
    assert not any("NaN" in line for line in model.accel.lines)


def test_vae_tiling_and_slicing_set_the_vae_flags(load: Callable[..., LoadedModel]) -> None:
    reference = generate(load(fast_lora_id=""))
    model = load(fast_lora_id="", vae_tiling=True, vae_slicing=True)
    assert model.pipe.vae.use_tiling and model.pipe.vae.use_slicing
    # 64x64 is below the tile size, and slicing decodes the same images one by one
    assert_same_image(generate(model), reference)


def test_cpu_only_switches_are_skipped_with_a_reason(load: Callable[..., LoadedModel],
                                                      make_settings: Callable[..., EngineSettings]) -> None:
    from engine.gpu.model import load_model

    model = load(cpu_offload=True)
    assert "CPU_OFFLOAD: skipped, the model already runs on cpu" in model.accel.lines
    settings = make_settings(compile="unet", cuda_graphs=True, compile_mode="max-autotune")
    model = load_model(settings)
    lines = apply_accelerations(model, settings, start_warmup=False)  # inductor would compile for a minute
    assert "CUDA_GRAPHS: skipped, CUDA graphs need a CUDA device" in lines
    # on CPU the graphs are dropped from the mode; on CUDA this would be "max-autotune"
    assert any("with mode max-autotune-no-cudagraphs, backend inductor" in line for line in lines)
    assert model.accel.compiler.state == "pending"


def test_a_failing_switch_is_reported_and_the_rest_still_apply(load: Callable[..., LoadedModel],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("no such kernel\nsecond line")

    monkeypatch.setattr(acceleration, "_fuse_qkv", broken)
    model = load(fuse_qkv=True, channels_last=True)
    assert "FUSE_QKV: failed and left off (RuntimeError: no such kernel)" in model.accel.lines
    assert model.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_applying_twice_is_refused(load: Callable[..., LoadedModel],
                                   make_settings: Callable[..., EngineSettings]) -> None:
    model = load()
    with pytest.raises(RuntimeError, match="already applied"):
        apply_accelerations(model, make_settings())


# --- fast mode: the fused fast UNet ------------------------------------------------------------------


def test_fast_fused_unet_gives_the_lora_images(load: Callable[..., LoadedModel], strong_lora_dir: Path) -> None:
    plain = generate(load(fast_lora_id=""), fast=False, guidance=1.0)
    with_lora = generate(load(fast_lora_id=str(strong_lora_dir)), fast=True, guidance=1.0)
    assert np.abs(with_lora - plain).max() > 10, "the test LoRA must change the image"

    model = load(fast_lora_id=str(strong_lora_dir), fast_fused_unet=True, fuse_qkv=True)
    calls = {"base": 0, "fast": 0}
    model.pipe.unet.register_forward_pre_hook(lambda *a: calls.__setitem__("base", calls["base"] + 1))
    model.accel.fast_unet.register_forward_pre_hook(lambda *a: calls.__setitem__("fast", calls["fast"] + 1))
    assert_same_image(generate(model, fast=True, guidance=1.0), with_lora)
    assert calls == {"base": 0, "fast": 2}  # two steps, each on the fused copy
    assert not any(hasattr(m, "lora_A") for m in model.accel.fast_unet.modules())
    # quality batches still run the base UNet with the LoRA off
    assert_same_image(generate(model, fast=False, guidance=1.0), plain)
    assert calls == {"base": 2, "fast": 2}


def test_fast_fused_unet_unloads_the_lora_from_the_quality_unet(load: Callable[..., LoadedModel],
                                                                strong_lora_dir: Path) -> None:
    """No disabled LoRA wrappers are left in the quality UNet (they cost a check per layer per forward)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = load(fast_lora_id=str(strong_lora_dir))
    assert any(isinstance(m, BaseTunerLayer) for m in model.pipe.unet.modules())  # the adapter, switched off
    model = load(fast_lora_id=str(strong_lora_dir), fast_fused_unet=True)
    assert not any(isinstance(m, BaseTunerLayer) for m in model.pipe.unet.modules())
    assert model.fast_pipe.unet is model.accel.fast_unet and model.fast_pipe.vae is model.pipe.vae
    assert any("the LoRA is unloaded from the quality UNet" in line for line in model.accel.lines)
    # fast variations run the fused UNet too
    source = Image.new("RGB", (64, 64), (30, 120, 200))
    run_batch(model, SPECS[:1], width=64, height=64, steps=4, guidance=1.0, scheduler="euler", fast=True,
              init_images=[source], strength=0.5)
    assert model.fast_img2img.unet is model.accel.fast_unet


# --- settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "message"), [
    ({"CUDA_GRAPHS": "true", "COMPILE": "off"}, "CUDA_GRAPHS=true needs COMPILE=auto, unet or unet+vae"),
    ({"COMPILE": "unet", "CPU_OFFLOAD": "true"}, "COMPILE and CPU_OFFLOAD cannot be combined"),
    ({"COMPILE": "unet+vae", "CUDA_GRAPHS": "true", "VAE_SLICING": "true"},
     "CUDA_GRAPHS=true cannot be combined with VAE_SLICING: a captured graph reuses its output buffers"),
    ({"COMPILE": "unet", "CUDA_GRAPHS": "true", "VAE_TILING": "true"},
     "CUDA_GRAPHS=true cannot be combined with VAE_TILING: a captured graph"),
    ({"COMPILE": "unet", "CUDA_GRAPHS": "true", "VAE_TILING": "true", "VAE_SLICING": "true"},
     "cannot be combined with VAE_SLICING and VAE_TILING"),
    ({"FAST_FUSED_UNET": "true", "CPU_OFFLOAD": "true"}, "FAST_FUSED_UNET keeps a second UNet resident"),
    ({"COMPILE": "yes"}, "COMPILE: Input should be 'auto', 'off', 'unet' or 'unet+vae'"),
    ({"COMPILE_MODE": "turbo"}, "COMPILE_MODE: Input should be 'default' or 'max-autotune'"),
    ({"COMPILE_BACKEND": "tensorrt"}, "COMPILE_BACKEND: Input should be"),
    ({"COMPILE_BATCH_SIZES": "1,two"}, "COMPILE_BATCH_SIZES: must be a comma-separated list of batch sizes"),
    ({"COMPILE_BATCH_SIZES": "0,4"}, "COMPILE_BATCH_SIZES: batch sizes must be from 1 to 64"),
    ({"COMPILE_BATCH_SIZES": "128"}, "COMPILE_BATCH_SIZES: batch sizes must be from 1 to 64"),
    ({"COMPILE_SIZES": "512x512"}, "COMPILE_SIZES 512x512 not in SIZES"),
    ({"COMPILE_SIZES": "100x100"}, "COMPILE_SIZES:"),
    ({"FUSE_QKV": "maybe"}, "FUSE_QKV: must be auto, true or false"),
    ({"FAST_FUSED_UNET": "sometimes"}, "FAST_FUSED_UNET: must be auto, true or false"),
])
def test_invalid_acceleration_settings_name_the_variable(env: dict[str, str], message: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_engine_settings(_env_file=None)
    assert message in str(info.value)


def test_acceleration_settings_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"COMPILE": "unet+vae", "COMPILE_BATCH_SIZES": "4, 1,2,2", "COMPILE_SIZES": "1024x1024,832x1216",
           "CUDA_GRAPHS": "1", "COMPILE_MODE": "max-autotune", "FP16_VAE": "true", "FUSE_QKV": "true",
           "CHANNELS_LAST": "true", "FAST_FUSED_UNET": "true",
           "COMPILE_CACHE_DIR": "/var/cache/imagine"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = load_engine_settings(_env_file=None).accel
    assert s.compile == "unet+vae" and s.compile_batch_sizes == (1, 2, 4)
    assert [str(x) for x in s.compile_sizes] == ["1024x1024", "832x1216"]
    assert s.cuda_graphs and s.compile_mode == "max-autotune" and s.fp16_vae and s.fuse_qkv
    assert s.channels_last and s.fast_fused_unet
    assert s.compile_cache_dir == Path("/var/cache/imagine")
    for key in env:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VAE_TILING", "true")
    monkeypatch.setenv("VAE_SLICING", "1")
    s = load_engine_settings(_env_file=None).accel
    assert s.vae_tiling and s.vae_slicing and not s.cuda_graphs  # not with CUDA_GRAPHS (see above)
    monkeypatch.delenv("VAE_TILING")
    monkeypatch.delenv("VAE_SLICING")
    monkeypatch.setenv("COMPILE_CACHE_DIR", "")  # empty: the default under DATA_DIR, not "."
    loaded = load_engine_settings(_env_file=None)
    defaults = loaded.accel
    assert (defaults.compile, defaults.compile_batch_sizes, defaults.compile_sizes) == ("auto", (1, 2, 4), ())
    assert (defaults.fuse_qkv, defaults.channels_last, defaults.fast_fused_unet) == (None, None, None)  # auto
    assert loaded.max_batch == 4  # the measured knee, see benchmarks/README.md
    assert defaults.compile_cache_dir is None


# --- ATTENTION_BACKEND ----------------------------------------------------------------------------------


@pytest.fixture
def sdpa_restored() -> Any:
    """ATTENTION_BACKEND sets torch's process-wide SDPA order and kernels: put them back for the other tests."""
    order = torch._C._get_sdp_priority_order()
    flags = (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
             torch.backends.cuda.cudnn_sdp_enabled())
    yield
    torch._C._set_sdp_priority_order(order)
    for enable, on in zip((torch.backends.cuda.enable_flash_sdp, torch.backends.cuda.enable_mem_efficient_sdp,
                           torch.backends.cuda.enable_cudnn_sdp), flags, strict=True):
        enable(on)


def _attention_kernels(model: LoadedModel) -> set[str]:
    with torch.profiler.profile() as prof:
        generate(model, SPECS[:1])
    return {e.name for e in prof.events() if e.name.startswith("aten::_scaled_dot_product")}


def test_attention_backend_math_runs_the_reference_kernel_with_the_same_image(load: Callable[..., LoadedModel],
                                                                              sdpa_restored: None) -> None:
    model = load(fast_lora_id="")
    image, kernels = generate(model, SPECS[:1]), _attention_kernels(model)
    assert kernels == {"aten::_scaled_dot_product_flash_attention_for_cpu"}
    reference = load(fast_lora_id="", attention_backend="math")
    assert "ATTENTION_BACKEND=math: only the reference math kernel (slow; for checking the fused kernels)" in \
        reference.accel.lines
    assert _attention_kernels(reference) == {"aten::_scaled_dot_product_attention_math"}
    assert_same_image(generate(reference, SPECS[:1]), image)


def test_attention_backend_puts_its_kernel_first_and_keeps_the_others(load: Callable[..., LoadedModel],
                                                                      sdpa_restored: None) -> None:
    """cuDNN comes after math in torch's own order (never chosen); flash or memory-efficient still serve what cuDNN
    cannot run (a float32 VAE)."""
    from torch.nn.attention import SDPBackend

    model = load(fast_lora_id="", attention_backend="cudnn")
    assert torch._C._get_sdp_priority_order()[0] == int(SDPBackend.CUDNN_ATTENTION)
    assert torch.backends.cuda.cudnn_sdp_enabled() and torch.backends.cuda.flash_sdp_enabled() and \
        torch.backends.cuda.mem_efficient_sdp_enabled()
    assert any(line.startswith("ATTENTION_BACKEND=cudnn: SDPA tries the cudnn kernel first") for line in
               model.accel.lines)
    assert generate(model, SPECS[:1]).shape == (1, 64, 64, 3)


def test_an_unknown_attention_backend_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTENTION_BACKEND", "xformers")
    with pytest.raises(SettingsError, match="ATTENTION_BACKEND.*'auto', 'flash', 'efficient', 'cudnn' or 'math'"):
        load_engine_settings()


_SDPA_RUN = """
import sys, types, torch, torch.nn.functional as F
from engine.engine_settings import AccelerationSettings
from engine.gpu import acceleration, compile_config
choice = sys.argv[1]
settings = types.SimpleNamespace(accel=AccelerationSettings(_env_file=None, attention_backend=choice))
acceleration._sdpa_backend(choice)
compile_config.configure_thread(settings, cuda=False)
fn = torch.compile(lambda q: F.scaled_dot_product_attention(q, q, q) * 2, backend="inductor")
q = torch.randn(1, 2, 16, 8)
fn(q)
with torch.profiler.profile() as prof:
    fn(q)
print(sorted({e.name for e in prof.events() if e.name.startswith("aten::_scaled_dot_product")}))
"""


@pytest.mark.skipif(not shutil.which("g++"), reason="inductor on the CPU needs a C++ compiler")
def test_a_compile_cache_of_another_attention_backend_is_not_served(tmp_path: Path) -> None:
    """The kernel is chosen while a graph is traced and the compile caches' keys did not hold the choice: after a
    run with auto filled the cache, a run with math got the cached graph and ran the flash kernel."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(Path.cwd())}

    def kernels(choice: str) -> str:
        done = subprocess.run([sys.executable, "-c", _SDPA_RUN, choice], env=env, capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).resolve().parents[3])
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    assert kernels("auto") == "['aten::_scaled_dot_product_flash_attention_for_cpu']"
    assert kernels("math") == "[]"  # inductor lowers the math kernel to plain ops: no fused kernel runs


def test_auto_puts_torchs_own_attention_order_back(load: Callable[..., LoadedModel], sdpa_restored: None) -> None:
    """ATTENTION_BACKEND is process-wide: a model loaded with auto after one with math (the model pool, the
    benchmark's phases) kept math first, and the fused kernels off."""
    load(fast_lora_id="", attention_backend="math")
    after = load(fast_lora_id="")
    assert _attention_kernels(after) == {"aten::_scaled_dot_product_flash_attention_for_cpu"}
