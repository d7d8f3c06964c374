"""The SQLite job store: jobs, operator defaults, blocklists, styles. The source of truth.

Its queries; the file itself (opening, migrations, locking) is engine/jobs/database.py. The class is
synchronous and thread-safe; async callers reach it through ``asyncio.to_thread`` so the event loop
never waits on the disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.jobs.database import Database, StoreError, fold
from engine.jobs.records import Job, Requester
from engine.requests.params import GenerationParams
from engine.rules.quota import Usage, windows

# sees a requester's quota usage inside the insert's transaction; returns a refusal (raised) or None
QuotaGuard = Callable[[Usage], Exception | None]


class JobStore(Database):
    """Jobs, defaults, blocklists, styles and small values in one SQLite file."""

    # --- jobs -----------------------------------------------------------------------------

    def insert_job(self, requester: Requester, params: GenerationParams, *, priority: int = 0, images: int = 1,
                   quota: QuotaGuard | None = None, now: float | None = None) -> Job:
        """Persist a new queued job (before anyone is told it was accepted).

        ``images`` is what the job counts against quotas (engine/rules/quota.py ``price``). ``quota``, when given,
        sees the requester's usage of the current windows in the same transaction as the insert and returns
        a refusal or None: counting and writing are one step, so requests at the same moment cannot all
        pass before one is counted. A refusal is raised with nothing written.
        """
        now = time.time() if now is None else now
        with self._writing():
            self._write("BEGIN IMMEDIATE")
            try:
                if quota is not None:
                    refusal = quota(self.usage(requester.guild_id, requester.user_id, now))
                    if refusal is not None:
                        raise refusal
                cur = self._write(
                    "INSERT INTO jobs (state, priority, source, user_id, user_name, guild_id, channel_id, delivery,"
                    " params, images, created_at) VALUES ('queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (priority, requester.source, requester.user_id, requester.user_name, requester.guild_id,
                     requester.channel_id, json.dumps(requester.delivery), json.dumps(params.to_dict()), images,
                     now),
                )
                self._write("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            job = self.get(int(cur.lastrowid or 0))
        assert job is not None
        return job

    def usage(self, guild_id: str | None, user_id: str, now: float) -> Usage:
        """Images counted in the current UTC day and clock hour for a member and their whole server
        (jobs not failed or cancelled; one read of the quota index)."""
        w = windows(now)
        row = self._read(
            "SELECT COALESCE(SUM(CASE WHEN user_id = ? THEN images END), 0) AS member_day,"
            " COALESCE(SUM(CASE WHEN user_id = ? AND created_at >= ? THEN images END), 0) AS member_hour,"
            " COALESCE(SUM(images), 0) AS server_day,"
            " COALESCE(SUM(CASE WHEN created_at >= ? THEN images END), 0) AS server_hour"
            " FROM jobs INDEXED BY jobs_quota WHERE guild_id IS ? AND created_at >= ? AND created_at < ?"
            " AND state NOT IN ('failed', 'cancelled')",
            (user_id, user_id, w.hour_start, w.hour_start, guild_id, w.day_start, w.day_end))[0]
        return Usage(member_day=row["member_day"], member_hour=row["member_hour"], server_day=row["server_day"],
                     server_hour=row["server_hour"])

    def server_usage(self, now: float) -> dict[str, tuple[int, int]]:
        """Every server's images today and this hour (for the panel's Quotas tab)."""
        w = windows(now)
        rows = self._read(
            "SELECT guild_id, SUM(images) AS day, COALESCE(SUM(CASE WHEN created_at >= ? THEN images END), 0) AS hour"
            " FROM jobs WHERE guild_id IS NOT NULL AND created_at >= ? AND created_at < ?"
            " AND state NOT IN ('failed', 'cancelled') GROUP BY guild_id", (w.hour_start, w.day_start, w.day_end))
        return {r["guild_id"]: (int(r["day"]), int(r["hour"])) for r in rows}

    def get(self, job_id: int) -> Job | None:
        """One job by id."""
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row_to_job(rows[0]) if rows else None

    def in_states(self, states: Iterable[str]) -> list[Job]:
        """Jobs in any of ``states``, oldest first."""
        states = list(states)
        marks = ",".join("?" * len(states))
        return [_row_to_job(r) for r in self._read(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", states)]

    def kept_page(self, after: tuple[float, int] | None, limit: int) -> list[tuple[Job, int | None]]:
        """Done jobs that still have result files, oldest finished first, after (finished_at, id) ``after``, each with
        its results' measured bytes (None until measured): a page of what retention looks at (the jobs_kept index
        holds these rows only)."""
        start = after or (-1.0, 0)
        return [(_row_to_job(r), r["result_bytes"]) for r in self._read(
            # named: the planner would take jobs_finished, which also holds every row whose results are gone
            "SELECT * FROM jobs INDEXED BY jobs_kept WHERE state = 'done' AND results != '[]' "
            "AND (finished_at, id) > (?, ?) ORDER BY finished_at, id LIMIT ?", (*start, limit))]

    def kept_bytes(self) -> int:
        """The measured bytes of every kept result, summed from the jobs_kept index."""
        return int(self._read("SELECT COALESCE(SUM(result_bytes), 0) FROM jobs INDEXED BY jobs_kept "
                              "WHERE state = 'done' AND results != '[]'")[0][0])

    def unmeasured(self, after: int, limit: int) -> list[Job]:
        """Up to ``limit`` done jobs after id ``after`` with result files whose bytes are not measured yet (new since
        the last sweep)."""
        return [_row_to_job(r) for r in self._read(
            "SELECT * FROM jobs INDEXED BY jobs_unmeasured WHERE state = 'done' AND results != '[]' "
            "AND result_bytes IS NULL AND id > ? ORDER BY id LIMIT ?", (after, limit))]

    def set_result_bytes(self, sizes: Sequence[tuple[Job, int]]) -> None:
        """Record each (job, bytes its results occupy) in one transaction; a job whose results changed since it was
        read stays unmeasured."""
        rows = [(size, job.id, json.dumps(list(job.results))) for job, size in sizes]
        with self._writing():
            self._write("BEGIN IMMEDIATE")
            try:
                # json() on both sides: rows written with other spacing still match their own results
                self._db.executemany("UPDATE jobs SET result_bytes = ? WHERE id = ? AND json(results) = json(?)", rows)
                self._write("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def set_running(self, job_ids: Sequence[int], now: float | None = None) -> None:
        """Mark jobs running (one more attempt each)."""
        with self._writing():
            for job_id in job_ids:
                self._write("UPDATE jobs SET state='running', started_at=?, attempts=attempts+1 "
                            "WHERE id=? AND state='queued'", (now or time.time(), job_id))

    def set_done(self, job_id: int, results: Sequence[str], gen_seconds: float, *, deliveries: Sequence[str] = (),
                 safety: Sequence[float] = (), now: float | None = None) -> bool:
        """Record a finished job: its PNG ``results`` and, in the same order, the file to deliver for each and
        its NSFW score (engine/gpu/safety.py; none when no classifier checked them).

        False if it was cancelled meanwhile (its results are then dropped).
        """
        for name, values in (("delivery paths", deliveries), ("safety scores", safety)):
            if values and len(values) != len(results):
                raise ValueError(f"{len(values)} {name} for {len(results)} results; give one per result")
        cur = self._write(
            "UPDATE jobs SET state='done', results=?, deliveries=?, safety=?, gen_seconds=?, finished_at=?, "
            "error=NULL, result_bytes=NULL WHERE id=? AND state='running'",
            (json.dumps(list(results)), json.dumps(list(deliveries)), json.dumps(list(safety)), gen_seconds,
             now or time.time(), job_id))
        return cur.rowcount == 1

    def set_failed(self, job_id: int, error: str, now: float | None = None) -> bool:
        """Record a failure with a user-facing error text."""
        cur = self._write("UPDATE jobs SET state='failed', error=?, finished_at=? "
                          "WHERE id=? AND state IN ('queued','running')", (error, now or time.time(), job_id))
        return cur.rowcount == 1

    def set_cancelled(self, job_id: int, now: float | None = None) -> bool:
        """Cancel a queued or running job; False if it already finished."""
        cur = self._write("UPDATE jobs SET state='cancelled', finished_at=? WHERE id=? AND state IN "
                          "('queued','running')", (now or time.time(), job_id))
        return cur.rowcount == 1

    def requeue_running(self) -> list[int]:
        """After a crash: every job left running goes back to the queue. Returns their ids."""
        with self._writing():
            ids = [r["id"] for r in self._read("SELECT id FROM jobs WHERE state='running'")]
            self._write("UPDATE jobs SET state='queued', started_at=NULL WHERE state='running'")
        return ids

    def set_delivered(self, job_id: int, now: float | None = None) -> None:
        """Mark a finished job's result as accepted by its front door."""
        self._write("UPDATE jobs SET delivered_at=? WHERE id=?", (now or time.time(), job_id))

    def undelivered(self, source: str) -> list[Job]:
        """Finished jobs from ``source`` whose result has not been delivered yet, oldest first."""
        return [_row_to_job(r) for r in self._read(
            "SELECT * FROM jobs WHERE source=? AND state IN ('done','failed') AND delivered_at IS NULL ORDER BY id",
            (source,))]

    def recent(self, *, limit: int = 50, user: str | None = None, guild: str | None = None,
               text: str | None = None, states: Sequence[str] = ("done",), owner: str | None = None,
               before: int | None = None) -> list[Job]:
        """Recent jobs, newest first, filtered by user (id, or part of the name), guild and prompt text; ``owner``:
        only this user id's; ``before``: only ids below it (the next page).

        ``text`` and the user name match anywhere in the prompt / name, ignoring case in any script;
        ``%`` and ``_`` are plain characters. Only the prompt is searched, not the other parameters stored
        beside it: three characters or more through the trigram index, in milliseconds at a million jobs.
        """
        where = [f"state IN ({','.join('?' * len(states))})"]
        args: list[Any] = list(states)
        if user:
            where.append("(user_id = ? OR instr(casefold(user_name), ?) > 0)")
            args += [user, fold(user)]
        folded = fold(text) or ""
        # in the trigram search the ids are the index's rows: bounded there, the walk starts below ``before``
        below = "jobs_text.rowid < ?" if len(folded) >= 3 else "id < ?"
        for column, value in (("guild_id = ?", guild or None), ("user_id = ?", owner), (below, before)):
            if value is not None:
                where.append(column)
                args.append(value)
        if len(folded) >= 3:
            # the trigram index (migration 0010) finds any substring of three or more, walked newest first so
            # the LIMIT stops it early: a rare phrase and a word in every prompt both take well under a millisecond
            args = ['"' + folded.replace('"', '""') + '"', *args, limit]
            return [_row_to_job(r) for r in self._read(
                f"SELECT jobs.* FROM jobs_text JOIN jobs ON jobs.id = jobs_text.rowid WHERE jobs_text MATCH ? "
                f"AND {' AND '.join(where)} ORDER BY jobs_text.rowid DESC LIMIT ?", args)]
        if folded:  # one or two characters: no trigram to look up; json_extract decodes the stored \u escapes
            where.append("instr(casefold(json_extract(params, '$.prompt')), ?) > 0")
            args.append(folded)
        args.append(limit)
        return [_row_to_job(r) for r in self._read(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", args)]

    def uses_upload(self, upload: str) -> bool:
        """Whether any job that still has (or will have) results starts from the member's picture ``upload``
        (engine/media/sources.py): a job whose results retention removed no longer needs it."""
        return bool(self._read("SELECT 1 FROM jobs WHERE json_extract(params, '$.init_image') = ? AND "
                               "json_extract(params, '$.init_image') IS NOT NULL AND "
                               "(results != '[]' OR state IN ('queued', 'running')) LIMIT 1", (upload,)))

    def delete_job(self, job_id: int) -> Job | None:
        """Remove a job row and return it (the caller removes its files)."""
        job = self.get(job_id)
        if job is not None:
            self._write("DELETE FROM jobs WHERE id=?", (job_id,))
        return job

    def set_results(self, job_id: int, results: Sequence[str], *, expected: Sequence[str]) -> bool:
        """Swap a done job's result paths from ``expected`` to ``results`` (engine/media/saving.py: the PNG originals,
        written after the delivery copies). False when the job was deleted or its results changed meanwhile."""
        cur = self._write("UPDATE jobs SET results=?, result_bytes=NULL WHERE id=? AND state='done' AND results=?",
                          (json.dumps(list(results)), job_id, json.dumps(list(expected))))
        return cur.rowcount == 1

    def clear_results(self, job_id: int) -> None:
        """Forget a job's result files and their delivery copies (retention removed them)."""
        self._write("UPDATE jobs SET results='[]', deliveries='[]', result_bytes=NULL WHERE id=?", (job_id,))

    def stats(self, since: float) -> dict[str, float]:
        """Counts and mean generation time for jobs finished since ``since``."""
        rows = self._read(
            "SELECT COUNT(*) AS n, SUM(gen_seconds) AS secs, SUM(json_extract(params,'$.count')) AS images "
            "FROM jobs WHERE state='done' AND finished_at >= ?", (since,))
        row = rows[0]
        images = float(row["images"] or 0)
        return {"jobs": float(row["n"] or 0), "images": images,
                "seconds_per_image": float(row["secs"] or 0) / images if images else 0.0}

    def finished_times(self, since: float) -> list[float]:
        """Finish times of jobs done since ``since``, oldest first."""
        return [r["finished_at"] for r in self._read(
            "SELECT finished_at FROM jobs WHERE state='done' AND finished_at >= ? ORDER BY finished_at", (since,))]

    # --- defaults, blocklists, kv -----------------------------------------------------------

    def get_overrides(self, scope: str) -> dict[str, Any]:
        """The overridden default fields for ``scope`` ('global' or a guild id)."""
        rows = self._read("SELECT data FROM defaults WHERE scope=?", (scope,))
        return json.loads(rows[0]["data"]) if rows else {}

    def set_overrides(self, scope: str, data: dict[str, Any]) -> None:
        """Replace the overrides of ``scope``; an empty dict removes them."""
        if data:
            self._write("INSERT INTO defaults (scope, data, updated_at) VALUES (?, ?, ?) ON CONFLICT(scope) "
                        "DO UPDATE SET data=excluded.data, updated_at=excluded.updated_at",
                        (scope, json.dumps(data), time.time()))
        else:
            self._write("DELETE FROM defaults WHERE scope=?", (scope,))

    def get_prefs(self, user_id: str) -> dict[str, Any]:
        """A member's own defaults (/prefer); empty when they set none."""
        rows = self._read("SELECT data FROM member_prefs WHERE user_id=?", (user_id,))
        return json.loads(rows[0]["data"]) if rows else {}

    def set_prefs(self, user_id: str, data: dict[str, Any]) -> None:
        """Replace a member's own defaults; an empty dict removes them."""
        if data:
            self._write("INSERT INTO member_prefs (user_id, data, updated_at) VALUES (?, ?, ?) ON CONFLICT(user_id) "
                        "DO UPDATE SET data=excluded.data, updated_at=excluded.updated_at",
                        (user_id, json.dumps(data), time.time()))
        else:
            self._write("DELETE FROM member_prefs WHERE user_id=?", (user_id,))

    def override_scopes(self) -> list[str]:
        """Every scope with overrides."""
        return [r["scope"] for r in self._read("SELECT scope FROM defaults ORDER BY scope")]

    def all_blocklists(self) -> dict[str, list[str]]:
        """Every scope's blocked words."""
        lists: dict[str, list[str]] = {}
        for row in self._read("SELECT scope, word FROM blocklist ORDER BY scope, word"):
            lists.setdefault(row["scope"], []).append(row["word"])
        return lists

    def set_blocklist(self, scope: str, words: Iterable[str]) -> None:
        """Replace the blocked words of ``scope``."""
        with self._writing():
            self._write("BEGIN IMMEDIATE")
            try:
                self._write("DELETE FROM blocklist WHERE scope=?", (scope,))
                for word in sorted(set(words)):
                    self._write("INSERT INTO blocklist (scope, word) VALUES (?, ?)", (scope, word))
                self._write("COMMIT")
            except Exception:
                self._write("ROLLBACK")
                raise

    def styles(self) -> list[dict[str, Any]]:
        """Every style preset (engine/requests/styles.py), by name."""
        return [dict(r) for r in self._read("SELECT name, template, negative, guidance, steps FROM styles "
                                            "ORDER BY name")]

    def set_style(self, name: str, row: tuple[str, str, float | None, int | None] | None) -> bool:
        """Create or replace a style preset (``row``: template, negative, guidance, steps); None removes it."""
        if row is None:
            return self._write("DELETE FROM styles WHERE name=?", (name,)).rowcount == 1
        self._write("INSERT OR REPLACE INTO styles (name, template, negative, guidance, steps, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (name, *row, time.time()))
        return True

    def kv_get(self, key: str) -> str | None:
        """A stored small value."""
        rows = self._read("SELECT value FROM kv WHERE key=?", (key,))
        return rows[0]["value"] if rows else None

    def kv_set(self, key: str, value: str) -> None:
        """Store a small value."""
        self._write("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, value))

    # --- the deny list and the moderation log (engine/rules/deny.py and audit.py decide) ---------------

    def denied(self) -> list[dict[str, Any]]:
        """Every deny entry (scope, user_id, until, reason, by_whom, at)."""
        return [dict(r) for r in self._read("SELECT * FROM denied ORDER BY at")]

    def set_denied(self, scope: str, user_id: str, until: float | None, reason: str, by_whom: str, at: float) -> None:
        """Deny a member in a scope (replacing an earlier entry)."""
        self._write("INSERT OR REPLACE INTO denied (scope, user_id, until, reason, by_whom, at) VALUES "
                    "(?, ?, ?, ?, ?, ?)", (scope, user_id, until, reason, by_whom, at))

    def remove_denied(self, scope: str, user_id: str) -> bool:
        """Lift a deny entry; False when there was none."""
        return self._write("DELETE FROM denied WHERE scope=? AND user_id=?", (scope, user_id)).rowcount == 1

    def add_audit(self, at: float, scope: str, actor: str, kind: str, detail: str) -> None:
        """One line of the moderation log."""
        self._write("INSERT INTO audit (at, scope, actor, kind, detail) VALUES (?, ?, ?, ?, ?)",
                    (at, scope, actor, kind, detail))

    def audit(self, limit: int, scope: str | None = None) -> list[dict[str, Any]]:
        """The newest lines of the moderation log, of one scope or of all."""
        where, args = ("WHERE scope = ?", [scope]) if scope else ("", [])
        return [dict(r) for r in self._read(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", [*args, limit])]

    def prune_audit(self, before: float, keep: int) -> int:
        """Drop log lines older than ``before`` and all but the newest ``keep``; how many went."""
        old = self._write("DELETE FROM audit WHERE at < ?", (before,)).rowcount
        extra = self._write("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?", (keep,)).rowcount
        return old + extra


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        state=row["state"],
        priority=row["priority"],
        requester=Requester(user_id=row["user_id"], user_name=row["user_name"], guild_id=row["guild_id"],
                            channel_id=row["channel_id"], source=row["source"],
                            delivery=json.loads(row["delivery"] or "{}")),
        params=GenerationParams.from_dict(json.loads(row["params"])),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        gen_seconds=row["gen_seconds"],
        results=tuple(json.loads(row["results"] or "[]")),
        deliveries=tuple(json.loads(row["deliveries"] or "[]")),
        safety=tuple(json.loads(row["safety"] or "[]")),
        error=row["error"],
        attempts=row["attempts"],
        delivered_at=row["delivered_at"],
    )


__all__ = ["JobStore", "QuotaGuard", "StoreError"]
