"""Half precision on the CPU: bfloat16 (and float16) stand in for the GPU's half-precision paths.

The fp32 suite cannot see bugs that only exist when modules are not float32: diffusers flips a
``force_upcast`` VAE to float32 in place around decodes and encodes, and a second thread that uses
the same VAE meanwhile (the compile warm-up) sees the wrong dtype. These tests run the engine's
warm-up concurrently with serving, variations and fast mode included, and check that no job fails
and that no shared module ever runs in another dtype.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.engine_settings import EngineSettings
from engine.gpu import compiling, vae
from engine.gpu.acceleration import apply_accelerations
from engine.gpu.model import LoadedModel, load_fast_lora, load_model
from engine.gpu.pipeline import ImageSpec, run_batch
from engine.jobs.records import Requester
from engine.service import Engine
from tests.engine.helpers import params, wait_final

COMPILE = dict(compile="unet+vae", compile_backend="eager")


def shared_modules(model: LoadedModel) -> dict[str, Any]:
    """Every module the worker and the warm-up share."""
    pipe = model.pipe
    modules = {name: getattr(pipe, name) for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
    fast_unet = getattr(model.accel, "fast_unet", None)
    if fast_unet is not None:
        modules["fast_unet"] = fast_unet
    return modules


class VaeWatch:
    """Records the dtype of the shared VAE's weights at every encode and decode, from every thread.

    It wraps the methods rather than hooking the modules: a compiled decoder would trace a hook.
    """

    def __init__(self, vae: Any) -> None:
        self.seen: list[tuple[str, str, torch.dtype]] = []
        self._lock = threading.Lock()
        for name in ("encode", "decode"):
            setattr(vae, name, self._wrap(vae, name, getattr(vae, name)))

    def _wrap(self, vae: Any, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def watched(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.seen.append((threading.current_thread().name, name, vae.dtype))
            return method(*args, **kwargs)
        return watched

    def threads(self) -> set[str]:
        return {thread for thread, _, _ in self.seen}

    def wrong(self, dtype: torch.dtype) -> list[tuple[str, str, torch.dtype]]:
        return [entry for entry in self.seen if entry[2] != dtype]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
async def test_warm_up_concurrent_with_serving_fails_no_job_and_keeps_every_dtype(
        dtype: str, make_settings: Callable[..., EngineSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    """The stock VAE config (force_upcast) in half precision, warm-up and serving (variations too) at once."""
    started = threading.Event()  # the warm-up waits until the jobs are queued, so the two overlap
    real_warm = compiling.CompileManager._warm

    def gated_warm(self: Any, profile: Any) -> Any:
        started.wait(30)
        return real_warm(self, profile)

    monkeypatch.setattr(compiling.CompileManager, "_warm", gated_warm)
    # more than 8 shapes per compiled code object (dynamo's default limit, per thread), fast mode included
    settings = make_settings(dtype=dtype, fast_fused_unet=True, compile_batch_sizes="1,2,4",
                             compile_sizes="64x64,96x64", **COMPILE)
    engine = Engine(settings)
    await engine.start()
    try:
        assert await engine.wait_ready(60), engine.model_error
        model = engine.model
        want = getattr(torch, dtype)
        assert model.pipe.vae.config.force_upcast  # the stock SDXL VAE config: diffusers would upcast
        # float16 + force_upcast decodes and encodes in a private fp32 copy; bfloat16 uses the shared VAE
        decoder = vae.decoding_vae(model)
        expected = torch.float32 if dtype == "float16" else want
        assert (decoder is model.pipe.vae) == (dtype == "bfloat16") and decoder.dtype == expected
        shared = VaeWatch(model.pipe.vae)
        watch = shared if decoder is model.pipe.vae else VaeWatch(decoder)
        source = (await engine.submit(params(seed=1, count=2), Requester(user_id="src"))).job
        assert (await wait_final(engine, source.id)).state == "done"

        jobs = []
        for i in range(12):
            user = Requester(user_id=f"u{i}")
            if i % 3 == 0:
                p = params(seed=100 + i, size=(96, 64) if i % 2 else (64, 64))
            elif i % 3 == 1:
                p = await engine.variation(source.id, i % 2, seed=200 + i)
            else:
                p = params(seed=300 + i, fast=True, guidance=1.0, steps=4)
            jobs.append((await engine.submit(p, user)).job)
        started.set()
        finals = [await wait_final(engine, job.id, timeout=120) for job in jobs]
        compiler = model.accel.compiler
        assert await asyncio.to_thread(compiler.wait, 120), compiler.describe()

        assert [(j.id, j.state, j.error) for j in finals if j.state != "done"] == []
        assert compiler.state == "ready" and len(compiler.warmed) == len(compiler.profiles), compiler.describe()
        assert {"engine-worker", "compile-warmup"} <= watch.threads(), watch.threads()
        assert watch.wrong(expected) == []  # nobody ever ran a VAE in another dtype than its own
        assert shared.wrong(want) == []
        assert {name: m.dtype for name, m in shared_modules(model).items() if m.dtype != want} == {}
    finally:
        started.set()
        await engine.stop()


@pytest.mark.parametrize("fused", [True, False], ids=["fused-fast-unet", "lora-on-the-quality-unet"])
def test_a_fast_batch_during_the_warm_up_does_not_take_the_base_shape(
        fused: bool, make_settings: Callable[..., EngineSettings], strong_lora_dir: Path) -> None:
    """While a fast batch runs (the LCM-LoRA on), the warm-up still compiles the quality UNet, LoRA off.

    With the fused fast UNet the fast batch never touches the quality UNet; with the LoRA on the quality
    UNet the warm-up waits until the fast batch has switched it off again.
    """
    settings = make_settings(fast_lora_id=str(strong_lora_dir), fast_fused_unet=fused, compile="unet",
                             compile_backend="eager", compile_batch_sizes="1")
    model = load_model(settings)
    load_fast_lora(model, settings.fast_lora_id)
    apply_accelerations(model, settings, start_warmup=False)
    compiler = model.accel.compiler
    in_step, release = threading.Event(), threading.Event()

    def hold(step: int, total: int, latents: Any) -> None:
        in_step.set()
        release.wait(60)

    fast = threading.Thread(target=run_batch, args=(model, [ImageSpec("a fox", "", 1)]), kwargs={
        "width": 64, "height": 64, "steps": 2, "guidance": 1.0, "scheduler": "euler", "fast": True, "on_step": hold})
    fast.start()
    try:
        assert in_step.wait(60)
        assert model.lora_on == (not fused)
        compiler.start()
        if not fused:
            assert not compiler.wait(1.0) and compiler.warmed == set()  # it waits for the LoRA to go off
            release.set()
            fast.join(60)
            run_batch(model, [ImageSpec("a fox", "", 3)], width=64, height=64, steps=2, guidance=5.0,
                      scheduler="euler")  # a quality batch switches the LoRA off
        assert compiler.wait(60), compiler.describe()
    finally:
        release.set()
        fast.join(60)
    base = next(r for r in model.accel.routers if r.name == "unet")
    before = dict(base.calls)
    run_batch(model, [ImageSpec("a fox", "", 2)], width=64, height=64, steps=2, guidance=5.0, scheduler="euler")
    assert base.calls["compiled"] - before["compiled"] == 2, (base.calls, before)
