"""The operator's catalogue (engine/rules/catalogue.py): the panel's additions, changes and removals of models and
LoRAs on top of .env, kept across restarts, bounding requests at once, and used by the worker without a restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.gpu.tiny_model import save_tiny_lcm_lora, save_tiny_model
from engine.jobs.records import Requester
from engine.requests.params import ParamError, ParamRequest
from engine.rules.catalogue import MAX_MODELS, make_lora, make_model
from engine.service import Engine
from tests.engine.helpers import wait_final


@pytest.fixture(scope="module")
def ink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA of its own (a .safetensors file in its directory)."""
    return save_tiny_lcm_lora(tmp_path_factory.mktemp("ink"), seed=3)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny SDXL model with other random weights."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-sdxl-other"), seed=7)


async def _image(engine: Engine, **request: str) -> np.ndarray:
    params = engine.resolve(ParamRequest(prompt="a fox", seed=3, steps=2, **request))
    done = await wait_final(engine, (await engine.submit(params, Requester(user_id="u1"))).job.id)
    assert done.state == "done", done.error
    with Image.open(Path(engine.settings.data_dir) / done.results[0]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


async def test_a_lora_added_in_the_panel_is_offered_at_once_and_changes_the_image(make_engine, ink: Path) -> None:
    """No LORAS in .env: the panel adds one, requests may name it right away, and the worker loads it at its first
    use (its image differs from the plain one of the same seed)."""
    engine = await make_engine()
    assert await engine.wait_ready(60)
    with pytest.raises(ParamError, match="LoRA 'ink' is not offered here"):
        engine.resolve(ParamRequest(prompt="a fox", loras="ink"))
    plain = await _image(engine)
    await engine.catalogue.save(make_lora("ink", str(ink), 0.9, "ink drawing", "bold lines"))
    assert [(e.name, e.weight, e.description) for e in engine.policy.limits.loras] == [("ink", 0.9, "bold lines")]
    inked = await _image(engine, loras="ink")
    assert np.abs(inked - plain).mean() > 1
    assert engine.model is not None and list(engine.model.loras) == ["ink"]


async def test_a_removed_lora_is_refused_and_unloaded(make_engine, ink: Path) -> None:
    """Removing an .env LoRA: requests naming it are refused with what is offered, and the next batch deletes its
    adapter from the loaded model."""
    engine = await make_engine(loras=f"ink={ink}")
    assert await engine.wait_ready(60)
    await _image(engine, loras="ink")
    await engine.catalogue.remove("lora", "ink")
    with pytest.raises(ParamError, match="not offered here"):
        engine.resolve(ParamRequest(prompt="a fox", loras="ink"))
    await _image(engine)
    assert engine.model is not None and engine.model.loras == {}
    assert engine.catalogue.removed("lora") == ["ink"]


async def test_edits_survive_a_restart_and_reset_brings_back_the_env_entry(make_engine, make_settings,
                                                                            ink: Path) -> None:
    """The panel's edits are stored: a new engine on the same data directory offers what the panel left; Reset
    drops the edit of an .env entry, which comes back as .env has it."""
    settings = make_settings(loras=f"ink={ink}:0.5")
    first = await make_engine(settings=settings)
    await first.catalogue.save(make_lora("ink", str(ink), 1.5, description="stronger"))
    await first.catalogue.save(make_lora("moss", str(ink), 0.7))
    await first.stop()
    second = await make_engine(settings=settings)
    assert [(e.name, e.weight) for e in second.policy.limits.loras] == [("ink", 1.5), ("moss", 0.7)]
    assert second.catalogue.origin("lora", "ink") == ".env, edited in the panel"
    assert second.catalogue.origin("lora", "moss") == "panel"
    await second.catalogue.reset("lora", "ink")
    assert [(e.name, e.weight) for e in second.policy.limits.loras] == [("ink", 0.5), ("moss", 0.7)]
    assert second.catalogue.origin("lora", "ink") == ".env"


async def test_a_model_added_in_the_panel_serves_its_jobs(make_engine, tiny_model_dir: Path,
                                                          other_model: Path) -> None:
    """A model added in the panel: requests may name it at once, and its image is its own."""
    engine = await make_engine()
    assert await engine.wait_ready(60)
    default = engine.catalogue.default_model
    await engine.catalogue.save(make_model("other", str(other_model), "a second look"))
    assert [e.name for e in engine.policy.limits.models] == [default, "other"]
    images = [await _image(engine, model=name) for name in (default, "other")]
    assert np.abs(images[0] - images[1]).mean() > 1


async def test_the_default_model_keeps_its_env_source(make_engine, other_model: Path) -> None:
    """The default model may be described in the panel, not removed, moved to another source, or marked NSFW."""
    engine = await make_engine()
    default = engine.catalogue.env.models[0]
    with pytest.raises(ParamError, match="is the default model"):
        await engine.catalogue.remove("model", default.name)
    with pytest.raises(ParamError, match="description only"):
        await engine.catalogue.save(make_model(default.name, str(other_model)))
    with pytest.raises(ParamError, match="description only"):
        await engine.catalogue.save(make_model(default.name, default.source, nsfw=True))
    await engine.catalogue.save(make_model(default.name, default.source, "the house model"))
    assert engine.policy.limits.models[0].description == "the house model"


def test_a_source_that_is_neither_a_hub_id_nor_a_path_here_is_refused(tmp_path: Path) -> None:
    """The panel says which: a missing file, a missing directory; a hub id is taken as it is (it is fetched by the
    worker at its first use)."""
    with pytest.raises(ParamError, match="there is no file .*gone.safetensors on this host"):
        make_lora("gone", str(tmp_path / "gone.safetensors"))
    with pytest.raises(ParamError, match="neither a hub id"):
        make_model("gone", str(tmp_path / "nowhere"))
    assert make_model("hub", "someone/some-sdxl").source == "someone/some-sdxl"
    assert make_lora("far", str(tmp_path / "far.safetensors"), local=False).source.endswith("far.safetensors")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "Not A Name", "must be 1-32 lower-case letters"),
    ("weight", 3.0, "default weight must be from -2 to 2"),
    ("description", "x" * 81, "the description is 81 characters; keep it to 80"),
])
def test_a_wrong_field_is_named(tmp_path: Path, field: str, value: object, message: str) -> None:
    """Each of the panel's fields is checked with a message that says what to change."""
    fields: dict = {"name": "ok", "source": "org/lora", "weight": 1.0, "description": "", **{field: value}}
    with pytest.raises(ParamError, match=message):
        make_lora(**fields)


async def test_the_catalogue_is_bounded(make_engine) -> None:
    """At most MAX_MODELS models: the next addition is refused, saying to remove one first."""
    engine = await make_engine()
    for n in range(MAX_MODELS - 1):
        await engine.catalogue.save(make_model(f"m{n}", f"org/model-{n}"))
    with pytest.raises(ParamError, match="remove one first"):
        await engine.catalogue.save(make_model("one-more", "org/one-more"))


async def test_a_model_with_fused_layers_loads_again_for_a_new_lora(make_engine, ink: Path) -> None:
    """FUSE_QKV fused the UNet's q/k/v because no LoRA was offered at load: a LoRA added since would be lost on
    those layers, so the model loads again with it (and keeps the UNet unfused), and the LoRA changes the image."""
    engine = await make_engine(fuse_qkv=True, fast_lora_id="")
    assert await engine.wait_ready(60)
    first = engine.model
    assert first is not None and "FUSE_QKV" in first.lora_fixed
    plain = await _image(engine)
    await engine.catalogue.save(make_lora("ink", str(ink)))
    inked = await _image(engine, loras="ink")
    assert engine.model is not first and engine.model is not None and list(engine.model.loras) == ["ink"]
    assert engine.status().loaded == (engine.catalogue.default_model,)  # loaded again, and said so
    assert np.abs(inked - plain).mean() > 1
    assert any("FUSE_QKV: UNet skipped" in line for line in engine.model.accel.lines)


async def test_a_lora_added_in_the_panel_in_bfloat16(make_engine, ink: Path) -> None:
    """The half-precision path: a LoRA loaded into a running bfloat16 model changes the image and leaves every UNet
    parameter bfloat16."""
    import torch

    engine = await make_engine(dtype="bfloat16")
    assert await engine.wait_ready(60)
    plain = await _image(engine)
    await engine.catalogue.save(make_lora("ink", str(ink)))
    inked = await _image(engine, loras="ink")
    assert np.abs(inked - plain).mean() > 1
    assert engine.model is not None
    assert {p.dtype for p in engine.model.pipe.unet.parameters()} == {torch.bfloat16}


async def test_stored_edits_that_do_not_read_are_skipped_not_fatal(make_engine, make_settings) -> None:
    """A stored catalogue that is not JSON, or whose edits have the wrong shape or remove the default model: the
    engine starts with .env's catalogue and says so in the log."""
    import json

    from engine.jobs.store import JobStore

    settings = make_settings()
    first = await make_engine(settings=settings)
    default = first.catalogue.default_model
    await first.stop()
    for stored in ("{not json", json.dumps({"model": {default: None, "x": {"name": "y", "source": "a/b"}},
                                            "lora": {"ink": {"name": "ink", "source": 3}}})):
        store = JobStore(settings.db_path)
        store.kv_set("catalogue", stored)
        store.close()
        engine = await make_engine(settings=settings)
        assert [e.name for e in engine.policy.limits.models] == [default] and engine.policy.limits.loras == ()
        await engine.stop()


async def test_a_servers_list_stays_a_restriction_when_its_model_is_removed(make_engine, make_settings,
                                                                              tiny_model_dir: Path,
                                                                              other_model: Path) -> None:
    """A server allowing only "other": after the panel removes "other" and a restart, the server still allows
    only that name, which matches nothing now; it never falls back to every model (it used to)."""
    settings = make_settings(models=f"base={tiny_model_dir}, other={other_model}")
    first = await make_engine(settings=settings)
    await first.policy.set_defaults("111", {"models_allowed": ["other"]})
    await first.catalogue.remove("model", "other")
    await first.stop()
    engine = await make_engine(settings=settings)
    assert engine.policy.defaults("111").models_allowed == ("other",)
    with pytest.raises(ParamError, match="no model this server allows is offered now"):
        engine.resolve(ParamRequest(prompt="a fox"), "111")


async def test_a_lora_that_failed_at_load_does_not_load_the_model_again(make_engine, tmp_path: Path) -> None:
    """LORAS names a file that is not there; the model loads without it and FUSE_QKV fuses its UNet. A request
    naming it is refused at once, without loading the model again for it (it used to, and fail anyway)."""
    from engine.gpu.local_worker import default_loader

    loads: list[str] = []

    def counting(settings):
        loads.append(settings.model_id)
        return default_loader(settings)

    engine = await make_engine(loader=counting, fuse_qkv=True, fast_lora_id="",
                               loras=f"gone={tmp_path / 'gone.safetensors'}")
    assert await engine.wait_ready(60)
    params = engine.resolve(ParamRequest(prompt="a fox", loras="gone", steps=2))
    done = await wait_final(engine, (await engine.submit(params, Requester(user_id="u1"))).job.id)
    assert done.state == "failed" and "The LoRA 'gone' could not be loaded on this GPU" in (done.error or "")
    assert len(loads) == 1
