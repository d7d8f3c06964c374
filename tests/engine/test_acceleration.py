"""The acceleration switches (engine/acceleration.py) on the tiny model, on CPU.

Each switch does on CPU what it can: module-changing switches really change the modules and
leave the image equal within rounding; CUDA-only switches are skipped with a reason. The
torch.compile machinery (routing, background warm-up, padding to compiled batch sizes) runs
with dynamo's ``eager`` backend, which traces and guards exactly like inductor but skips code
generation, so it takes seconds on two cores instead of minutes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine import acceleration, compiling
from engine.acceleration import apply_accelerations, padded_batch_size
from engine.jobs import Requester
from engine.model import LoadedModel
from engine.params import GenerationParams
from engine.pipeline import ImageSpec, run_batch
from engine.routing import call_key
from engine.runtime import default_loader
from engine.service import Engine
from engine.settings import EngineSettings, SettingsError, load_engine_settings

SPECS = [ImageSpec("a red fox in the snow", "blurry", seed) for seed in (11, 22, 33)]
# uint8 pixels: float reorderings (fused matmuls, other memory layouts, other batch sizes) may
# flip a rounding; anything larger would be a different image
PIXEL_TOLERANCE = 2


@pytest.fixture(autouse=True)
def _default_stance() -> Iterator[None]:
    """A finished warm-up sets dynamo's process-wide stance; give other tests the default back."""
    yield
    torch.compiler.set_stance("default")


@pytest.fixture
def load(make_settings: Callable[..., EngineSettings]) -> Callable[..., LoadedModel]:
    """Load the tiny model through the service's loader (LoRA and accelerations included)."""
    loaded: list[LoadedModel] = []

    def factory(**overrides: Any) -> LoadedModel:
        model = default_loader(make_settings(**overrides))
        loaded.append(model)
        return model

    yield factory
    for model in loaded:
        if model.accel is not None:
            model.accel.close()
            if model.accel.compiler is not None:
                model.accel.compiler.wait(60)


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


def save_random_lora(out_dir: Path) -> Path:
    """A LoRA for the tiny UNet with non-zero weights (the shared one is a no-op: lora_B = 0)."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    from engine.tiny_model import build_tiny_pipeline

    pipe = build_tiny_pipeline(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    torch.manual_seed(5)
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionXLPipeline.save_lora_weights(out_dir, unet_lora_layers=state, safe_serialization=True)
    return out_dir


@pytest.fixture(scope="module")
def strong_lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_lora(tmp_path_factory.mktemp("strong-lora"))


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


def test_fp16_vae_turns_the_upcast_off_and_warns_about_the_stock_vae(load: Callable[..., LoadedModel]) -> None:
    model = load(fp16_vae=True)
    assert model.pipe.vae.config.force_upcast is False
    line = next(x for x in model.accel.lines if x.startswith("FP16_VAE"))
    assert "NaN" in line and "madebyollin/sdxl-vae-fp16-fix" in line
    assert "no effect at DTYPE float32" in line


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
    from engine.model import load_model

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
    router = model.accel.routers[0]
    assert_same_image(generate(model, fast=True, guidance=1.0), with_lora)
    assert router.calls["fast"] == 2  # two steps, each sent to the fused copy
    assert not any(hasattr(m, "lora_A") for m in model.accel.fast_unet.modules())
    # quality batches still run the base UNet with the LoRA off
    assert_same_image(generate(model, fast=False, guidance=1.0), plain)
    assert router.calls["fast"] == 2


# --- torch.compile: routing, warm-up, padding -------------------------------------------------------------


COMPILE = dict(compile="unet+vae", compile_backend="eager", compile_batch_sizes="1,4")


def test_compile_serves_eagerly_until_warm_then_pads_when_it_pays(load: Callable[..., LoadedModel]) -> None:
    eager_model = load(fast_lora_id="")
    singles = [generate(eager_model, [spec])[0] for spec in SPECS]
    model = load(fast_lora_id="", **COMPILE)
    compiler = model.accel.compiler
    assert compiler is not None
    assert compiler.wait(60), compiler.describe()
    assert compiler.describe().startswith("compile: ready, 2/2 shape(s) warm")
    unet, vae = model.accel.routers[0], model.accel.routers[1]
    assert (unet.name, vae.name) == ("unet", "vae-decoder")
    assert len(unet.keys) == 2 and len(vae.keys) == 2  # UNet batch 2 and 8 (CFG), VAE batch 1 and 4

    # 3 images run as a compiled batch of 4 when compiled code is assumed 2x faster; the padding image is dropped
    assert padded_batch_size(model, len(SPECS), width=64, height=64, guidance=5.0, fast=False) == 3
    compiler.speedup = {1: 2.0}
    assert padded_batch_size(model, len(SPECS), width=64, height=64, guidance=5.0, fast=False) == 4
    before = dict(unet.calls)
    batched = generate(model)
    assert batched.shape[0] == 3
    assert unet.calls["compiled"] == before["compiled"] + 2 and unet.calls["eager"] == before["eager"]
    # each seed gives its image whether alone or in a padded batch
    for single, image in zip(singles, batched):
        assert_same_image(image, single)


def test_padding_only_when_the_compiled_speed_up_beats_the_extra_work() -> None:
    manager = compiling.CompileManager(None, None, [], [])  # type: ignore[arg-type]
    manager.warmed = {compiling.WarmProfile(64, 64, b, True, False) for b in (1, 4, 8)}
    target = lambda n, **kw: manager.pad_target(n, **{"width": 64, "height": 64, "cfg": True, "fast": False, **kw})
    assert target(3) == 3  # not ready yet: nothing is padded
    manager.state = "ready"
    # the documented H200 speed-ups (2.17x at batch 1, 1.086x at batch 4): padding 3 -> 4 is 33 % more work for
    # an 8.6 % gain, so nothing is padded; exact warm sizes still run compiled
    assert compiling.compiled_speedup(1) == pytest.approx(2.17) and compiling.compiled_speedup(4) == pytest.approx(1.086)
    assert [target(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9)] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    # the rule: pad n -> b only when speed-up(b) > b / n
    manager.speedup = {1: 1.5}  # compiled 1.5x faster at every batch size
    assert [target(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9)] == [1, 2, 4, 4, 5, 8, 8, 8, 9]
    manager.speedup = {1: 2.5}
    assert [target(n) for n in (2, 3, 5)] == [4, 4, 8]
    assert target(3, cfg=False) == 3 and target(3, fast=True) == 3 and target(3, width=96) == 3


def test_compile_keeps_unwarmed_shapes_eager(load: Callable[..., LoadedModel]) -> None:
    model = load(fast_lora_id="", **COMPILE)
    assert model.accel.compiler.wait(60)
    unet = model.accel.routers[0]
    eager_before = unet.calls["eager"]
    generate(model, SPECS[:1], size=(96, 64))  # a size that was not warmed
    assert unet.calls["eager"] == eager_before + 2
    assert padded_batch_size(model, len(SPECS), width=96, height=64, guidance=5.0, fast=False) == 3
    generate(model, SPECS[:1], guidance=1.0)  # no CFG: UNet batch 1 was never compiled
    assert unet.calls["eager"] == eager_before + 4


def test_integer_timestep_schedulers_use_the_warmed_shapes(load: Callable[..., LoadedModel]) -> None:
    """dpmpp_2m, dpmpp_2m_karras, ddim and unipc pass int64 timesteps; the warm-up ran Euler's float32 ones."""
    model = load(fast_lora_id="", **COMPILE)
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")  # a guard miss must raise, not quietly run eagerly
    for scheduler in ("dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc", "euler"):
        before = dict(unet.calls)
        run_batch(model, SPECS[:1], width=64, height=64, steps=2, guidance=5.0, scheduler=scheduler)
        assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (2, 0), \
            scheduler


def test_compile_does_not_pad_before_the_warm_up(load: Callable[..., LoadedModel],
                                                 make_settings: Callable[..., EngineSettings]) -> None:
    settings = make_settings(fast_lora_id="", **COMPILE)
    from engine.model import load_model

    model = load_model(settings)
    lines = apply_accelerations(model, settings, start_warmup=False)
    assert any(line.startswith("COMPILE=unet+vae: unet, vae-decoder with mode -, backend eager") for line in lines)
    assert padded_batch_size(model, len(SPECS), width=64, height=64, guidance=5.0, fast=False) == 3
    generate(model)
    assert model.accel.routers[0].calls == {"compiled": 0, "eager": 2, "fast": 0}


def test_compile_warms_fast_mode_on_the_fused_unet(load: Callable[..., LoadedModel], strong_lora_dir: Path) -> None:
    reference = generate(load(fast_lora_id=str(strong_lora_dir)), SPECS[:1], fast=True, guidance=1.0)
    model = load(fast_lora_id=str(strong_lora_dir), fast_fused_unet=True, compile="unet", compile_backend="eager",
                 compile_batch_sizes="1")
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    fast_router = next(r for r in model.accel.routers if r.name == "fast-unet")
    assert_same_image(generate(model, SPECS[:1], fast=True, guidance=1.0), reference)
    assert fast_router.calls["compiled"] == 2


def test_compile_failure_is_reported_and_serving_stays_eager(load: Callable[..., LoadedModel],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: Any, profile: Any) -> None:
        raise RuntimeError("inductor needs a C++ compiler")

    monkeypatch.setattr(compiling.CompileManager, "_warm", fail)
    model = load(fast_lora_id="", **COMPILE)
    assert not model.accel.compiler.wait(30)
    assert model.accel.compiler.describe() == \
        "compile: failed, serving eagerly (RuntimeError: inductor needs a C++ compiler)"
    assert all(r.compiled is None for r in model.accel.routers)
    assert generate(model).shape[0] == 3


def test_compile_cache_lives_under_data_dir(load: Callable[..., LoadedModel], monkeypatch: pytest.MonkeyPatch,
                                           make_settings: Callable[..., EngineSettings]) -> None:
    import os

    monkeypatch.setattr(compiling, "_OPERATOR_CACHE_DIR", None)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/else")  # restored after the test
    settings = make_settings(fast_lora_id="", **COMPILE)
    model = load(fast_lora_id="", **COMPILE)
    expected = (settings.data_dir / "compile-cache").resolve()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(expected)
    assert expected.is_dir()
    assert any(line.startswith(f"compile cache: {expected}") for line in model.accel.lines)
    monkeypatch.setattr(compiling, "_OPERATOR_CACHE_DIR", "/srv/inductor")
    assert compiling._point_caches_at(expected).startswith("compile cache: /srv/inductor (from TORCHINDUCTOR")


def test_call_key_tells_shapes_dtypes_and_scalars_apart() -> None:
    a = torch.zeros(2, 4, 8, 8)
    assert call_key((a, 1.0), {"x": {"t": a}}) == call_key((torch.ones(2, 4, 8, 8), 1.0), {"x": {"t": a}})
    assert call_key((a,), {}) != call_key((torch.zeros(4, 4, 8, 8),), {})
    assert call_key((a,), {}) != call_key((a.half(),), {})
    assert call_key((a,), {"return_dict": False}) != call_key((a,), {"return_dict": True})
    with torch.inference_mode():
        assert call_key((torch.zeros(2, 4, 8, 8),), {}) != call_key((a,), {})


def test_float_timestep_casts_only_integer_timesteps() -> None:
    from engine.routing import float_timestep

    sample, t = torch.zeros(1, 4, 8, 8), torch.tensor(999)
    args, kwargs = float_timestep((sample, t), {"return_dict": False})
    assert args[0] is sample and args[1].dtype == torch.float32 and float(args[1]) == 999.0
    assert kwargs == {"return_dict": False}
    _, kwargs = float_timestep((sample,), {"timestep": t})
    assert kwargs["timestep"].dtype == torch.float32
    floating = torch.tensor(958.5)
    assert float_timestep((sample, floating), {})[0][1] is floating


async def test_engine_keeps_serving_while_the_compile_warms_up(make_settings: Callable[..., EngineSettings],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real_warm = compiling.CompileManager._warm

    def slow_warm(self: Any, profile: Any) -> None:
        gate.wait(30)  # the warm-up is "compiling" until the test says so
        real_warm(self, profile)

    monkeypatch.setattr(compiling.CompileManager, "_warm", slow_warm)
    engine = Engine(make_settings(fast_lora_id="", **COMPILE))
    await engine.start()
    try:
        assert await engine.wait_ready(60)
        assert "compile: warming up in the background (0/2 shapes), serving eagerly" in engine.status().accelerations
        params = GenerationParams(prompt="a fox", negative_prompt="", width=64, height=64, steps=2, guidance=5.0,
                                  seed=3, count=3)
        job = (await engine.submit(params, Requester(user_id="u1"))).job
        deadline = time.monotonic() + 30
        while (await engine.get_job(job.id)).state != "done":
            assert time.monotonic() < deadline, "the job did not finish while the compile was warming up"
            await asyncio.sleep(0.05)
        assert len((await engine.get_job(job.id)).results) == 3
        assert engine.model.accel.routers[0].calls["compiled"] == 0
        gate.set()
        assert await asyncio.to_thread(engine.model.accel.compiler.wait, 60)
        assert any(line.startswith("compile: ready") for line in engine.status().accelerations)
    finally:
        gate.set()
        await engine.stop()


# --- settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "message"), [
    ({"CUDA_GRAPHS": "true"}, "CUDA_GRAPHS=true needs COMPILE=unet or COMPILE=unet+vae"),
    ({"COMPILE": "unet", "CPU_OFFLOAD": "true"}, "COMPILE and CPU_OFFLOAD cannot be combined"),
    ({"COMPILE": "unet+vae", "CUDA_GRAPHS": "true", "VAE_SLICING": "true"},
     "CUDA_GRAPHS=true cannot be combined with VAE_SLICING: a captured graph reuses its output buffers"),
    ({"COMPILE": "unet", "CUDA_GRAPHS": "true", "VAE_TILING": "true"},
     "CUDA_GRAPHS=true cannot be combined with VAE_TILING: a captured graph"),
    ({"COMPILE": "unet", "CUDA_GRAPHS": "true", "VAE_TILING": "true", "VAE_SLICING": "true"},
     "cannot be combined with VAE_SLICING and VAE_TILING"),
    ({"FAST_FUSED_UNET": "true", "CPU_OFFLOAD": "true"}, "FAST_FUSED_UNET keeps a second UNet resident"),
    ({"COMPILE": "yes"}, "COMPILE: Input should be 'off', 'unet' or 'unet+vae'"),
    ({"COMPILE_MODE": "turbo"}, "COMPILE_MODE: Input should be 'default' or 'max-autotune'"),
    ({"COMPILE_BACKEND": "tensorrt"}, "COMPILE_BACKEND: Input should be"),
    ({"COMPILE_BATCH_SIZES": "1,two"}, "COMPILE_BATCH_SIZES: must be a comma-separated list of batch sizes"),
    ({"COMPILE_BATCH_SIZES": "0,4"}, "COMPILE_BATCH_SIZES: batch sizes must be from 1 to 64"),
    ({"COMPILE_BATCH_SIZES": "128"}, "COMPILE_BATCH_SIZES: batch sizes must be from 1 to 64"),
    ({"COMPILE_SIZES": "512x512"}, "COMPILE_SIZES 512x512 not in SIZES"),
    ({"COMPILE_SIZES": "100x100"}, "COMPILE_SIZES:"),
    ({"FUSE_QKV": "maybe"}, "FUSE_QKV: Input should be a valid boolean"),
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
    assert (defaults.compile, defaults.compile_batch_sizes, defaults.compile_sizes) == ("off", (1, 2, 4), ())
    assert loaded.max_batch == 4  # the measured knee, see benchmarks/README.md
    assert defaults.compile_cache_dir is None
