"""Result retention by age and size; undelivered results are never removed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from engine.jobs.records import Requester
from engine.requests.params import ParamRequest


async def _done_job(engine, source: str = "admin"):
    params = engine.resolve(ParamRequest(prompt="a fox", seed=1))
    requester = Requester(user_id="u1", source=source, delivery={"token": "t"} if source == "discord" else {})
    # subscribe before submitting, so the "done" event cannot be missed
    with engine.subscribe() as stream:
        sub = await engine.submit(params, requester)
        while True:
            event = await stream.next(30)
            if event.job.id == sub.job.id and event.kind == "done":
                break
    return await engine.get_job(sub.job.id)


async def test_old_delivered_results_are_removed_by_age(make_settings):
    """Results older than RETENTION_DAYS lose their files (a panel job needs no delivery); the row stays."""
    from engine.service import Engine

    async with Engine(make_settings(retention_days=1)) as engine:
        await engine.wait_ready(60)
        job = await _done_job(engine)
        from engine.jobs.retention import run_cleanup

        report = run_cleanup(engine.store, max_age_days=1, max_gb=0, now=time.time() + 2 * 86400)
        after = await engine.get_job(job.id)
    assert report.jobs == 1 and report.files == 2
    assert not Path(job.results[0]).exists() and after.results == ()


async def test_undelivered_discord_results_survive_cleanup(make_settings):
    """A Discord job not yet delivered keeps its files even when far past the age limit."""
    from engine.jobs.retention import run_cleanup
    from engine.service import Engine

    async with Engine(make_settings()) as engine:
        await engine.wait_ready(60)
        job = await _done_job(engine, source="discord")
        report = run_cleanup(engine.store, max_age_days=1, max_gb=0.000001, now=time.time() + 30 * 86400)
    assert report.jobs == 0 and Path(job.results[0]).exists()


async def test_size_limit_removes_the_oldest_first(make_settings):
    """Over RETENTION_MAX_GB, the oldest removable results go first until the rest fits."""
    from engine.jobs.retention import run_cleanup
    from engine.service import Engine

    async with Engine(make_settings()) as engine:
        await engine.wait_ready(60)
        first = await _done_job(engine)
        second = await _done_job(engine)
        one_job = sum(Path(p).stat().st_size for p in first.results) * 2 + 1024
        report = run_cleanup(engine.store, max_age_days=0, max_gb=one_job / 2**30)
    assert report.jobs == 1
    assert not Path(first.results[0]).exists() and Path(second.results[0]).exists()


# --- which files a cleanup removes (store only, no engine) ------------------------------------


def finished_job(store, results: list[str], deliveries: Sequence[str] = ()):
    """A panel job (needs no delivery) recorded done long ago with these paths."""
    from tests.engine.helpers import params

    job = store.insert_job(Requester("u1", source="panel"), params())
    store.set_running([job.id])
    store.set_done(job.id, results, 1.0, deliveries=deliveries, now=1000.0)
    return job


def write(path: Path, size: int) -> str:
    """A file of ``size`` bytes; returns its path as stored on a job."""
    path.write_bytes(b"x" * size)
    return str(path)


def test_cleanup_removes_the_recorded_pngs_and_copies(tmp_path):
    """Both files of each result go, their bytes are counted, and the row forgets them."""
    from engine.jobs.retention import run_cleanup
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        job = finished_job(store, [write(tmp_path / "a.png", 300)], [write(tmp_path / "a.jpg", 50)])
        report = run_cleanup(store, max_age_days=1, max_gb=0, now=10 * 86400)
        after = store.get(job.id)
    finally:
        store.close()
    assert (report.jobs, report.files, report.bytes) == (1, 2, 350)
    assert list(tmp_path.glob("a.*")) == [] and (after.results, after.deliveries) == ((), ())


def test_cleanup_counts_a_png_delivered_as_itself_once(tmp_path):
    """With DELIVERY_FORMAT=png the PNG is also the delivery file: one file, counted once."""
    from engine.jobs.retention import run_cleanup
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        png = write(tmp_path / "a.png", 300)
        finished_job(store, [png], [png])
        report = run_cleanup(store, max_age_days=1, max_gb=0, now=10 * 86400)
    finally:
        store.close()
    assert (report.files, report.bytes) == (1, 300) and not Path(png).exists()


def test_cleanup_of_an_older_row_removes_its_unrecorded_copy(tmp_path):
    """A row saved before copies were recorded loses its PNG and the copy the older code wrote next to it."""
    from engine.jobs.retention import run_cleanup
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        finished_job(store, [write(tmp_path / "a.png", 300)])
        write(tmp_path / "a.webp", 40)
        report = run_cleanup(store, max_age_days=1, max_gb=0, now=10 * 86400)
    finally:
        store.close()
    assert (report.files, report.bytes) == (2, 340) and list(tmp_path.glob("a.*")) == []


async def test_a_members_picture_goes_with_its_jobs_results(make_settings) -> None:
    """Retention removing the results of the only job made from a picture removes the picture too."""
    import io

    from PIL import Image

    from engine.jobs.records import JobRequest, Place, Requester
    from engine.service import Engine
    from tests.engine.helpers import params, wait_final

    async def picture() -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (80, 80), (10, 200, 30)).save(buf, "PNG")
        return buf.getvalue()

    async with Engine(make_settings(retention_days=1)) as engine:
        sub = await engine.request(JobRequest(params(), Requester("u1", source="admin"), Place(), picture=picture))
        job = await wait_final(engine, sub.job.id)
        upload = engine.settings.data_dir / job.params.init_image
        assert upload.is_file()
        store = engine.store
        store._write("UPDATE jobs SET finished_at = finished_at - 3 * 86400 WHERE id = ?", (job.id,))
        report = await engine.cleanup()
        assert report.jobs == 1 and not upload.exists()


def test_retention_reads_only_jobs_that_still_have_results(tmp_path, monkeypatch):
    """Jobs whose results are already gone (most of a year's history) are not read at all, and a walk in pages of
    two still finds every kept job, oldest first (every done job used to be loaded each hour: 66 s and +3.9 GB at a
    million)."""
    from engine.jobs import retention
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        for i in range(6):
            job = finished_job(store, [write(tmp_path / f"gone{i}.png", 10)])
            store.clear_results(job.id)
        kept = [finished_job(store, [write(tmp_path / f"kept{i}.png", 100)]) for i in range(5)]
        monkeypatch.setattr(retention, "PAGE", 2)
        report = retention.run_cleanup(store, max_age_days=0, max_gb=250 / 2**30)
        left = [store.get(j.id) for j in kept]
    finally:
        store.close()
    assert (report.jobs, report.bytes) == (3, 300)  # 500 bytes kept, 250 allowed: the three oldest go
    assert [bool(j.results) for j in left] == [False, False, False, True, True]


def test_the_size_rule_is_linear_in_the_candidates():
    """Choosing by size walks the candidates once with a set of the chosen (a list made it quadratic: 5 s for 64k
    candidates, about 20 minutes for a million): 200 000 candidates, half of them over the limit, are planned in
    one pass and the oldest go first."""
    from pathlib import Path

    from engine.jobs.retention import Candidate, plan_cleanup

    candidates = [Candidate(i, float(i), (Path(f"{i}.png"),), 10, None) for i in range(200_000)]
    chosen = plan_cleanup(candidates, 2_000_000, cutoff=50_000.0, max_bytes=1_000_000)
    assert chosen == list(range(100_000))


def test_the_retention_query_runs_on_the_index_of_kept_results(tmp_path):
    """SQLite's plan for a page of kept jobs searches jobs_kept, the index without the rows whose results are gone
    (left to itself the planner took the index of every finished job)."""
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    seen: list[str] = []
    try:
        store.trace(seen.append)
        store.kept_page(None, 10)
        store.trace(None)
        plan = store._read(f"EXPLAIN QUERY PLAN {seen[-1]}")
    finally:
        store.close()
    assert any("USING INDEX jobs_kept" in row["detail"] for row in plan)


def _kept_jobs(store, tmp_path: Path, count: int, size: int = 1000) -> list[int]:
    """``count`` done panel jobs, each with one result file of ``size`` bytes, finished a second apart."""
    from tests.engine.helpers import params

    ids = []
    for i in range(count):
        job = store.insert_job(Requester("u1", source="panel"), params(f"fox {i}"))
        path = tmp_path / f"r{i}.png"
        path.write_bytes(b"x" * size)
        store.set_running([job.id])
        store.set_done(job.id, [str(path)], 1.0, now=1000.0 + i)
        ids.append(job.id)
    return ids


def test_a_steady_size_sweep_reads_only_what_it_removes(tmp_path):
    """Once every kept result is measured, a sweep with nothing to remove reads one page of kept jobs, however many
    are kept (it stat'ed every kept file, every hour: 82 000 jobs with 30 days kept at a million a year)."""
    from engine.jobs.retention import PAGE, run_cleanup
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        _kept_jobs(store, tmp_path, 2 * PAGE + 100)
        limit_gb = 10 * (2 * PAGE + 100) * 1000 / 2**30
        run_cleanup(store, max_age_days=0, max_gb=limit_gb, now=5000.0)  # measures them all
        seen: list[str] = []
        store.trace(seen.append)
        report = run_cleanup(store, max_age_days=0, max_gb=limit_gb, now=5000.0)
        store.trace(None)
    finally:
        store.close()
    assert report.jobs == 0
    assert sum("INDEXED BY jobs_kept" in q and "LIMIT" in q for q in seen) == 1


def test_the_size_rule_counts_results_measured_in_earlier_sweeps(tmp_path):
    """The bytes measured once are summed later: over the limit, the oldest go until the rest fits."""
    from engine.jobs.retention import run_cleanup
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        ids = _kept_jobs(store, tmp_path, 10)
        assert run_cleanup(store, max_age_days=0, max_gb=1.0, now=5000.0).jobs == 0
        report = run_cleanup(store, max_age_days=0, max_gb=7000 / 2**30, now=5000.0)
        kept = [j for j in ids if store.get(j).results]
    finally:
        store.close()
    assert report.jobs == 3 and kept == ids[3:]


def test_results_that_change_are_measured_again(tmp_path):
    """A job's results swapped after it was measured (the PNG originals replace the delivery copies) count with
    their new size."""
    from engine.jobs.retention import measure
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        [job_id] = _kept_jobs(store, tmp_path, 1, size=100)
        measure(store)
        before = store.kept_bytes()
        job = store.get(job_id)
        bigger = tmp_path / "big.png"
        bigger.write_bytes(b"x" * 5000)
        store.set_results(job_id, [str(bigger)], expected=job.results)
        measure(store)
        after = store.kept_bytes()
    finally:
        store.close()
    assert before == 100 and after >= 5000


def test_results_stored_with_other_spacing_are_measured_once(tmp_path):
    """A row whose results were written with other JSON spacing (older code) is measured, and a sweep does not read
    it again and again."""
    from engine.jobs.retention import measure
    from engine.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    try:
        [job_id] = _kept_jobs(store, tmp_path, 1, size=300)
        path = store.get(job_id).results[0]
        store._write("UPDATE jobs SET results = ? WHERE id = ?", (f'[ "{path}" ]', job_id))
        first, second = measure(store), measure(store)
        total = store.kept_bytes()
    finally:
        store.close()
    assert (first, second) == (1, 0) and total >= 300
