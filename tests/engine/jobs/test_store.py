"""The SQLite job store: the DATA_DIR lock, WAL, migrations, job states, delivery marks, overrides and failure
messages."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from engine.jobs import database as store_module
from engine.jobs.records import Requester
from engine.jobs.store import JobStore, StoreError
from tests.engine.helpers import params, who

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test database lives (its folder does not exist yet)."""
    return tmp_path / "data" / "imagine.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[JobStore]:
    """An open store on a fresh file."""
    s = JobStore(db_path)
    yield s
    s.close()


def raw(db_path: Path, sql: str) -> list[tuple]:
    """Run SQL on a separate connection, as another process would see the file."""
    con = sqlite3.connect(db_path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def migration_versions() -> list[int]:
    """The numbers of the shipped migration files."""
    names = [e.name for e in resources.files("engine.jobs.migrations").iterdir() if e.name.endswith(".sql")]
    assert all(MIGRATION_NAME.match(n) for n in names), names
    return sorted(int(MIGRATION_NAME.match(n).group(1)) for n in names)  # type: ignore[union-attr]


# --- the database ----------------------------------------------------------------------------


def test_database_uses_wal(store: JobStore, db_path: Path) -> None:
    """The file is in WAL mode, so readers never wait for the worker's writes."""
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    """Migration files are NNNN_name.sql, numbered 1, 2, 3..."""
    versions = migration_versions()
    assert versions == list(range(1, len(versions) + 1))


def test_new_database_is_at_latest_migration(store: JobStore, db_path: Path) -> None:
    """A fresh database records the last migration in user_version and has the tables."""
    assert raw(db_path, "PRAGMA user_version") == [(migration_versions()[-1],)]
    tables = {r[0] for r in raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "defaults", "blocklist", "kv"} <= tables


def test_migrations_apply_once(db_path: Path) -> None:
    """Reopening a database applies nothing again and keeps its rows."""
    first = JobStore(db_path)
    job = first.insert_job(who(), params())
    first.close()
    again = JobStore(db_path)
    try:
        assert again.get(job.id) == job
        assert raw(db_path, "PRAGMA user_version") == [(migration_versions()[-1],)]
    finally:
        again.close()


def old_database(db_path: Path) -> None:
    """A database as the code before migration 0002 left it: the 0001 schema, user_version 1, one done job."""
    schema = resources.files("engine.jobs.migrations").joinpath("0001_init.sql").read_text("utf-8")
    db_path.parent.mkdir(parents=True)
    con = sqlite3.connect(db_path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(schema)
        con.execute("PRAGMA user_version = 1")
        con.execute("INSERT INTO jobs (state, source, user_id, params, created_at, results, finished_at) "
                    "VALUES ('done', 'discord', 'u1', ?, 1.0, ?, 2.0)",
                    (json.dumps(params().to_dict()), json.dumps(["/r/old.png"])))
    finally:
        con.close()


def test_database_from_before_0002_upgrades(db_path: Path) -> None:
    """A database written by the older code opens, is migrated to the latest version and keeps its jobs."""
    old_database(db_path)
    upgraded = JobStore(db_path)
    try:
        (job,) = upgraded.in_states(["done"])
    finally:
        upgraded.close()
    assert raw(db_path, "PRAGMA user_version") == [(migration_versions()[-1],)]
    assert (job.results, job.deliveries, job.delivery_paths) == (("/r/old.png",), (), ("/r/old.png",))
    assert job.safety == ()  # checked by no classifier


def test_upgraded_database_records_delivery_copies(db_path: Path) -> None:
    """After the upgrade, new results are stored with their delivery copies."""
    old_database(db_path)
    upgraded = JobStore(db_path)
    try:
        job = upgraded.insert_job(who(), params())
        upgraded.set_running([job.id])
        upgraded.set_done(job.id, ["/r/new.png"], 1.0, deliveries=["/r/new.webp"])
        assert upgraded.get(job.id).deliveries == ("/r/new.webp",)  # type: ignore[union-attr]
    finally:
        upgraded.close()


def test_failing_migration_leaves_the_previous_version(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails half-way is rolled back whole: no new table, version unchanged, StoreError raised."""
    JobStore(db_path).close()
    latest = migration_versions()[-1]
    broken = (latest + 1, "broken", "CREATE TABLE half (x);\nTHIS IS NOT SQL;\n")
    shipped = store_module._migrations()
    monkeypatch.setattr(store_module, "_migrations", lambda: [*shipped, broken])
    with pytest.raises(StoreError):
        JobStore(db_path)
    assert raw(db_path, "PRAGMA user_version") == [(latest,)]
    assert raw(db_path, "SELECT name FROM sqlite_master WHERE name='half'") == []


def test_migration_text_may_hold_semicolons_in_comments_and_strings(db_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Migrations are run by SQLite's own script runner, so ';' inside comments and strings is just text."""
    JobStore(db_path).close()
    latest = migration_versions()[-1]
    sql = "-- a comment; with a semicolon\nINSERT INTO kv (key, value) VALUES ('note', 'a;b /* ; */');\n"
    shipped = store_module._migrations()
    monkeypatch.setattr(store_module, "_migrations", lambda: [*shipped, (latest + 1, "semicolons", sql)])
    again = JobStore(db_path)
    try:
        assert again.kv_get("note") == "a;b /* ; */"
    finally:
        again.close()
    assert raw(db_path, "PRAGMA user_version") == [(latest + 1,)]


def test_inserted_job_is_queued_and_on_disk(store: JobStore, db_path: Path) -> None:
    """insert_job commits a queued row that another connection sees at once."""
    job = store.insert_job(who("u7"), params(seed=123), priority=2)
    assert (job.state, job.priority, job.attempts) == ("queued", 2, 0)
    assert raw(db_path, f"SELECT state, user_id FROM jobs WHERE id={job.id}") == [("queued", "u7")]


def test_job_round_trips_requester_and_params(store: JobStore) -> None:
    """What was stored comes back equal: requester, delivery facts and parameters."""
    requester = Requester("u1", "Ann", "g1", "c1", "discord", {"token": "t", "message_id": 5})
    job = store.insert_job(requester, params(seed=99, count=2, negative="ugly"))
    got = store.get(job.id)
    assert got is not None and got.requester == requester and got.params == params(seed=99, count=2, negative="ugly")


def test_lifecycle_queued_running_done(store: JobStore) -> None:
    """queued -> running (one attempt) -> done with results and timing."""
    job = store.insert_job(who(), params())
    store.set_running([job.id])
    running = store.get(job.id)
    assert running is not None and (running.state, running.attempts) == ("running", 1) and running.started_at
    assert store.set_done(job.id, ["/r/a.png"], 1.5)
    done = store.get(job.id)
    assert done is not None and (done.state, done.results, done.gen_seconds) == ("done", ("/r/a.png",), 1.5)
    assert done.finished_at is not None


def test_done_keeps_delivery_copies_in_result_order(store: JobStore) -> None:
    """set_done stores each result's delivery copy; the job delivers those."""
    job = store.insert_job(who(), params(count=2))
    store.set_running([job.id])
    assert store.set_done(job.id, ["/r/a.png", "/r/b.png"], 1.0, deliveries=["/r/a.webp", "/r/b.webp"])
    done = store.get(job.id)
    assert done is not None and done.deliveries == ("/r/a.webp", "/r/b.webp")
    assert done.delivery_paths == ("/r/a.webp", "/r/b.webp")


def test_done_refuses_a_delivery_list_that_does_not_match(store: JobStore) -> None:
    """Delivery copies must be one per result; a mismatch raises and records nothing."""
    job = store.insert_job(who(), params(count=2))
    store.set_running([job.id])
    with pytest.raises(ValueError, match="one per result"):
        store.set_done(job.id, ["/r/a.png", "/r/b.png"], 1.0, deliveries=["/r/a.webp"])
    assert store.get(job.id).state == "running"  # type: ignore[union-attr]


def test_done_keeps_safety_scores_in_result_order(store: JobStore) -> None:
    """Each result's NSFW score is stored with the job, in the order of its results."""
    job = store.insert_job(who(), params(count=2))
    store.set_running([job.id])
    store.set_done(job.id, ["/r/a.png", "/r/b.png"], 1.0, safety=[0.91, 0.02])
    assert store.get(job.id).safety == (0.91, 0.02)  # type: ignore[union-attr]


def test_done_refuses_a_safety_list_that_does_not_match(store: JobStore) -> None:
    """A score list of another length than the results is a caller bug, refused before writing."""
    job = store.insert_job(who(), params(count=2))
    store.set_running([job.id])
    with pytest.raises(ValueError, match="1 safety scores for 2 results"):
        store.set_done(job.id, ["/r/a.png", "/r/b.png"], 1.0, safety=[0.5])


def test_unchecked_job_has_no_scores(store: JobStore) -> None:
    """A job done without a classifier has an empty score list (not zeros, which would read as safe)."""
    job = store.insert_job(who(), params())
    store.set_running([job.id])
    store.set_done(job.id, ["/r/a.png"], 1.0)
    assert store.get(job.id).safety == ()  # type: ignore[union-attr]


def test_clear_results_forgets_pngs_and_copies(store: JobStore) -> None:
    """After retention clears a job, it has neither results nor delivery copies."""
    job = store.insert_job(who(), params())
    store.set_running([job.id])
    store.set_done(job.id, ["/r/a.png"], 1.0, deliveries=["/r/a.webp"])
    store.clear_results(job.id)
    cleared = store.get(job.id)
    assert cleared is not None and (cleared.results, cleared.deliveries, cleared.delivery_paths) == ((), (), ())


@pytest.mark.parametrize("start", ["queued", "running"])
def test_failed_from_active_state_keeps_error(store: JobStore, start: str) -> None:
    """A queued or running job can fail; the error text is kept."""
    job = store.insert_job(who(), params())
    if start == "running":
        store.set_running([job.id])
    assert store.set_failed(job.id, "the GPU ran out of memory")
    failed = store.get(job.id)
    assert failed is not None and (failed.state, failed.error) == ("failed", "the GPU ran out of memory")


@pytest.mark.parametrize("start", ["queued", "running"])
def test_cancel_from_active_state(store: JobStore, start: str) -> None:
    """A queued or running job can be cancelled."""
    job = store.insert_job(who(), params())
    if start == "running":
        store.set_running([job.id])
    assert store.set_cancelled(job.id)
    assert store.get(job.id).state == "cancelled"  # type: ignore[union-attr]


def test_finished_job_cannot_change_state(store: JobStore) -> None:
    """A done job can no longer be cancelled, failed or set running again."""
    job = store.insert_job(who(), params())
    store.set_running([job.id])
    store.set_done(job.id, ["/r/a.png"], 1.0)
    assert not store.set_cancelled(job.id)
    assert not store.set_failed(job.id, "late error")
    store.set_running([job.id])
    assert store.get(job.id).state == "done"  # type: ignore[union-attr]


def test_done_after_cancel_is_dropped(store: JobStore) -> None:
    """Results that arrive after a cancel are not recorded."""
    job = store.insert_job(who(), params())
    store.set_running([job.id])
    store.set_cancelled(job.id)
    assert not store.set_done(job.id, ["/r/a.png"], 1.0)
    assert store.get(job.id).results == ()  # type: ignore[union-attr]


def test_delivered_mark_is_separate_from_state(store: JobStore) -> None:
    """Marking a result delivered keeps the job 'done' and removes it from the undelivered list."""
    job = store.insert_job(who(), params())
    store.set_running([job.id])
    store.set_done(job.id, ["/r/a.png"], 1.0)
    assert [j.id for j in store.undelivered("discord")] == [job.id]
    store.set_delivered(job.id)
    delivered = store.get(job.id)
    assert delivered is not None and delivered.state == "done" and delivered.delivered_at is not None
    assert store.undelivered("discord") == []


def test_undelivered_lists_finished_jobs_of_one_source(store: JobStore) -> None:
    """Done and failed jobs of the source are undelivered; active, cancelled and other sources are not."""
    done = store.insert_job(who(), params())
    failed = store.insert_job(who(), params())
    queued = store.insert_job(who(), params())
    cancelled = store.insert_job(who(), params())
    panel = store.insert_job(Requester("admin", source="panel"), params())
    for j in (done, panel):
        store.set_running([j.id])
        store.set_done(j.id, ["/r/x.png"], 1.0)
    store.set_failed(failed.id, "boom")
    store.set_cancelled(cancelled.id)
    assert [j.id for j in store.undelivered("discord")] == [done.id, failed.id]
    assert queued.id not in [j.id for j in store.undelivered("discord")]


def test_requeue_running_after_crash(store: JobStore) -> None:
    """Jobs left running go back to queued; queued and done jobs are untouched."""
    a, b, c = (store.insert_job(who(), params()) for _ in range(3))
    store.set_running([a.id, c.id])
    store.set_done(c.id, ["/r/c.png"], 1.0)
    assert store.requeue_running() == [a.id]
    assert [store.get(i).state for i in (a.id, b.id, c.id)] == ["queued", "queued", "done"]  # type: ignore[union-attr]


def test_recent_filters_by_user_guild_and_text(store: JobStore) -> None:
    """History filters on user id or name, guild and prompt text, newest first."""
    rows = [store.insert_job(Requester("u1", "Ann", "g1"), params("a red fox")),
            store.insert_job(Requester("u2", "Bob", "g1"), params("a blue whale")),
            store.insert_job(Requester("u1", "Ann", "g2"), params("a red panda"))]
    for j in rows:
        store.set_running([j.id])
        store.set_done(j.id, [], 1.0)
    assert [j.id for j in store.recent(user="Ann")] == [rows[2].id, rows[0].id]
    assert [j.id for j in store.recent(guild="g1")] == [rows[1].id, rows[0].id]
    assert [j.id for j in store.recent(text="red")] == [rows[2].id, rows[0].id]
    assert [j.id for j in store.recent(limit=1)] == [rows[2].id]


def done_jobs(store: JobStore, *prompts: str, negative: str = "") -> list[int]:
    """Finished jobs with these prompts, oldest first; their ids."""
    ids = []
    for prompt in prompts:
        job = store.insert_job(who(), params(prompt, negative=negative))
        store.set_running([job.id])
        store.set_done(job.id, [], 1.0)
        ids.append(job.id)
    return ids


def test_text_filter_searches_the_prompt_not_the_parameters(store: JobStore) -> None:
    """"steps", "euler" or a negative-prompt word are parameters, not prompt text: they match nothing."""
    done_jobs(store, "a red fox", "a blue whale", negative="ugly")
    assert store.recent(text="steps") == [] and store.recent(text="euler") == []
    assert store.recent(text="ugly") == [] and store.recent(text='"prompt"') == []


def test_text_filter_treats_like_wildcards_literally(store: JobStore) -> None:
    """% and _ in the search are characters to find, not wildcards."""
    ids = done_jobs(store, "100% cotton shirt", "a_b test", "plain words")
    assert [j.id for j in store.recent(text="%")] == [ids[0]]
    assert [j.id for j in store.recent(text="_")] == [ids[1]]
    assert [j.id for j in store.recent(text="a%b")] == []


def test_text_filter_matches_non_ascii_text_in_any_case(store: JobStore) -> None:
    """Accented, Cyrillic and CJK prompts are found, case-insensitively (Unicode case folding)."""
    ids = done_jobs(store, "Café sur la Place", "КРАСНАЯ ЛИСА", "赤い狐", "STRASSE im Regen")
    assert [j.id for j in store.recent(text="café")] == [ids[0]]
    assert [j.id for j in store.recent(text="красная")] == [ids[1]]
    assert [j.id for j in store.recent(text="狐")] == [ids[2]]
    assert [j.id for j in store.recent(text="straße")] == [ids[3]]


def test_user_filter_treats_like_wildcards_literally(store: JobStore) -> None:
    """A user name search for % does not match every user."""
    job = store.insert_job(Requester("u9", "ann_lee", "g1"), params())
    store.set_running([job.id])
    store.set_done(job.id, [], 1.0)
    assert store.recent(user="%") == [] and [j.id for j in store.recent(user="ANN_")] == [job.id]


def test_stats_counts_images_and_seconds_per_image(store: JobStore) -> None:
    """Stats count finished jobs and images since a time, and the mean seconds per image."""
    for count, secs in ((1, 2.0), (3, 3.0)):
        j = store.insert_job(who(), params(count=count))
        store.set_running([j.id])
        store.set_done(j.id, [], secs, now=1000.0)
    assert store.stats(since=500.0) == {"jobs": 2.0, "images": 4.0, "seconds_per_image": 1.25}
    assert store.stats(since=2000.0)["jobs"] == 0.0


def test_overrides_replace_and_clear(store: JobStore) -> None:
    """Overrides of a scope are replaced as a whole; an empty dict removes the scope."""
    store.set_overrides("global", {"steps": 30})
    store.set_overrides("g1", {"guidance": 5.0})
    store.set_overrides("global", {"count": 2})
    assert store.get_overrides("global") == {"count": 2}
    assert store.override_scopes() == ["g1", "global"]
    store.set_overrides("g1", {})
    assert store.get_overrides("g1") == {} and store.override_scopes() == ["global"]


def test_blocklist_replaced_per_scope(store: JobStore) -> None:
    """A scope's blocklist is replaced as a whole, deduplicated and sorted; other scopes stay."""
    store.set_blocklist("global", ["b", "a", "a"])
    store.set_blocklist("g1", ["x"])
    store.set_blocklist("global", ["c"])
    assert store.all_blocklists() == {"global": ["c"], "g1": ["x"]}


def test_kv_values_persist(store: JobStore, db_path: Path) -> None:
    """Small values survive a reopen and can be overwritten."""
    store.kv_set("commands_hash", "abc")
    store.kv_set("commands_hash", "def")
    store.close()
    again = JobStore(db_path)
    try:
        assert again.kv_get("commands_hash") == "def" and again.kv_get("missing") is None
    finally:
        again.close()


def test_delete_job_returns_it(store: JobStore) -> None:
    """Deleting a job removes the row and hands it back for file cleanup."""
    job = store.insert_job(who(), params())
    assert store.delete_job(job.id) == job
    assert store.get(job.id) is None and store.delete_job(job.id) is None


def test_not_a_database_file_gives_clear_error(db_path: Path) -> None:
    """A file that is not SQLite gives StoreError naming the file and what to do."""
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(StoreError) as info:
        JobStore(db_path)
    text = str(info.value)
    assert str(db_path) in text and "corrupt" in text and "move it aside" in text and "backup" in text


def test_damaged_pages_give_clear_error_on_read(db_path: Path) -> None:
    """A database whose pages are damaged gives StoreError (not a raw sqlite3 error) when read."""
    first = JobStore(db_path)
    for _ in range(40):
        first.insert_job(who(), params("x" * 400))
    first.close()
    data = bytearray(db_path.read_bytes())
    data[4096:] = bytes((i * 37) % 251 for i in range(len(data) - 4096))
    db_path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        damaged = JobStore(db_path)
        damaged.requeue_running()
    assert str(db_path) in str(info.value) and "corrupt" in str(info.value)


def test_locked_database_on_open_gives_clear_error(db_path: Path) -> None:
    """A database another process holds an exclusive lock on cannot be opened; the message says why."""
    db_path.parent.mkdir(parents=True)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("CREATE TABLE t (x)")
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError) as info:
            JobStore(db_path, timeout=0.1)
    finally:
        other.close()
    assert str(db_path) in str(info.value) and "locked by another process" in str(info.value)
    assert "only one may run" in str(info.value)


def test_locked_database_on_write_gives_clear_error(store: JobStore, db_path: Path) -> None:
    """A write while another process holds the write lock gives StoreError saying it is locked."""
    slow = JobStore(db_path, timeout=0.1)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked by another process"):
            slow.insert_job(who(), params())
    finally:
        other.close()
        slow.close()


def test_unwritable_data_dir_gives_clear_error(tmp_path: Path) -> None:
    """A DATA_DIR that cannot be created gives StoreError naming DATA_DIR."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="DATA_DIR"):
        JobStore(blocker / "sub" / "imagine.sqlite3")


def test_request_path_queries_use_indexes(store: JobStore) -> None:
    """A job's picture, the quota usage and the last hour's finished jobs are found through indexes, not by
    reading every row (a year of a busy bot is about a million rows)."""
    def plan(sql: str, args: tuple) -> str:
        return " ".join(str(r[3]) for r in store._read(f"EXPLAIN QUERY PLAN {sql}", args))

    upload = plan("SELECT 1 FROM jobs WHERE json_extract(params, '$.init_image') = ? AND "
                  "json_extract(params, '$.init_image') IS NOT NULL AND "
                  "(results != '[]' OR state IN ('queued', 'running')) LIMIT 1", ("uploads/x.png",))
    finished = plan("SELECT finished_at FROM jobs WHERE state='done' AND finished_at >= ? ORDER BY finished_at", (0,))
    assert "USING INDEX jobs_upload" in upload
    assert "jobs_finished" in finished and "SCAN jobs" not in finished


def test_a_prompt_search_runs_on_the_full_text_index(store: JobStore) -> None:
    """A search of three characters or more looks the prompt up in the trigram index instead of folding every
    row's prompt (2.3 s at a million jobs, the store locked meanwhile), and still finds substrings in any script,
    ignoring case."""
    ids = [store.insert_job(Requester("u1"), params(p)).id for p in ("A Red FOX", "straße im Schnee", "雪の中の狐")]
    for job_id in ids:
        store.set_running([job_id])
        store.set_done(job_id, ["x.png"], 1.0)
    seen: list[str] = []
    store.trace(seen.append)
    found = [store.recent(text=t) for t in ("red fox", "STRASSE", "の中の")]
    store.trace(None)
    assert [[j.id for j in f] for f in found] == [[ids[0]], [ids[1]], [ids[2]]]
    query = next(q for q in reversed(seen) if "jobs_text MATCH" in q)
    plan = store._read(f"EXPLAIN QUERY PLAN {query}")
    assert any("jobs_text" in row["detail"] for row in plan)
