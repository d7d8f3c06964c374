"""The panel's private file folder: staged copies, previews, and what the file route serves.

Gradio serves every file in its cache folder; by default that folder is shared by every Gradio app
on the machine, and copies in it outlived crashes. The panel keeps its own under DATA_DIR instead.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from admin_ui.files import Stage
from admin_ui.server import AdminServer
from engine.service import Engine
from tests.admin_ui.support import PASSWORD, USER, admin_settings, run_job


def result(tmp_path: Path, data: bytes) -> Path:
    """A result file under a dated folder, as the engine writes them."""
    path = tmp_path / "results" / "2026-01-01" / "job00000001-0.webp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder``, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    """A stage folder, reset as the panel does when it starts."""
    s = Stage(tmp_path / "data" / "panel-cache")
    s.reset()
    return s


@pytest.fixture
def shared_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gradio's machine-wide cache folder (GRADIO_TEMP_DIR), here a private one for the test."""
    folder = tmp_path / "shared-gradio"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


@pytest.fixture
async def served(engine: Engine, shared_cache: Path) -> AsyncIterator[tuple[AdminServer, httpx.AsyncClient]]:
    """A logged-in HTTP client on a panel started after ``shared_cache`` was set up; yields (server, client)."""
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD),
                         engine.settings.data_dir)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=30) as c:
            assert (await c.post("/login", data={"username": USER, "password": PASSWORD})).status_code == 200
            yield server, c
    finally:
        await server.stop()


async def test_stage_copies_a_result_into_the_stage(tmp_path: Path, stage: Stage) -> None:
    """A staged result is a whole copy inside the stage folder; no temporary file is left there."""
    src = result(tmp_path, b"webp bytes")
    (staged,) = await stage.stage([src])
    assert Path(staged) == stage.folder / "results" / "2026-01-01" / src.name
    assert Path(staged).read_bytes() == b"webp bytes"
    assert files_under(stage.folder) == [f"results/2026-01-01/{src.name}"]


async def test_stale_staged_copy_is_replaced(tmp_path: Path, stage: Stage) -> None:
    """A staged copy whose size no longer matches its source is written again."""
    src = result(tmp_path, b"old")
    await stage.stage([src])
    src.write_bytes(b"a newer, longer file")
    (staged,) = await stage.stage([src])
    assert Path(staged).read_bytes() == b"a newer, longer file"


async def test_missing_result_is_passed_through(tmp_path: Path, stage: Stage) -> None:
    """A result removed by retention is not staged; its own path comes back."""
    gone = tmp_path / "results" / "gone.webp"
    assert await stage.stage([gone]) == [str(gone)]


async def test_preview_bytes_are_written_whole(stage: Stage) -> None:
    """A preview lands in the previews folder with exactly its bytes and no temporary file beside it."""
    path = Path(await stage.stage_bytes(b"\xff\xd8jpeg", "job1-s2.jpg"))
    assert path == stage.folder / "previews" / "job1-s2.jpg" and path.read_bytes() == b"\xff\xd8jpeg"
    assert files_under(stage.folder) == ["previews/job1-s2.jpg"]


async def test_staged_copies_are_private_to_the_service(engine: Engine, served) -> None:
    """The History tab's copies live under DATA_DIR in a folder only the service's user can enter."""
    server, c = served
    job = await run_job(engine, "a private fox")
    staged = server.stage.path_for(job.delivery_paths[0])
    response = await c.post("/gradio_api/call/history", json={"data": ["", "", ""]})
    assert response.status_code == 200
    stream = await c.get(f"/gradio_api/call/history/{response.json()['event_id']}")
    assert "complete" in stream.text and str(staged) in stream.text
    assert staged.is_file() and staged.is_relative_to(engine.settings.data_dir)
    assert stat.S_IMODE(server.stage.folder.stat().st_mode) == 0o700


async def test_files_in_gradios_shared_cache_are_not_served(served, shared_cache: Path) -> None:
    """Another Gradio app's file in the machine-wide cache is refused, although the login is valid."""
    _server, c = served
    other_app = shared_cache / "0123abcd" / "someone-elses.png"
    other_app.parent.mkdir()
    other_app.write_bytes(b"\x89PNG other application")
    assert (await c.get(f"/gradio_api/file={other_app}")).status_code == 403


async def test_copies_left_by_a_crashed_process_are_removed_on_start(engine: Engine, shared_cache: Path) -> None:
    """Staged copies from an earlier, killed process (ours or an older version's) are gone once the panel starts."""
    data_dir = engine.settings.data_dir
    ours = data_dir / "panel-cache" / "results" / "2026-01-01" / "job00000007-0.webp"
    legacy = shared_cache / "imagine-admin-999999999" / "2026-01-01" / "job00000007-0.webp"
    for path in (ours, legacy):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"a deleted image")
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD=PASSWORD), data_dir)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/")) as c:
            await c.post("/login", data={"username": USER, "password": PASSWORD})
            answers = [(await c.get(f"/gradio_api/file={path}")).status_code for path in (ours, legacy)]
        assert not ours.exists() and not legacy.parent.exists()
        assert answers == [403, 403]
    finally:
        await server.stop()


async def test_a_live_process_stage_in_the_shared_cache_is_left_alone(engine: Engine, shared_cache: Path) -> None:
    """An older version's stage folder whose process still runs is not removed (it is still serving)."""
    alive = shared_cache / f"imagine-admin-{os.getppid()}" / "x.webp"
    alive.parent.mkdir()
    alive.write_bytes(b"still in use")
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD=PASSWORD), engine.settings.data_dir)
    await server.start()
    await server.stop()
    assert alive.exists()


async def test_stopping_the_panel_removes_its_folder(engine: Engine, served) -> None:
    """After stop nothing staged is left on disk."""
    server, _client = served
    await server.stage.stage_bytes(b"\xff\xd8jpeg", "job1-s1.jpg")
    await server.stop()
    assert not server.stage.folder.exists()
