"""Keeping DATA_DIR readable by the service's own user only.

The database holds live interaction tokens (anyone who reads one can post as the bot for 15
minutes) and DATA_DIR the generated admin password, so folders are 0700 and files 0600. New
files get those modes as they are made (``engine.media.files.atomic_write``, the store); ``secure_tree``
repairs a DATA_DIR that was copied, restored or created under an open umask.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_SHOWN = 8  # paths named in the log line; the rest are counted


def private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents, each new folder 0700 (existing ones are left alone)."""
    path = Path(path)
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another thread
            continue
        # mkdir's mode passes through the umask, which can only take bits away; set it exactly
        os.chmod(folder, PRIVATE_DIR)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite then gives its WAL and SHM the same)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)


def secure_tree(root: Path) -> list[Path]:
    """Take group and other permissions off ``root`` and everything below it; returns what was changed.

    Only the group/other bits are cleared, so folders become 0700 and files 0600 (an executable
    cached kernel keeps its owner's x bit). Symbolic links are not followed. One warning names what
    was fixed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    fixed = [p for p in [root, *_walk(root)] if _tighten(p)]
    if fixed:
        shown = ", ".join("." if p == root else str(p.relative_to(root)) for p in fixed[:_SHOWN])
        more = f" and {len(fixed) - _SHOWN} more" if len(fixed) > _SHOWN else ""
        log.warning("DATA_DIR %s was readable by other users; made %d path(s) private to this user (folders 0700, "
                    "files 0600): %s%s", root, len(fixed), shown, more)
    return fixed


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        found.extend(Path(folder) / name for name in (*dirs, *files))
    return found


def _tighten(path: Path) -> bool:
    try:
        info = path.lstat()
    except FileNotFoundError:  # removed meanwhile (a temporary file)
        return False
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return False
    os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077)
    return True


__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "private_dirs", "private_file", "secure_tree"]
