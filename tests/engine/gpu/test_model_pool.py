"""Several models (MODELS, MODEL_SLOTS): two tiny SDXL models of their own, loaded through the real from_pretrained
code on demand, batched apart, at most MODEL_SLOTS at once; in-process and on a NATS worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.gpu.tiny_model import save_tiny_model
from engine.jobs.records import Requester
from engine.requests.params import ParamError, ParamRequest
from engine.service import Engine
from tests.engine.helpers import wait_final


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny SDXL model with other random weights."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-sdxl-b"), seed=7)


def _models(tiny_model_dir: Path, second: Path) -> str:
    return f"base={tiny_model_dir}, other={second}"


async def _image(engine: Engine, model: str | None, seed: int = 3) -> np.ndarray:
    params = engine.resolve(ParamRequest(prompt="a fox", seed=seed, steps=2, model=model))
    done = await wait_final(engine, (await engine.submit(params, Requester(user_id="u1"))).job.id)
    assert done.state == "done", done.error
    with Image.open(Path(engine.settings.data_dir) / done.results[0]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


async def test_a_job_runs_on_the_model_it_names(make_engine, tiny_model_dir: Path, second_model_dir: Path) -> None:
    """base (the first, the default) and other give different images for the same seed; no name means base."""
    engine = await make_engine(models=_models(tiny_model_dir, second_model_dir))
    assert await engine.wait_ready(60)
    base, other, default = await _image(engine, "base"), await _image(engine, "other"), await _image(engine, None)
    assert np.abs(base - other).mean() > 1 and np.array_equal(base, default)
    assert engine.resolve(ParamRequest(prompt="x")).model == "base"


async def test_model_slots_unload_the_least_recently_used(make_engine, tiny_model_dir: Path,
                                                         second_model_dir: Path, tmp_path: Path) -> None:
    """MODEL_SLOTS=2 with three models: the default stays; of the other two only the last used stays loaded."""
    third = save_tiny_model(tmp_path / "c", seed=9)
    engine = await make_engine(models=f"{_models(tiny_model_dir, second_model_dir)}, third={third}", model_slots=2)
    assert await engine.wait_ready(60)
    for name in ("other", "third", "other"):
        await _image(engine, name)
    assert engine.status().loaded == ("base", "other")


async def test_one_slot_keeps_only_the_default_between_batches(make_engine, tiny_model_dir: Path,
                                                               second_model_dir: Path) -> None:
    """MODEL_SLOTS=1: another model is loaded for its batch and unloaded after it."""
    engine = await make_engine(models=_models(tiny_model_dir, second_model_dir), model_slots=1)
    assert await engine.wait_ready(60)
    await _image(engine, "other")
    assert engine.status().loaded == ("base",)


async def test_an_unknown_model_lists_the_offered_ones(engine: Engine) -> None:
    """Without MODELS, MODEL_ID alone is offered, named after its directory; another name is refused, listing it."""
    offered = engine.policy.limits.models
    assert len(offered) == 1 and offered[0].source == engine.settings.model_id
    with pytest.raises(ParamError, match=f"model 'sdxl' is not offered here; choose from: {offered[0].name}"):
        engine.resolve(ParamRequest(prompt="a fox", model="sdxl"))


async def test_a_servers_default_model(make_engine, tiny_model_dir: Path, second_model_dir: Path) -> None:
    """A server's default model (its settings) applies to requests that name none; an unknown one is refused."""
    engine = await make_engine(models=_models(tiny_model_dir, second_model_dir))
    await engine.policy.set_defaults("g1", {"model": "other"})
    assert engine.resolve(ParamRequest(prompt="x"), "g1").model == "other"
    assert engine.resolve(ParamRequest(prompt="x", model="base"), "g1").model == "base"
    with pytest.raises(ParamError, match="model 'nope' is not offered"):
        await engine.policy.set_defaults("g1", {"model": "nope"})


async def test_a_parked_model_comes_back_without_a_load(make_engine, tiny_model_dir: Path,
                                                        second_model_dir: Path) -> None:
    """MODEL_SLOTS=1, MODEL_PARK=1: other is loaded once; after its batch it is parked (not loaded on the device),
    and its next batch takes it back from CPU memory instead of loading it again, with the same image."""
    from engine.gpu.local_worker import default_loader

    loads = []

    def counting_loader(settings):  # noqa: ANN001, ANN202 - the worker's loader
        loads.append(settings.model_id)
        return default_loader(settings)

    engine = await make_engine(loader=counting_loader, models=_models(tiny_model_dir, second_model_dir),
                               model_slots=1, model_park=1)
    assert await engine.wait_ready(60)
    first = await _image(engine, "other")
    assert engine.status().loaded == ("base",)
    assert np.array_equal(await _image(engine, "other"), first)
    assert loads == [str(tiny_model_dir), str(second_model_dir)]  # the default, then other once
