"""A consistent copy of what DATA_DIR cannot rebuild, taken while the service runs: ``python -m engine backup DIR``.

The job store goes through SQLite's online backup (a snapshot between two transactions, WAL included, never a
half-written file); the generated admin password and the dispatch key (which signs batches for GPU workers)
are copied beside it. Everything is written readable by its owner only. Result images are plain files: copy
``DATA_DIR/results`` with rsync (they are never changed once written).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

SECRETS = ("admin-password", "dispatch.key")  # small files under DATA_DIR that a restore needs as they were


def backup(data_dir: Path, db_path: Path, target: Path) -> list[Path]:
    """Write the backup into ``target`` (created, mode 700); returns the files written."""
    if not db_path.exists():
        raise FileNotFoundError(f"no job store at {db_path}: is DATA_DIR ({data_dir}) the service's?")
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o700)
    written = []
    copy = target / db_path.name
    partial = copy.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dest = sqlite3.connect(partial)
        try:
            source.backup(dest, pages=1024, sleep=0.01)  # in steps: writers are held up for moments only
        finally:
            dest.close()
    finally:
        source.close()
    os.replace(partial, copy)
    written.append(copy)
    for name in SECRETS:
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, target / name)
            (target / name).chmod(0o600)
            written.append(target / name)
    (target / "BACKUP_INFO").write_text(f"taken {time.strftime('%Y-%m-%d %H:%M:%S %z')} from {data_dir}\n")
    return written
