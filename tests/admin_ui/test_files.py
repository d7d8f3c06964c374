"""Staging result files into Gradio's cache folder: whole copies, refreshed when stale, previews too."""

from __future__ import annotations

from pathlib import Path

import pytest

from admin_ui.files import stage, stage_bytes, stage_dir


@pytest.fixture(autouse=True)
def gradio_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Gradio's cache folder for this test."""
    folder = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def result(tmp_path: Path, data: bytes) -> Path:
    """A result file under a dated folder, as the engine writes them."""
    path = tmp_path / "results" / "2026-01-01" / "job00000001-0.webp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder``, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


async def test_stage_copies_a_result_into_the_cache(tmp_path: Path) -> None:
    """A staged result is a whole copy inside the stage folder; no temporary file is left there."""
    src = result(tmp_path, b"webp bytes")
    (staged,) = await stage([src])
    assert Path(staged) == stage_dir() / "2026-01-01" / src.name
    assert Path(staged).read_bytes() == b"webp bytes"
    assert files_under(stage_dir()) == [f"2026-01-01/{src.name}"]


async def test_stale_staged_copy_is_replaced(tmp_path: Path) -> None:
    """A staged copy whose size no longer matches its source is written again."""
    src = result(tmp_path, b"old")
    await stage([src])
    src.write_bytes(b"a newer, longer file")
    (staged,) = await stage([src])
    assert Path(staged).read_bytes() == b"a newer, longer file"


async def test_missing_result_is_passed_through(tmp_path: Path) -> None:
    """A result removed by retention is not staged; its own path comes back."""
    gone = tmp_path / "results" / "gone.webp"
    assert await stage([gone]) == [str(gone)]


async def test_preview_bytes_are_written_whole(tmp_path: Path) -> None:
    """A preview lands in the previews folder with exactly its bytes and no temporary file beside it."""
    path = Path(await stage_bytes(b"\xff\xd8jpeg", "job1-s2.jpg"))
    assert path == stage_dir() / "previews" / "job1-s2.jpg" and path.read_bytes() == b"\xff\xd8jpeg"
    assert files_under(stage_dir()) == ["previews/job1-s2.jpg"]
