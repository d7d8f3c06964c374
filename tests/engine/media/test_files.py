"""atomic_write: whole files or nothing, in a folder it creates, with the permissions asked for."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.media.files import atomic_write


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files readable by everyone (restored afterwards)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_writes_the_bytes(tmp_path: Path) -> None:
    """The file holds exactly the bytes given."""
    atomic_write(tmp_path / "a.bin", b"\x00hello\xff")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00hello\xff"


def test_creates_missing_folders(tmp_path: Path) -> None:
    """Missing parent folders are created."""
    target = tmp_path / "x" / "y" / "a.txt"
    atomic_write(target, b"data")
    assert target.read_bytes() == b"data"


def test_replaces_an_existing_file_whole(tmp_path: Path) -> None:
    """A longer old file is replaced, not overwritten in place (no old tail remains)."""
    target = tmp_path / "a.txt"
    target.write_bytes(b"a much longer old content")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"


def test_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Only the final file is left in the folder."""
    atomic_write(tmp_path / "a.txt", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_rename_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """If the final rename fails, the error propagates, the old content stays and no temp file remains."""
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_removes_the_temporary(tmp_path: Path) -> None:
    """If writing the data fails (here: not bytes), no temp file is left and nothing is created."""
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "a.txt", "text, not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_mode_sets_the_permissions_regardless_of_umask(tmp_path: Path) -> None:
    """mode gives the file exactly those permissions, even bits the umask would clear."""
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "shared", b"data", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o640


def test_without_mode_the_file_is_private(tmp_path: Path, open_umask: None) -> None:
    """Without mode the file is readable by its owner only (0600), whatever the umask."""
    atomic_write(tmp_path / "a.txt", b"data")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o600


def test_missing_folders_are_created_private(tmp_path: Path, open_umask: None) -> None:
    """Folders atomic_write has to create are 0700, whatever the umask; existing ones are left alone."""
    os.chmod(tmp_path, 0o755)
    atomic_write(tmp_path / "x" / "y" / "a.txt", b"data")
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "x" / "y").stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
