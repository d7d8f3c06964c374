"""The SQLite file under the job store: opened in WAL mode with private permissions, migrated, and used
through one connection behind a lock (engine/jobs/store.py holds the queries)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from engine.media.privacy import PRIVATE_FILE, private_dirs, private_file

log = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.sql$")


class StoreError(RuntimeError):
    """The database cannot be used; the message says which file and what to do."""


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("engine.jobs.migrations").iterdir():
        match = _MIGRATION_RE.match(entry.name)
        if match:
            found.append((int(match.group("version")), match.group("name"), entry.read_text("utf-8")))
    return sorted(found)


class Database:
    """One SQLite file, migrated to the latest schema; ``_read`` and ``_write`` for the queries built on it."""

    def __init__(self, path: Path, *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            private_dirs(self.path.parent)
            # created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database's mode
            private_file(self.path)
            self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False,
                                       isolation_level=None)
            self._db.row_factory = sqlite3.Row
            # SQLite's lower() and LIKE fold ASCII only; History's search folds any script (see fold)
            self._db.create_function("casefold", 1, fold, deterministic=True)
            self._db.execute("PRAGMA journal_mode=WAL")
            _private_sidecars(self.path)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from exc
        except OSError as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}. Check DATA_DIR and its permissions.") \
                from exc

    def _explain(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return (f"the database {self.path} is locked by another process; stop the other instance of the "
                    f"service that uses this DATA_DIR (only one may run), then start again")
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return (f"the database {self.path} is corrupt ({exc}); move it aside (keep it for recovery) and start "
                    f"again to create a fresh one, or restore it from a backup")
        return f"cannot use the database {self.path}: {exc}"

    def _migrate(self) -> None:
        """Apply the migrations newer than the file's ``PRAGMA user_version``, each in one transaction.

        A migration file holds plain SQL statements (no BEGIN/COMMIT of its own); SQLite's own
        script runner executes it, and the new version is recorded in the same transaction, so a
        failing migration leaves the file at the version before it.
        """
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        for version, name, sql in _migrations():
            if version <= current:
                continue
            log.info("applying database migration %04d %s", version, name)
            try:
                self._db.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {version};\nCOMMIT;")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.DatabaseError as exc:
                raise StoreError(self._explain(exc)) from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(self._explain(exc)) from exc


def fold(value: str | None) -> str | None:
    """Text folded for comparison in any script (History's search)."""
    # NFKC first, so full-width and composed/decomposed forms compare equal; casefold maps ß to ss, etc.
    return unicodedata.normalize("NFKC", value).casefold() if value is not None else None


def _private_sidecars(db_path: Path) -> None:
    # a database file loosened by hand hands its mode on to new -wal/-shm files; they hold the same tokens
    for suffix in ("-wal", "-shm"):
        sidecar = db_path.with_name(db_path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if sidecar.stat().st_mode & 0o077:
                os.chmod(sidecar, PRIVATE_FILE)
