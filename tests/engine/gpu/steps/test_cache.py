"""STEP_CACHE on the tiny model: which steps run the UNet, what the skipped ones reuse, compiled and not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import run_batch
from engine.gpu.steps.cache import computed_steps
from tests.engine.switch_helpers import SPECS


def _unet_runs(model: LoadedModel) -> list[int]:
    """Rows of each UNet forward that really ran (the hook sits under the step cache and the compile router)."""
    runs: list[int] = []
    model.pipe.unet.register_forward_pre_hook(lambda _m, args: runs.append(int(args[0].shape[0])))
    return runs


def _images(model: LoadedModel, steps: int = 10, **kwargs: Any) -> np.ndarray:
    images = run_batch(model, SPECS[:1], width=64, height=64, steps=steps, guidance=5.0, scheduler="euler", **kwargs)
    return np.stack([np.asarray(img, dtype=np.int16) for img in images])


def test_the_middle_steps_run_every_nth_and_the_first_fifth_and_last_tenth_always() -> None:
    assert computed_steps(25, 1) == [True] * 25
    plan = computed_steps(25, 2)
    assert [i for i, run in enumerate(plan) if run] == [0, 1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 23, 24]
    assert sum(computed_steps(25, 3)) == 13
    assert computed_steps(4, 4) == [True, False, False, True]


def test_a_quality_batch_skips_the_planned_unet_calls_and_changes_the_image(load: Callable[..., LoadedModel]) -> None:
    plain = load(fast_lora_id="")
    model = load(fast_lora_id="", step_cache=2)
    assert any(line.startswith("STEP_CACHE=2: quality batches run the UNet on one step in 2") for line in
               model.accel.lines)
    runs = _unet_runs(model)
    cached = _images(model)
    assert len(runs) == sum(computed_steps(10, 2)) == 6
    assert model.accel.step_cache.calls == {"computed": 6, "reused": 4}
    assert int(np.abs(cached - _images(plain)).max()) > 2  # it changes the image: opt-in
    assert not model.accel.step_cache.local.plan  # disarmed after the batch


def test_image_to_image_plans_its_own_denoising_steps(load: Callable[..., LoadedModel]) -> None:
    model = load(fast_lora_id="", step_cache=2)
    runs = _unet_runs(model)
    _images(model, init_images=[Image.new("RGB", (64, 64), "red")], strength=0.7)  # int(10 * 0.7) = 7 steps
    assert len(runs) == sum(computed_steps(7, 2)) == 5  # the first 7 of a 10-step plan would run 4


def test_fast_mode_runs_every_step(load: Callable[..., LoadedModel], strong_lora_dir: Any) -> None:
    model = load(fast_lora_id=str(strong_lora_dir), step_cache=3)
    runs = _unet_runs(model)
    run_batch(model, SPECS[:1], width=64, height=64, steps=4, guidance=1.0, scheduler="euler", fast=True)
    assert len(runs) == 4 and model.accel.step_cache.calls["reused"] == 0


def test_a_step_after_cfg_cutoff_halves_the_batch_runs_the_unet(load: Callable[..., LoadedModel]) -> None:
    """The last prediction has the guided batch's rows; reused after the cutoff it would not fit the halved batch."""
    model = load(fast_lora_id="", step_cache=2, cfg_cutoff=0.4)
    runs = _unet_runs(model)
    _images(model)  # guided steps 0-3 (2 rows), unguided 4-9 (1 row); the plan runs 0, 1, 3, 5, 7 and 9
    assert runs == [2, 2, 2, 1, 1, 1, 1]  # step 4 ran too: the prediction it would reuse had 2 rows


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m"])
def test_compiled_steps_stay_compiled_in_bfloat16(load: Callable[..., LoadedModel], scheduler: str) -> None:
    """The computed steps run the compiled graphs (bf16, CHANNELS_LAST, dynamo failing on any recompile); the
    warm-up, on its own thread, passes through the cache."""
    model = load(fast_lora_id="", dtype="bfloat16", channels_last=True, compile="unet", compile_backend="eager",
                 compile_batch_sizes="1", step_cache=2)
    assert model.accel.compiler.wait(60), model.accel.compiler.describe()
    router = model.accel.routers[0]
    torch.compiler.set_stance("fail_on_recompile")
    before = dict(router.calls)
    images = run_batch(model, SPECS[:1], width=64, height=64, steps=10, guidance=5.0, scheduler=scheduler)
    assert (router.calls["compiled"] - before["compiled"], router.calls["eager"] - before["eager"]) == (6, 0)
    assert np.asarray(images[0]).std() > 0
