"""The panel's private file folder: result copies, previews and Gradio's own cache, for this process only.

Gradio serves every file in its cache folder, and by default that folder (GRADIO_TEMP_DIR, else
/tmp/gradio) is shared by every Gradio app on the machine; copies staged there also outlived a crash,
so deleted images stayed downloadable. The panel gives Gradio its own folder instead,
DATA_DIR/panel-cache (0700; one service per DATA_DIR), emptied when the panel starts and when it
stops, and it removes what older versions left in the shared folder.

Gradio copies every output file that is not already in its cache folder, synchronously, while it
post-processes on the event loop (the bot's loop). We put the files there ourselves in a worker
thread first, so Gradio only has to build a URL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from engine.media.files import atomic_write
from engine.media.privacy import private_dirs

log = logging.getLogger(__name__)

CACHE_DIR_NAME = "panel-cache"
# what versions before this one staged into the shared folder: imagine-admin-<pid>
_LEGACY_STAGE = re.compile(r"^imagine-admin-(\d+)$")


class Stage:
    """One panel's private folder; Gradio's cache points at it while the panel runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()

    def reset(self) -> None:
        """Empty the folder (what a killed process left) and create it again, 0700. Blocking."""
        shutil.rmtree(self.folder, ignore_errors=True)
        private_dirs(self.folder)

    async def clear(self) -> None:
        """Remove the folder and everything in it (on stop; they are only copies)."""
        await asyncio.to_thread(shutil.rmtree, self.folder, True)

    def path_for(self, source: str | Path) -> Path:
        """Where the staged copy of a result file goes."""
        src = Path(source)
        return self.folder / "results" / src.parent.name / src.name

    def _stage_one(self, path: str | Path) -> str:
        src = Path(path)
        dest = self.path_for(src)
        try:
            current = src.stat()
        except FileNotFoundError:
            return str(src)  # retention removed it; Gradio shows a broken tile instead of failing the page
        if dest.exists() and dest.stat().st_size == current.st_size:
            return str(dest)
        atomic_write(dest, src.read_bytes())
        return str(dest)

    async def stage(self, paths: Sequence[str | Path]) -> list[str]:
        """Copies of ``paths`` inside the folder (made in a worker thread), in the same order."""
        if not paths:
            return []
        return await asyncio.to_thread(lambda: [self._stage_one(p) for p in paths])

    async def stage_bytes(self, data: bytes, name: str) -> str:
        """Write ``data`` (a preview JPEG) into the folder in a worker thread; returns its path."""
        dest = self.folder / "previews" / name
        await asyncio.to_thread(atomic_write, dest, data)
        return str(dest)

    async def drop_previews(self, prefix: str) -> None:
        """Remove the preview files whose names start with ``prefix`` (a finished job's)."""

        def remove() -> None:
            folder = self.folder / "previews"
            if folder.is_dir():
                for path in folder.glob(f"{prefix}*"):
                    path.unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    async def unstage(self, paths: Sequence[str | Path]) -> None:
        """Remove the staged copies of deleted results."""

        def remove() -> None:
            for path in paths:
                self.path_for(path).unlink(missing_ok=True)

        await asyncio.to_thread(remove)


def remove_legacy_stages(shared: Path) -> list[Path]:
    """Remove the stage folders older versions left in Gradio's shared folder. Blocking.

    Only this user's folders whose process is gone: one that still runs is serving from it.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(shared).iterdir())
    except OSError:  # no shared folder (nothing to clean), or not ours to read
        return removed
    for entry in entries:
        match = _LEGACY_STAGE.match(entry.name)
        try:
            if not match or not entry.is_dir() or entry.is_symlink() or entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        log.warning("removed %d staged image folder(s) an earlier panel left in Gradio's shared folder %s",
                    len(removed), shared)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False  # no process can have that number
    except PermissionError:
        return True  # another user's process
    return True


__all__ = ["CACHE_DIR_NAME", "Stage", "remove_legacy_stages"]
