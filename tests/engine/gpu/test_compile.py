"""torch.compile on the tiny model, on CPU: routing, the background warm-up, padding, the kernel cache.

It runs with dynamo's ``eager`` backend, which traces and guards exactly like inductor but skips
code generation, so it takes seconds on two cores instead of minutes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.engine_settings import EngineSettings
from engine.gpu import compile_config, compiling
from engine.gpu.acceleration import apply_accelerations, padded_batch_size
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import run_batch
from engine.gpu.routing import call_key
from engine.jobs.records import Requester
from engine.requests.params import GenerationParams
from engine.service import Engine
from tests.engine.switch_helpers import SPECS, assert_same_image, generate

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


@pytest.mark.parametrize("strength", [0.3, 0.75])
def test_image_to_image_runs_the_compiled_graphs(load: Callable[..., LoadedModel], strength: float) -> None:
    """Variations, `image:` and upscale tiles start from VAE-encoded latents. In half precision with CHANNELS_LAST
    (the CUDA defaults) the encoder handed the UNet channels_last latents, a dynamo stride guard failed ("stride
    mismatch at index 1") and, after the warm-up, every image-to-image call ran eagerly while counted as compiled."""
    from PIL import Image

    model = load(fast_lora_id="", dtype="bfloat16", channels_last=True, compile="unet+vae", compile_backend="eager",
                 compile_batch_sizes="1")
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")  # a guard miss must raise, not quietly run eagerly
    before = dict(unet.calls)
    run_batch(model, SPECS[:1], width=64, height=64, steps=4, guidance=5.0, scheduler="euler",
              init_images=[Image.new("RGB", (64, 64), "red")], strength=strength)
    assert unet.calls["eager"] == before["eager"] and unet.calls["compiled"] > before["compiled"]


def test_a_canvas_edit_runs_the_compiled_graphs(load: Callable[..., LoadedModel]) -> None:
    """Zoom Out, Pan and Vary (Region) run the inpainting view of the pipeline over the same compiled UNet: in
    bfloat16 with CHANNELS_LAST, after the warm-up, every step is compiled and nothing recompiles."""
    from PIL import Image

    model = load(fast_lora_id="", dtype="bfloat16", channels_last=True, compile="unet+vae", compile_backend="eager",
                 compile_batch_sizes="1")
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 24, 64))
    before = dict(unet.calls)
    run_batch(model, SPECS[:1], width=64, height=64, steps=4, guidance=5.0, scheduler="euler",
              init_images=[Image.new("RGB", (64, 64), "red")], strength=1.0, masks=[mask])
    assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (4, 0)


def test_a_tile_batch_runs_eagerly_and_the_next_batch_compiled(load: Callable[..., LoadedModel]) -> None:
    """--tile's circular padding was not traced: in bfloat16 with CHANNELS_LAST after the warm-up, a tile batch runs
    every UNet call eagerly (dynamo failing on any recompile proves no compiled graph saw it), and the plain batch
    after it is compiled again."""
    model = load(fast_lora_id="", dtype="bfloat16", channels_last=True, compile="unet+vae", compile_backend="eager",
                 compile_batch_sizes="1")
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    before = dict(unet.calls)
    run_batch(model, SPECS[:1], width=64, height=64, steps=3, guidance=5.0, scheduler="euler", tile=True)
    assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (0, 3)
    run_batch(model, SPECS[:1], width=64, height=64, steps=3, guidance=5.0, scheduler="euler")
    assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (3, 3)


def test_cfg_cutoff_runs_both_halves_on_compiled_graphs(load: Callable[..., LoadedModel]) -> None:
    """With CFG_CUTOFF the warm-up also compiles the unguided shape, so the steps after the cutoff stay compiled
    (bfloat16, CHANNELS_LAST on, dynamo failing on any recompile)."""
    model = load(fast_lora_id="", dtype="bfloat16", channels_last=True, compile="unet", compile_backend="eager",
                 compile_batch_sizes="1", cfg_cutoff=0.5)
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    unet = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    before = dict(unet.calls)
    run_batch(model, SPECS[:1], width=64, height=64, steps=4, guidance=5.0, scheduler="euler")
    assert (unet.calls["compiled"] - before["compiled"], unet.calls["eager"] - before["eager"]) == (4, 0)


def test_compile_does_not_pad_before_the_warm_up(load: Callable[..., LoadedModel],
                                                 make_settings: Callable[..., EngineSettings]) -> None:
    settings = make_settings(fast_lora_id="", **COMPILE)
    from engine.gpu.model import load_model

    model = load_model(settings)
    lines = apply_accelerations(model, settings, start_warmup=False)
    assert any(line.startswith("COMPILE=unet+vae: unet, vae-decoder with mode -, backend eager") for line in lines)
    assert padded_batch_size(model, len(SPECS), width=64, height=64, guidance=5.0, fast=False) == 3
    generate(model)
    assert model.accel.routers[0].calls == {"compiled": 0, "eager": 2, "graphs": 0}


def test_compile_warms_fast_mode_on_the_fused_unet(load: Callable[..., LoadedModel], strong_lora_dir: Path) -> None:
    reference = generate(load(fast_lora_id=str(strong_lora_dir)), SPECS[:1], fast=True, guidance=1.0)
    model = load(fast_lora_id=str(strong_lora_dir), fast_fused_unet=True, compile="unet", compile_backend="eager",
                 compile_batch_sizes="1")
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    fast_router = next(r for r in model.accel.routers if r.name == "fast-unet")
    assert_same_image(generate(model, SPECS[:1], fast=True, guidance=1.0), reference)
    assert fast_router.calls["compiled"] == 2


def test_each_compiled_module_keeps_graphs_of_its_own(load: Callable[..., LoadedModel], strong_lora_dir: Path) -> None:
    """The quality UNet, the fused fast UNet and the VAE decoder each have their own dynamo cache: compiling
    nn.Module._call_impl put them all on one code object (one recompile limit, every call walking the others'
    guards, CUDA graphs re-recorded on a quality/fast switch)."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    model = load(fast_lora_id=str(strong_lora_dir), fast_fused_unet=True, compile="unet+vae",
                 compile_backend="eager", compile_batch_sizes="1")
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    codes = {r.name: r.compiled._torchdynamo_orig_callable.__code__ for r in model.accel.routers if r.compiled}
    assert set(codes) == {"unet", "fast-unet", "vae-decoder"}
    assert len(set(codes.values())) == 3
    # one profile each (batch 1; quality with CFG, fast without): one graph on each module's own code object
    assert {name: len(_debug_get_cache_entry_list(code)) for name, code in codes.items()} == \
        {"unet": 1, "fast-unet": 1, "vae-decoder": 1}


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


def _holding(monkeypatch: pytest.MonkeyPatch, batch: int, *, fail: bool = False) -> threading.Event:
    """Make the warm-up of batch ``batch`` wait for the returned event (or fail), the others compile as usual."""
    release = threading.Event()
    warm = compiling.CompileManager._warm

    def held(self: compiling.CompileManager, profile: compiling.WarmProfile) -> bool:
        if profile.batch == batch:
            if fail:
                raise RuntimeError("out of shared memory for this kernel")
            release.wait(60)
        return warm(self, profile)

    monkeypatch.setattr(compiling.CompileManager, "_warm", held)
    return release


def test_a_warm_shape_is_served_compiled_while_the_others_compile(load: Callable[..., LoadedModel],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled code served only once all six profiles were done: 4-5 minutes of eager serving per cold deploy."""
    release = _holding(monkeypatch, 4)
    model = load(fast_lora_id="", **COMPILE)
    compiler, unet = model.accel.compiler, model.accel.routers[0]
    try:
        deadline = time.monotonic() + 60
        while not compiler.warmed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert compiler.state == "warming" and {p.batch for p in compiler.warmed} == {1}
        before = dict(unet.calls)
        generate(model, SPECS[:1])
        assert unet.calls["compiled"] == before["compiled"] + 2 and unet.calls["eager"] == before["eager"]
        assert "the warm ones compiled" in compiler.describe()
    finally:
        release.set()
    assert compiler.wait(60)


def test_a_shape_that_fails_to_compile_leaves_the_others_compiled(load: Callable[..., LoadedModel],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One failing profile discarded the whole warm-up."""
    _holding(monkeypatch, 4, fail=True)
    model = load(fast_lora_id="", **COMPILE)
    compiler, unet = model.accel.compiler, model.accel.routers[0]
    assert compiler.wait(60), compiler.describe()
    assert {p.batch for p in compiler.warmed} == {1}
    assert "batch 4 failed (RuntimeError: out of shared memory for this kernel), runs eagerly" in compiler.describe()
    before = dict(unet.calls)
    generate(model, SPECS[:1])
    assert unet.calls["compiled"] == before["compiled"] + 2


def test_the_shape_served_most_while_waiting_is_compiled_first(load: Callable[..., LoadedModel],
                                                               make_settings: Callable[..., EngineSettings]) -> None:
    """With batches of 3 waiting (MAX_BATCH traffic), batch 4 compiles before batch 1."""
    from engine.gpu.model import load_model

    settings = make_settings(fast_lora_id="", compile="unet", compile_backend="eager", compile_batch_sizes="1,4")
    model = load_model(settings)
    apply_accelerations(model, settings, start_warmup=False)
    run_batch(model, SPECS[:3] + SPECS[:1], width=64, height=64, steps=2, guidance=5.0, scheduler="euler")
    model.accel.compiler.start()
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    assert list(model.accel.compiler.seconds) == ["64x64 batch 4", "64x64 batch 1"]


def test_max_autotune_never_times_kernels_beside_a_served_batch(load: Callable[..., LoadedModel],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With COMPILE_MODE=max-autotune a batch waits while a profile is being tuned (kernel timings beside serving
    skewed both); in the default mode it runs at once (the engine serves while it compiles)."""
    for mode, waits in (("max-autotune", True), ("default", False)):
        release = _holding(monkeypatch, 4)
        model = load(fast_lora_id="", compile="unet", compile_backend="eager", compile_batch_sizes="4",
                     compile_mode=mode)
        compiler = model.accel.compiler
        deadline = time.monotonic() + 30
        while compiler.turns is not None and not compiler.turns.locked() and time.monotonic() < deadline:
            time.sleep(0.02)
        served = threading.Event()
        worker = threading.Thread(target=lambda: (generate(model, SPECS[:1]), served.set()))
        worker.start()
        try:
            assert served.wait(2.0) is not waits, mode
        finally:
            release.set()
            worker.join(60)
        assert served.is_set() and compiler.wait(60)


def test_compile_cache_lives_under_data_dir(load: Callable[..., LoadedModel], monkeypatch: pytest.MonkeyPatch,
                                           make_settings: Callable[..., EngineSettings]) -> None:
    import os

    monkeypatch.setattr(compile_config, "_OPERATOR_CACHE_DIR", None)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/else")  # restored after the test
    settings = make_settings(fast_lora_id="", **COMPILE)
    model = load(fast_lora_id="", **COMPILE)
    expected = (settings.data_dir / "compile-cache").resolve()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(expected)
    assert expected.is_dir()
    assert any(line.startswith(f"compile cache: {expected}") for line in model.accel.lines)
    monkeypatch.setattr(compile_config, "_OPERATOR_CACHE_DIR", "/srv/inductor")
    assert compile_config.point_caches_at(expected).startswith("compile cache: /srv/inductor (from TORCHINDUCTOR")


def test_call_key_tells_shapes_dtypes_and_scalars_apart() -> None:
    a = torch.zeros(2, 4, 8, 8)
    assert call_key((a, 1.0), {"x": {"t": a}}) == call_key((torch.ones(2, 4, 8, 8), 1.0), {"x": {"t": a}})
    assert call_key((a,), {}) != call_key((torch.zeros(4, 4, 8, 8),), {})
    assert call_key((a,), {}) != call_key((a.half(),), {})
    assert call_key((a,), {"return_dict": False}) != call_key((a,), {"return_dict": True})
    assert call_key((a,), {}) != call_key((a.to(memory_format=torch.channels_last),), {})  # dynamo guards strides
    with torch.inference_mode():
        assert call_key((torch.zeros(2, 4, 8, 8),), {}) != call_key((a,), {})


def test_float_timestep_casts_only_integer_timesteps() -> None:
    from engine.gpu.routing import float_timestep

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

    def slow_warm(self: Any, profile: Any) -> bool:
        gate.wait(30)  # the warm-up is "compiling" until the test says so
        return real_warm(self, profile)

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
