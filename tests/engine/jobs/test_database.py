"""The SQLite file under the store: reads beside the writer, a bounded pool of read connections, and a file that
shrinks when jobs are deleted."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.jobs import database
from engine.jobs.records import Requester
from engine.jobs.store import JobStore
from tests.engine.helpers import params


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    """An open store on a fresh file."""
    s = JobStore(tmp_path / "imagine.sqlite3")
    yield s
    s.close()


def test_a_read_does_not_wait_for_a_write_in_progress(store: JobStore) -> None:
    """A History search or a retention page reads while an insert's transaction holds the writer (with one
    connection behind one lock it waited for the whole transaction: 5.3 s behind a slow search at a million jobs)."""
    store.insert_job(Requester("u1"), params("a red fox"))
    inside, release = threading.Event(), threading.Event()

    def slow_write() -> None:
        with store._writing():
            store._write("BEGIN IMMEDIATE")
            store._write("UPDATE jobs SET priority = 1")
            inside.set()
            release.wait(10)
            store._write("COMMIT")

    writer = threading.Thread(target=slow_write)
    writer.start()
    try:
        assert inside.wait(5)
        started = time.perf_counter()
        found = store.recent(text="red fox", states=("queued",))
        waited = time.perf_counter() - started
    finally:
        release.set()
        writer.join()
    assert [j.params.prompt for j in found] == ["a red fox"]
    assert found[0].priority == 0  # the last committed state, not the transaction's
    assert waited < 1.0


def test_a_read_inside_a_write_section_sees_that_section(store: JobStore) -> None:
    """The quota is counted inside the insert's transaction: reads there go through the writer and see its own
    uncommitted rows."""
    job = store.insert_job(Requester("u1"), params("a red fox"))
    with store._writing():
        store._write("BEGIN IMMEDIATE")
        store._write("UPDATE jobs SET priority = 7 WHERE id = ?", (job.id,))
        seen = store.get(job.id)
        store._write("ROLLBACK")
    assert seen is not None and seen.priority == 7


def test_read_connections_are_bounded(store: JobStore) -> None:
    """Many threads reading at once share at most READERS connections."""
    store.insert_job(Requester("u1"), params("a red fox"))
    go = threading.Barrier(12)

    def read() -> None:
        go.wait()
        for _ in range(20):
            assert store.recent(states=("queued",))

    threads = [threading.Thread(target=read) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(store._all_readers) <= database.READERS


def test_read_connections_cannot_write(store: JobStore) -> None:
    """A write sent down the read path by mistake is refused, not run outside the writer's lock."""
    with pytest.raises(database.StoreError, match="readonly|read-only|query_only"):
        store._read("DELETE FROM jobs")


def test_deleted_jobs_give_their_space_back(store: JobStore) -> None:
    """Pages freed by deleted jobs are returned to the disk, so the file shrinks."""
    ids = [store.insert_job(Requester("u1"), params("x" * 1000 + str(i))).id for i in range(2000)]
    for job_id in ids:
        store.delete_job(job_id)
    store._write("PRAGMA wal_checkpoint(TRUNCATE)")
    before = store.path.stat().st_size
    freed = store.reclaim()
    store._write("PRAGMA wal_checkpoint(TRUNCATE)")
    assert freed > 0
    assert store.path.stat().st_size < before / 2


def test_a_file_made_before_incremental_vacuum_is_converted_once(tmp_path: Path) -> None:
    """A store created by an older version (auto_vacuum off) is rebuilt at start so it too can shrink."""
    path = tmp_path / "old.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE leftover (x)")
    con.commit()
    con.close()
    store = JobStore(path)
    try:
        assert store._read("PRAGMA auto_vacuum")[0][0] == 2
    finally:
        store.close()
