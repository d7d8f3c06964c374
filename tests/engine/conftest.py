"""Engine-only fixtures: engines with a gated model loader and a recording before_batch hook."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.engine_settings import EngineSettings
from engine.gpu.local_worker import default_loader
from engine.gpu.model import LoadedModel
from engine.service import Engine
from tests.engine.helpers import BatchLog, GatedLoader
from tests.engine.switch_helpers import save_random_lora

EngineFactory = Callable[..., Awaitable[Engine]]


@pytest.fixture
async def make_engine(make_settings: Callable[..., EngineSettings]) -> AsyncIterator[EngineFactory]:
    """Start engines on the tiny model: ``await make_engine(loader=..., **settings_overrides)``.

    Every engine is stopped at teardown, after its gates are opened so the worker can finish.
    """
    started: list[tuple[Engine, list[Any]]] = []

    async def factory(*, loader: Any = None, settings: EngineSettings | None = None, **overrides: Any) -> Engine:
        eng = Engine(settings or make_settings(**overrides), loader=loader)
        log = BatchLog()
        eng.before_batch = log  # tests read it back as ``eng.before_batch``
        started.append((eng, [loader, log]))
        await eng.start()
        return eng

    yield factory
    for eng, gates in reversed(started):
        for gate in gates:
            if isinstance(gate, GatedLoader):
                gate.open()
            elif isinstance(gate, BatchLog):
                gate.release()
        await eng.stop()


@pytest.fixture(autouse=True)
def default_stance() -> Iterator[None]:
    """A finished compile warm-up sets dynamo's process-wide stance; each test starts and ends with the default."""
    torch.compiler.set_stance("default")
    yield
    torch.compiler.set_stance("default")


@pytest.fixture
def load(make_settings: Callable[..., EngineSettings]) -> Iterator[Callable[..., LoadedModel]]:
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


@pytest.fixture(scope="module")
def strong_lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA whose effect on the tiny model's images is large (see save_random_lora)."""
    return save_random_lora(tmp_path_factory.mktemp("strong-lora"))
