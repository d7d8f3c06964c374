"""Writing a file so that no reader ever sees it half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engine.media.privacy import private_dirs


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` (creating its folder, 0700) through a temporary file in the same folder.

    The temporary file is renamed over ``path`` only once it is complete, so readers see either the
    old file or the new one. It is created readable by its owner only (0600); ``mode`` sets the
    final permissions instead, before any data is written. On any error the temporary file is
    removed, ``path`` is left as it was and the error propagates.
    """
    path = Path(path)
    private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["atomic_write"]
