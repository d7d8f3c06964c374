"""Image quotas per server: per member and server-wide, per UTC day and per clock hour.

Counted from the job store, in the same SQLite transaction that writes the job row (engine/rules/admission.py,
``JobStore.insert_job``): a burst of requests cannot all pass the check before any of them is counted,
and a restart changes nothing. Failed and cancelled jobs do not count. ``price`` is what a request
costs; ``check`` is the rule, a pure function.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from engine.jobs.records import Refused
from engine.requests.checks import Phrase
from engine.requests.params import Defaults, GenerationParams

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


def price(params: GenerationParams) -> int:
    """How many images a request counts against quotas: the one price of a request."""
    return max(1, params.count)


def check(defaults: Defaults, usage: Usage, images: int, now: float, where: str = "on this server") -> Refused | None:
    """Why ``images`` more images would exceed a quota (with when it resets), or None when they fit; ``where``
    names the place the member's quota covers."""
    w = windows(now)
    rules = (
        # "your hourly quota on this server", "... outside servers (in DMs and group DMs)": whole phrases to translate
        (defaults.quota_member_hour, usage.member_hour, Phrase(f"your hourly quota {where}"), w.hour_end),
        (defaults.quota_member_day, usage.member_day, Phrase(f"your daily quota {where}"), w.day_end),
        (defaults.quota_server_hour, usage.server_hour, Phrase("this server's hourly quota"), w.hour_end),
        (defaults.quota_server_day, usage.server_day, Phrase("this server's daily quota"), w.day_end),
    )
    for limit, used, what, reset in rules:
        if limit and used + images > limit:
            left = max(0, limit - used)
            return Refused("quota", "This would go over {what}: {used} of {limit} images used, {left} left. It "
                                    "resets at {at} UTC, in {wait}.", resets_at=reset, what=what, used=used,
                           limit=limit, left=left, at=time.strftime("%H:%M", time.gmtime(reset)),
                           wait=_until(reset - now))
    return None


def _until(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
