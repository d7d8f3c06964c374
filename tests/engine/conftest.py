"""Engine-only fixtures: engines with a gated model loader and a recording before_batch hook."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from engine.service import Engine
from engine.settings import EngineSettings
from tests.engine.helpers import BatchLog, GatedLoader

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
