"""Image quotas per server: per member and server-wide, per UTC day and per clock hour.

Counted from the job store, so a restart changes nothing: the ledger is loaded from SQLite on start
(every job of the current UTC day that was not failed or cancelled) and then follows submissions,
failures and cancellations in memory, so the check before the 3-second acknowledgement needs no
disk read. The rule itself (``check``) is a pure function.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from engine.jobs import Job, JobEvent
from engine.params import Defaults

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Usage:
    """Images counted in the current windows, for one member of one server."""

    member_day: int = 0
    member_hour: int = 0
    server_day: int = 0
    server_hour: int = 0


@dataclass(frozen=True)
class Windows:
    """The current UTC day and clock hour, as [start, end) timestamps."""

    day_start: float
    day_end: float
    hour_start: float
    hour_end: float


def windows(now: float) -> Windows:
    """The UTC day and the clock hour that contain ``now``."""
    day_start = float(calendar.timegm(time.gmtime(now)[:3] + (0, 0, 0)))
    hour_start = now - now % HOUR
    return Windows(day_start, day_start + DAY, hour_start, hour_start + HOUR)


def has_quota(defaults: Defaults) -> bool:
    """True when any quota is set (0 means no limit)."""
    return any((defaults.quota_member_day, defaults.quota_member_hour, defaults.quota_server_day,
                defaults.quota_server_hour))


def check(defaults: Defaults, usage: Usage, images: int, now: float) -> str | None:
    """Why ``images`` more images would exceed a quota (with when it resets), or None when they fit."""
    w = windows(now)
    rules = (
        (defaults.quota_member_hour, usage.member_hour, "your hourly quota on this server", w.hour_end),
        (defaults.quota_member_day, usage.member_day, "your daily quota on this server", w.day_end),
        (defaults.quota_server_hour, usage.server_hour, "this server's hourly quota", w.hour_end),
        (defaults.quota_server_day, usage.server_day, "this server's daily quota", w.day_end),
    )
    for limit, used, what, reset in rules:
        if limit and used + images > limit:
            left = max(0, limit - used)
            return (f"This would go over {what}: {used} of {limit} images used, {left} left. It resets at "
                    f"{time.strftime('%H:%M', time.gmtime(reset))} UTC, in {_until(reset - now)}.")
    return None


def _until(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@dataclass(frozen=True)
class _Entry:
    job_id: int
    guild_id: str
    user_id: str
    created_at: float
    images: int


class QuotaLedger:
    """The images counted today per job, in memory; the one owner of quota usage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}
        self._day_start = 0.0  # the UTC day the entries belong to; earlier ones are dropped when it turns

    def load(self, jobs: Iterable[Job]) -> None:
        """Count the jobs the store holds for today (blocking callers pass ``store.quota_jobs``)."""
        for job in jobs:
            self.add(job)

    def add(self, job: Job) -> None:
        """Count a job that was accepted in a server."""
        if job.requester.guild_id is None:
            return
        # the day of the newest job, not the wall clock: jobs arrive in time order and tests may use any date
        day_start = windows(job.created_at).day_start
        with self._lock:
            if day_start > self._day_start:  # a new day: yesterday's jobs never count again
                self._day_start = day_start
                self._entries = {k: e for k, e in self._entries.items() if e.created_at >= day_start}
            if day_start >= self._day_start:
                self._entries[job.id] = _Entry(job.id, job.requester.guild_id, job.requester.user_id,
                                               job.created_at, job.params.count)

    def observe(self, event: JobEvent) -> None:
        """Failed and cancelled jobs give their images back (an event-bus listener)."""
        if event.kind in ("failed", "cancelled"):
            with self._lock:
                self._entries.pop(event.job.id, None)

    def refusal(self, defaults: Defaults, guild_id: str, user_id: str, images: int) -> str | None:
        """Why ``images`` more images for this member would exceed a quota of ``defaults``, else None."""
        if not has_quota(defaults):
            return None
        now = time.time()
        return check(defaults, self.usage(guild_id, user_id, now), images, now)

    def servers(self, now: float | None = None) -> dict[str, tuple[int, int]]:
        """Every server's images today and this hour, for the panel."""
        now = time.time() if now is None else now
        w = windows(now)
        out: dict[str, tuple[int, int]] = {}
        with self._lock:
            entries = [e for e in self._entries.values() if w.day_start <= e.created_at < w.day_end]
        for e in entries:
            day, hour = out.get(e.guild_id, (0, 0))
            out[e.guild_id] = (day + e.images, hour + (e.images if e.created_at >= w.hour_start else 0))
        return out

    def usage(self, guild_id: str, user_id: str, now: float | None = None) -> Usage:
        """Images counted in the current windows for a member and for the whole server."""
        now = time.time() if now is None else now
        w = windows(now)
        with self._lock:
            stale = [k for k, e in self._entries.items() if e.created_at < w.day_start]
            for key in stale:  # yesterday's jobs never count again
                del self._entries[key]
            mine = [e for e in self._entries.values() if e.guild_id == guild_id]
        day = [e for e in mine if e.created_at < w.day_end]
        hour = [e for e in day if e.created_at >= w.hour_start]
        return Usage(member_day=sum(e.images for e in day if e.user_id == user_id),
                     member_hour=sum(e.images for e in hour if e.user_id == user_id),
                     server_day=sum(e.images for e in day), server_hour=sum(e.images for e in hour))
