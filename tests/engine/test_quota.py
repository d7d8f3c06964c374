"""Quotas: the pure rule, the ledger, and the engine refusing, giving back and remembering across restarts."""

from __future__ import annotations

import calendar
from collections.abc import Callable

import pytest

from engine.jobs import Job, JobEvent, Refused, Requester
from engine.params import Defaults
from engine.quota import QuotaLedger, Usage, check, windows
from engine.service import Engine
from engine.settings import EngineSettings
from tests.engine.helpers import params, wait_final

NOON = float(calendar.timegm((2026, 12, 1, 12, 30, 0)))


def test_windows_are_the_utc_day_and_the_clock_hour() -> None:
    """12:30 UTC lies in the day 00:00–24:00 and the hour 12:00–13:00."""
    w = windows(NOON)
    assert (w.day_start, w.hour_start) == (NOON - 12.5 * 3600, NOON - 1800)
    assert (w.day_end - w.day_start, w.hour_end - w.hour_start) == (86400, 3600)


def test_check_names_the_quota_and_when_it_resets() -> None:
    """Over the member's daily quota: the refusal says how many are used and left, and the reset time."""
    refusal = check(Defaults(quota_member_day=5), Usage(member_day=4), images=2, now=NOON)
    assert refusal is not None and "your daily quota on this server: 4 of 5 images used, 1 left" in refusal
    assert refusal.endswith("It resets at 00:00 UTC, in 11 h 30 min.")


def test_check_lets_through_what_fits_and_ignores_zero_limits() -> None:
    """Exactly up to the limit fits; 0 means no limit."""
    assert check(Defaults(quota_server_hour=3), Usage(server_hour=1), images=2, now=NOON) is None
    assert check(Defaults(), Usage(member_day=10**6), images=4, now=NOON) is None


def _job(job_id: int, user: str, guild: str | None, created: float, count: int = 1) -> Job:
    return Job(id=job_id, state="queued", priority=0, requester=Requester(user_id=user, guild_id=guild),
               params=params(count=count), created_at=created)


def test_ledger_counts_member_and_server_and_forgets_yesterday() -> None:
    """Usage per member and server-wide in the current windows; earlier days do not count."""
    ledger = QuotaLedger()
    ledger.load([_job(1, "a", "g", NOON - 600, 2), _job(2, "b", "g", NOON - 2 * 3600), _job(3, "a", "g", NOON - 86400),
                 _job(4, "a", "other", NOON), _job(5, "a", None, NOON)])
    assert ledger.usage("g", "a", NOON) == Usage(member_day=2, member_hour=2, server_day=3, server_hour=2)


def test_failed_and_cancelled_jobs_give_their_images_back() -> None:
    """The ledger listens to the event bus: a failed job no longer counts."""
    ledger = QuotaLedger()
    job = _job(1, "a", "g", NOON, 3)
    ledger.add(job)
    ledger.observe(JobEvent("failed", job))
    assert ledger.usage("g", "a", NOON) == Usage()


async def test_engine_refuses_over_the_member_daily_quota(engine: Engine) -> None:
    """The member's third image of the day (quota 2) is refused, saying when it resets; others still may."""
    await engine.policy.set_defaults("g1", {"quota_member_day": 2})
    await engine.submit(params(count=2), Requester("u1", guild_id="g1"))
    with pytest.raises(Refused) as info:
        engine.admit(Requester("u1", guild_id="g1"))
    assert info.value.reason == "quota" and "2 of 2 images used, 0 left" in info.value.message
    engine.admit(Requester("u2", guild_id="g1")).release()
    engine.admit(Requester("u1", guild_id=None)).release()  # DMs have no server quota


async def test_exempt_requests_and_the_operator_skip_quotas(engine: Engine) -> None:
    """An exempt role's member and the panel's operator jobs are never refused by a quota."""
    await engine.policy.set_defaults("g1", {"quota_server_day": 1})
    await engine.submit(params(), Requester("u1", guild_id="g1"))
    engine.admit(Requester("u2", guild_id="g1"), quota_exempt=True).release()
    await engine.submit(params(), Requester("op", guild_id="g1", source="panel"), priority=10)


async def test_quota_usage_survives_a_restart(make_settings: Callable[..., EngineSettings]) -> None:
    """Counted in SQLite: after a restart the same member is still at the limit."""
    settings = make_settings()
    first = Engine(settings)
    await first.start()
    await first.policy.set_defaults("g1", {"quota_member_day": 1})
    job = (await first.submit(params(), Requester("u1", guild_id="g1"))).job
    await wait_final(first, job.id)
    await first.stop()
    async with Engine(settings) as again:
        with pytest.raises(Refused):
            again.admit(Requester("u1", guild_id="g1"))


async def test_failed_job_does_not_use_quota(engine: Engine) -> None:
    """A job that fails gives its images back, so the member may try again."""
    await engine.policy.set_defaults("g1", {"quota_member_day": 1})

    def explode(jobs: list[Job]) -> None:
        raise RuntimeError("boom")

    engine.before_batch = explode
    job = (await engine.submit(params(), Requester("u1", guild_id="g1"))).job
    assert (await wait_final(engine, job.id)).state == "failed"
    engine.admit(Requester("u1", guild_id="g1")).release()


def test_quota_settings_are_validated() -> None:
    """Negative quotas and non-numeric role ids are refused with the setting's name."""
    from engine.params import Limits, ParamError
    from engine.policy import validate_overrides
    from engine.sizes import parse_size_list

    limits = Limits(parse_size_list("64x64"), 60, 20.0, 4)
    with pytest.raises(ParamError, match="quota_member_day must be from 0"):
        validate_overrides({"quota_member_day": -1}, limits)
    with pytest.raises(ParamError, match="role ids"):
        validate_overrides({"quota_exempt_roles": "moderators"}, limits)
    assert validate_overrides({"quota_exempt_roles": "22, 11,22"}, limits) == {"quota_exempt_roles": ("11", "22")}


def test_ledger_keeps_only_the_newest_days_jobs_even_without_quotas() -> None:
    """Memory stays bounded: a job of a new day drops the entries of earlier days; an older job is not kept."""
    ledger = QuotaLedger()
    ledger.add(_job(1, "a", "g", NOON - 3 * 86400))
    ledger.add(_job(2, "a", "g", NOON))
    ledger.add(_job(3, "a", "g", NOON - 86400))
    assert list(ledger._entries) == [2]
