"""The DATA_DIR lock: one running service per DATA_DIR, across threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.jobs.store import StoreError
from engine.media.datadir import DataDirLock

REPO = Path(__file__).resolve().parents[3]


def test_second_lock_on_a_data_dir_is_refused(tmp_path: Path) -> None:
    """While one lock is held, another on the same DATA_DIR fails at once, saying why and what to do."""
    first = DataDirLock(tmp_path)
    try:
        with pytest.raises(StoreError) as info:
            DataDirLock(tmp_path)
    finally:
        first.release()
    text = str(info.value)
    assert str(tmp_path) in text and "in use by another running instance" in text
    assert "stop it first" in text and "its own DATA_DIR" in text


def test_lock_held_by_another_process_is_refused(tmp_path: Path) -> None:
    """A second process on the same DATA_DIR gets the StoreError."""
    held = DataDirLock(tmp_path)
    try:
        code = ("import sys\nfrom engine.media.datadir import DataDirLock\nfrom engine.jobs.store import StoreError\n"
                "try:\n    DataDirLock(sys.argv[1])\nexcept StoreError as exc:\n    print('refused:', exc)\n")
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True,
                              text=True, timeout=60, check=True)
    finally:
        held.release()
    assert done.stdout.startswith("refused:") and "in use by another running instance" in done.stdout


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    """After release the DATA_DIR is free for the next instance."""
    DataDirLock(tmp_path).release()
    DataDirLock(tmp_path).release()


def test_lock_released_from_another_thread_is_free(tmp_path: Path) -> None:
    """A lock taken on one thread and released on another (as the engine does) frees the DATA_DIR."""
    taken: list[DataDirLock] = []
    worker = threading.Thread(target=lambda: taken.append(DataDirLock(tmp_path)))
    worker.start()
    worker.join()
    taken[0].release()
    DataDirLock(tmp_path).release()


def test_releasing_twice_is_harmless(tmp_path: Path) -> None:
    """A second release does nothing (and does not free another instance's lock)."""
    first = DataDirLock(tmp_path)
    first.release()
    second = DataDirLock(tmp_path)
    try:
        first.release()
        with pytest.raises(StoreError, match="in use"):
            DataDirLock(tmp_path)
    finally:
        second.release()


def test_lock_creates_the_data_dir(tmp_path: Path) -> None:
    """A DATA_DIR that does not exist yet is created."""
    lock = DataDirLock(tmp_path / "new" / "data")
    try:
        assert (tmp_path / "new" / "data").is_dir()
    finally:
        lock.release()


def test_unusable_data_dir_gives_clear_lock_error(tmp_path: Path) -> None:
    """A DATA_DIR that cannot be created gives StoreError naming DATA_DIR and what to check."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot use DATA_DIR .*permissions"):
        DataDirLock(blocker / "data")
