"""DATA_DIR holds live interaction tokens and the admin password: only the service's user may read it.

Through the real engine on the tiny model, under a umask (022) that would share new files.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.engine_settings import EngineSettings
from engine.service import Engine
from tests.admin_ui.support import run_job


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """A umask that would leave new files readable by everyone (restored afterwards)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(data_dir: Path) -> dict[str, int]:
    """Permission bits of DATA_DIR and of everything below it, by path relative to it."""
    found = {".": stat.S_IMODE(data_dir.stat().st_mode)}
    for path in data_dir.rglob("*"):
        found[str(path.relative_to(data_dir))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def loose(found: dict[str, int], data_dir: Path) -> dict[str, str]:
    """What others could read or enter: folders not 0700, files not 0600."""
    bad = {}
    for name, mode in found.items():
        want = 0o700 if (data_dir / name).is_dir() else 0o600
        if mode != want:
            bad[name] = oct(mode)
    return bad


async def test_a_new_data_dir_is_private(make_settings: Callable[..., EngineSettings]) -> None:
    """After a job: DATA_DIR and every folder in it 0700, the database, WAL, SHM, lock and results 0600."""
    settings = make_settings()
    async with Engine(settings) as engine:
        assert await engine.wait_ready(60), engine.model_error
        await run_job(engine, "a private fox")
        found = modes(settings.data_dir)
        assert {"imagine.sqlite3", "imagine.sqlite3-wal", "imagine.sqlite3-shm", "service.lock"} <= set(found)
        assert any(name.endswith(".png") for name in found) and any(name.endswith(".webp") for name in found)
        assert loose(found, settings.data_dir) == {}


async def test_loosened_permissions_are_fixed_on_start_and_logged(make_settings: Callable[..., EngineSettings],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A DATA_DIR copied or restored with open permissions is made private again on the next start."""
    settings = make_settings()
    async with Engine(settings) as engine:
        assert await engine.wait_ready(60), engine.model_error
        await run_job(engine, "a fox to expose")
    data_dir = settings.data_dir
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # what `cp -r` under umask 022 leaves
    (data_dir / "compile-cache").mkdir(mode=0o755)
    (data_dir / "compile-cache" / "kernel.so").write_bytes(b"\x7fELF")
    os.chmod(data_dir / "compile-cache" / "kernel.so", 0o755)
    with caplog.at_level(logging.WARNING, logger="engine"):
        async with Engine(settings):
            found = modes(data_dir)
    assert {k: v for k, v in loose(found, data_dir).items() if k != "compile-cache/kernel.so"} == {}
    assert found["compile-cache/kernel.so"] == 0o700  # the owner keeps what it had, others lose everything
    assert "readable by other users" in caplog.text and str(data_dir) in caplog.text
    assert "imagine.sqlite3" in caplog.text and "results" in caplog.text
