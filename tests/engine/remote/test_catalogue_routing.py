"""The catalogue over NATS: what the panel adds reaches GPU workers with each batch (engine/remote/wire.py), a
LoRA is loaded by a worker whose .env lacks it, and a model added since the start gets its workers' consumer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.jobs.records import Requester
from engine.remote import wire
from engine.requests.loras import LoraEntry
from engine.requests.models import ModelEntry, Offer
from engine.requests.params import ParamRequest
from engine.rules.catalogue import make_lora, make_model
from engine.service import Engine
from tests.engine.helpers import wait_final
from tests.engine.remote.conftest import WAIT, RemoteEngine
from tests.engine.remote_helpers import Workers


async def _made(engine: Engine, **request: str) -> np.ndarray:
    job = (await engine.submit(engine.resolve(ParamRequest(prompt="a fox", seed=4, steps=2, **request)),
                               Requester(user_id="u1", guild_id="g1"))).job
    done = await wait_final(engine, job.id, WAIT)
    assert done.state == "done", done.error
    return np.asarray(Image.open(done.results[0]).convert("RGB"), dtype=np.int16)


async def test_a_lora_added_in_the_panel_runs_on_a_worker_without_it(remote_engine: RemoteEngine,
                                                                      workers: Workers, tmp_path: Path) -> None:
    """The worker's LORAS is empty; the bot host's catalogue gains ink; the batch carries its source and the worker
    loads it at its first use."""
    from engine.gpu.tiny_model import save_tiny_lcm_lora

    ink = save_tiny_lcm_lora(tmp_path / "ink", seed=3)
    engine = await remote_engine()
    workers.start("w")
    assert await engine.wait_ready(WAIT)
    plain = await _made(engine)
    await engine.catalogue.save(make_lora("ink", str(ink), local=False))
    assert np.abs(await _made(engine, loras="ink:0.9") - plain).mean() > 1


async def test_a_model_added_in_the_panel_reaches_the_workers_that_serve_it(
        remote_engine: RemoteEngine, workers: Workers, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The bot host starts with the default model alone; the panel adds other, whose workers' consumer is declared
    with its first batch, and a worker whose MODELS lists other's source serves it."""
    from engine.gpu.tiny_model import save_tiny_model

    other = save_tiny_model(tmp_path / "other", seed=7)
    engine = await remote_engine()
    workers.start("both", MODELS=f"base={tiny_model_dir}, other={other}")
    assert await engine.wait_ready(WAIT)
    await engine.catalogue.save(make_model("other", str(other), local=False))
    images = [await _made(engine, model=name) for name in (engine.catalogue.default_model, "other")]
    assert np.abs(images[0] - images[1]).mean() > 1


def test_a_worker_learns_loras_and_only_the_models_it_serves() -> None:
    """A batch's LoRA replaces the worker's of the same name; a model name is taken only when new and for a source
    the worker serves (never rebinding one it has: a batch cannot make it load another model as its default); LoRAs
    are kept up to MAX_LEARNED, the oldest dropped."""
    known = Offer((ModelEntry("base", "/m/base"), ModelEntry("other", "/m/other")),
                  (LoraEntry("ink", "/old/ink", 0.5, "ink drawing"),))
    entries = [wire.WireEntry(kind="lora", name="ink", source="/new/ink"),
               wire.WireEntry(kind="model", name="far", source="/m/far"),
               wire.WireEntry(kind="model", name="base", source="/m/other"),
               wire.WireEntry(kind="model", name="alias", source="/m/base")]
    now = wire.learned(known, entries, ["/m/base", "/m/other"])
    assert [(e.name, e.source) for e in now.models] == [("base", "/m/base"), ("other", "/m/other"),
                                                        ("alias", "/m/base")]
    assert now.lora("ink") == LoraEntry("ink", "/new/ink", 0.5, "ink drawing")
    many = [wire.WireEntry(kind="lora", name=f"l{n}", source=f"/l/{n}") for n in range(wire.MAX_LEARNED + 5)]
    crowded = wire.learned(now, many, ["/m/base"])
    assert len(crowded.loras) == wire.MAX_LEARNED and crowded.loras[-1].name == f"l{wire.MAX_LEARNED + 4}"
