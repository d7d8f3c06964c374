"""History's prompt search and the retention walk on a large store, before and after. Prints JSON.

A store of ``--jobs`` finished jobs in the project's own schema (rows written through SQLite directly, as many
as a busy bot makes in months), one job in 5 000 with a rare phrase. Measured in the same process:

* ``search``: History's prompt search through ``JobStore.recent`` (the trigram full-text index, migration 0010)
  against the scan it replaced (every row's prompt folded and searched), for a rare phrase and a common word;
* ``retention``: one size-rule pass of ``run_cleanup`` when nearly every row's results are already gone (the
  jobs_kept index: only the rows that still have files are read).

Usage: ``python benchmarks/bench_history.py [--jobs 200000] [--repeat 5] [--out FILE]`` (under a minute for
200 000 jobs on 2 cores, most of it writing the store). Targets (issue "Costs"): a search in milliseconds and a
retention pass under a second at a million jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_engine_cpu import cpu_model, emit  # noqa: E402
from engine.jobs.records import Requester  # noqa: E402
from engine.jobs.retention import run_cleanup  # noqa: E402
from engine.jobs.store import JobStore, _row_to_job  # noqa: E402
from engine.requests.params import GenerationParams  # noqa: E402

OLD_SCAN = ("SELECT * FROM jobs WHERE state IN ('done') AND instr(casefold(json_extract(params, '$.prompt')), ?) > 0 "
            "ORDER BY id DESC LIMIT ?")


def fill(store: JobStore, jobs: int, kept: int, work: Path, *, start: float = 1000.0, step: float = 1.0,
         guild: str | None = None, source: str = "panel") -> None:
    """``jobs`` finished and delivered jobs from 1 000 members, one every ``step`` seconds from ``start``, the newest
    ``kept`` still with a result file on disk; written 50 000 rows per transaction."""
    params = GenerationParams("template", "", 1024, 1024, 25, 9.0, seed=1)
    first = store.insert_job(Requester("u0", source=source, guild_id=guild), params)
    row = dict(store._read("SELECT * FROM jobs WHERE id=?", (first.id,))[0])
    store._write("DELETE FROM jobs WHERE id=?", (first.id,))
    columns = [c for c in row if c != "id"]
    template = json.loads(row["params"])

    def rows(first: int, last: int) -> Any:
        for i in range(first, last):
            params = dict(template, prompt=f"a purple walrus on a bicycle, number {i}" if i % 5000 == 0
                          else f"a red fox number {i} in the snow, oil painting")
            at = start + i * step
            values = dict(row, state="done", user_id=f"u{i % 1000}", params=json.dumps(params), created_at=at,
                          started_at=at, finished_at=at, results="[]", delivered_at=at)
            if i >= jobs - kept:
                path = work / f"r{i}.png"
                path.write_bytes(b"x" * 1000)
                values["results"] = json.dumps([str(path)])
            yield tuple(values[c] for c in columns)

    insert = f"INSERT INTO jobs ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"
    for first_row in range(0, jobs, 50_000):
        with store._writing():
            store._db.execute("BEGIN")
            store._db.executemany(insert, rows(first_row, min(jobs, first_row + 50_000)))
            store._db.execute("COMMIT")


def timed(call: Any, repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls, and the last call's value."""
    times, value = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "bench_history", "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                              "cpu_count": os.cpu_count(), "jobs": args.jobs}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        work = Path(tmp)
        store = JobStore(work / "db.sqlite3")
        started = time.perf_counter()
        fill(store, args.jobs, kept=200, work=work)
        result["fill_s"] = round(time.perf_counter() - started, 1)
        result["search"] = {}
        for label, text in (("rare phrase", "purple walrus"), ("common word", "fox")):
            after_s, found = timed(lambda text=text: store.recent(text=text, limit=60), args.repeat)
            before_s, old = timed(lambda text=text: [_row_to_job(r) for r in store._read(OLD_SCAN, (text, 60))],
                                  args.repeat)
            assert [j.id for j in found] == [j.id for j in old], label
            result["search"][label] = {"matches": len(found), "before_ms": round(before_s * 1000, 2),
                                       "after_ms": round(after_s * 1000, 2),
                                       "speedup": round(before_s / after_s, 1)}
        sweep_s, report = timed(lambda: run_cleanup(store, max_age_days=0, max_gb=150_000 / 2**30), 1)
        result["retention"] = {"kept_rows": 200, "seconds": round(sweep_s, 3), "removed": report.jobs}
        store.close()
    emit(result, args.out)


if __name__ == "__main__":
    main()
