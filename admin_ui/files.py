"""Handing images to Gradio without file I/O on the event loop.

Gradio copies every output file that is not already in its cache folder, synchronously, while it
post-processes on the event loop (the bot's loop). We put the files there ourselves in a worker
thread first, so Gradio only has to build a URL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from gradio.utils import get_upload_folder

from engine.files import atomic_write

STAGE_DIR_NAME = "imagine-admin"


def stage_dir() -> Path:
    """Our folder inside Gradio's cache (one per process, so two services never share or delete it)."""
    return Path(get_upload_folder()).resolve() / f"{STAGE_DIR_NAME}-{os.getpid()}"


async def clear_stage() -> None:
    """Remove every staged copy (on stop; they are only copies of files under DATA_DIR)."""
    await asyncio.to_thread(shutil.rmtree, stage_dir(), True)


def _stage_one(path: str | Path) -> str:
    src = Path(path)
    dest = stage_dir() / src.parent.name / src.name
    try:
        current = src.stat()
    except FileNotFoundError:
        return str(src)  # retention removed it; Gradio shows a broken tile instead of failing the page
    if dest.exists() and dest.stat().st_size == current.st_size:
        return str(dest)
    atomic_write(dest, src.read_bytes())
    return str(dest)


async def stage(paths: Sequence[str | Path]) -> list[str]:
    """Copies of ``paths`` inside Gradio's cache (made in a worker thread), in the same order."""
    if not paths:
        return []
    return await asyncio.to_thread(lambda: [_stage_one(p) for p in paths])


async def stage_bytes(data: bytes, name: str) -> str:
    """Write ``data`` (a preview JPEG) into Gradio's cache in a worker thread; returns its path."""

    def write() -> str:
        dest = stage_dir() / "previews" / name
        atomic_write(dest, data)
        return str(dest)

    return await asyncio.to_thread(write)


async def drop_previews(prefix: str) -> None:
    """Remove the preview files whose names start with ``prefix`` (a finished job's)."""

    def remove() -> None:
        folder = stage_dir() / "previews"
        if folder.is_dir():
            for path in folder.glob(f"{prefix}*"):
                path.unlink(missing_ok=True)

    await asyncio.to_thread(remove)


async def unstage(paths: Sequence[str | Path]) -> None:
    """Remove the staged copies of deleted results."""

    def remove() -> None:
        for path in paths:
            src = Path(path)
            (stage_dir() / src.parent.name / src.name).unlink(missing_ok=True)

    await asyncio.to_thread(remove)


__all__ = ["clear_stage", "drop_previews", "stage", "stage_bytes", "stage_dir", "unstage"]
