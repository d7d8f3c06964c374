"""The SQLite file under the job store: opened in WAL mode with private permissions, migrated, written through one
connection behind a lock and read through a small pool of read-only connections (engine/jobs/store.py holds the
queries).

WAL lets readers and the one writer work at the same moment; with a single connection a History search or a
retention page held up every /imagine's insert behind the same lock. A read made inside a write section (the
quota counted in an insert's transaction) goes through the writer, which holds the lock already.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from engine.media.privacy import PRIVATE_FILE, private_dirs, private_file

log = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.sql$")

READERS = 4  # read connections at most: reads come from asyncio.to_thread's pool and finish in milliseconds
RECLAIM_PAGES = 2048  # pages (8 MB) freed per incremental_vacuum step; the writer's lock is free between steps


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
        self._timeout = timeout
        self._lock = threading.RLock()
        self._local = threading.local()  # .writing: this thread is inside a write section
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._tracer: Callable[[str], object] | None = None
        try:
            private_dirs(self.path.parent)
            # created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database's mode
            private_file(self.path)
            self._db = self._connect()
            self._db.execute("PRAGMA journal_mode=WAL")
            _private_sidecars(self.path)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._incremental_vacuum()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from exc
        except OSError as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}. Check DATA_DIR and its permissions.") \
                from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self._timeout, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        # SQLite's lower() and LIKE fold ASCII only; History's search folds any script (see fold)
        db.create_function("casefold", 1, fold, deterministic=True)
        db.set_trace_callback(self._tracer)
        return db

    def _incremental_vacuum(self) -> None:
        """Let the file shrink: pages freed by deleted jobs go back to the disk through ``reclaim``.

        auto_vacuum can only change before the first table exists or through one VACUUM, so a file made before
        this setting is rebuilt once, at start-up (seconds for a large store); if that fails (a full disk needs
        the file's size again) the file stays as it was and the next start tries again.
        """
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return  # a new file: the setting took at once
        log.info("rebuilding %s once so that it can shrink (VACUUM)", self.path)
        try:
            self._db.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            log.warning("could not rebuild %s (%s); it keeps its size, and the next start tries again", self.path,
                        exc)

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
        """Close the connections."""
        with self._lock, self._readers_lock:
            self._db.close()
            for reader in self._all_readers:
                reader.close()

    def trace(self, callback: Callable[[str], object] | None) -> None:
        """Call ``callback`` with every statement any connection runs (tests read the queries' plans)."""
        with self._readers_lock:
            self._tracer = callback
            for db in (self._db, *self._all_readers):
                db.set_trace_callback(callback)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write section: the writer's lock held, and this thread's reads go through the writer meanwhile."""
        with self._lock:
            self._local.writing = getattr(self._local, "writing", 0) + 1
            try:
                yield
            finally:
                self._local.writing -= 1

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read connection of the pool, opened on first need (at most READERS; then the next one free)."""
        try:
            reader = self._readers.get_nowait()
        except queue.Empty:
            with self._readers_lock:
                grow = len(self._all_readers) < READERS
                if grow:
                    reader = self._connect()
                    reader.execute("PRAGMA query_only=ON")
                    self._all_readers.append(reader)
            if not grow:
                reader = self._readers.get()
        try:
            yield reader
        finally:
            self._readers.put(reader)

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._writing():
            try:
                return self._db.execute(sql, args)
            except sqlite3.DatabaseError as exc:
                raise StoreError(self._explain(exc)) from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            if getattr(self._local, "writing", 0):
                with self._lock:
                    return self._db.execute(sql, args).fetchall()
            with self._reader() as reader:
                return reader.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._explain(exc)) from exc

    def reclaim(self, *, min_free: float = 0.1) -> int:
        """Give the pages that deleted rows left free back to the disk, once they are over ``min_free`` of the
        file, RECLAIM_PAGES at a time so that writers wait moments only. Returns the pages freed."""
        if self._read("PRAGMA auto_vacuum")[0][0] != 2:
            return 0  # the one-time rebuild has not happened yet (see _incremental_vacuum)
        freed, before = 0, None
        while True:
            free, total = (self._read(f"PRAGMA {name}")[0][0] for name in ("freelist_count", "page_count"))
            if not free or (freed == 0 and free < min_free * total) or (before is not None and free >= before):
                return freed  # nothing (more) to give back, or a file that cannot shrink (auto_vacuum not set)
            with self._writing():
                self._db.execute(f"PRAGMA incremental_vacuum({RECLAIM_PAGES})").fetchall()
            freed += min(free, RECLAIM_PAGES)
            before = free


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
