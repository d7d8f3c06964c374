"""Fixtures of the scale-out tests: a real nats-server, GPU worker processes, and bot-side engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.engine_settings import EngineSettings
from engine.service import Engine
from tests.engine.remote_helpers import ACK_WAIT, HEARTBEAT, Workers
from tests.support.nats_server import NatsServer

WAIT = 60.0
RemoteEngine = Callable[..., Awaitable[Engine]]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream, its store under the test's temporary folder."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workers(nats_server: NatsServer, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Workers]:
    """Start GPU worker processes on the tiny model (killed at teardown)."""
    group = Workers(nats_server.url, tiny_model_dir, tmp_path)
    yield group
    group.stop_all()


@pytest.fixture
async def remote_engine(make_settings: Callable[..., EngineSettings],
                        nats_server: NatsServer) -> AsyncIterator[RemoteEngine]:
    """Start bot-side engines with NATS_URL set: ``await remote_engine(**settings_overrides)``."""
    started: list[Engine] = []

    async def factory(**overrides: Any) -> Engine:
        values = dict(nats_url=nats_server.url, nats_ack_wait=ACK_WAIT, worker_heartbeat=HEARTBEAT,
                      fast_lora_id="", batch_window=0.2)
        values.update(overrides)
        engine = Engine(make_settings(**values))
        await engine.start()
        started.append(engine)
        return engine

    yield factory
    for engine in started:
        await engine.stop()


