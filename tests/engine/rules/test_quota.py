"""Quotas: the pure rule and price, usage counted in the store, and the engine refusing, giving back,
remembering across restarts, and holding exactly under a burst."""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.engine_settings import EngineSettings
from engine.jobs.records import Job, JobRequest, Place, Refused, Requester
from engine.jobs.store import JobStore
from engine.requests.params import Defaults
from engine.rules.quota import Usage, check, price, windows
from engine.service import Engine
from tests.engine.helpers import GatedLoader, params, wait_final

NOON = float(calendar.timegm((2026, 12, 1, 12, 30, 0)))


def test_windows_are_the_utc_day_and_the_clock_hour() -> None:
    """12:30 UTC lies in the day 00:00–24:00 and the hour 12:00–13:00."""
    w = windows(NOON)
    assert (w.day_start, w.hour_start) == (NOON - 12.5 * 3600, NOON - 1800)
    assert (w.day_end - w.day_start, w.hour_end - w.hour_start) == (86400, 3600)


def test_check_names_the_quota_and_when_it_resets() -> None:
    """Over the member's daily quota: the refusal says how many are used and left, and the reset time."""
    refusal = check(Defaults(quota_member_day=5), Usage(member_day=4), images=2, now=NOON)
    assert refusal is not None and refusal.reason == "quota"
    assert "your daily quota on this server: 4 of 5 images used, 1 left" in refusal.message
    assert refusal.message.endswith("It resets at 00:00 UTC, in 11 h 30 min.")
    assert refusal.resets_at == NOON + 11.5 * 3600


def test_check_lets_through_what_fits_and_ignores_zero_limits() -> None:
    """Exactly up to the limit fits; 0 means no limit."""
    assert check(Defaults(quota_server_hour=3), Usage(server_hour=1), images=2, now=NOON) is None
    assert check(Defaults(), Usage(member_day=10**6), images=4, now=NOON) is None


def test_a_request_costs_its_image_count() -> None:
    """The one price of a request: one image per image it makes."""
    assert [price(params(count=n)) for n in (1, 3)] == [1, 3]


def test_store_counts_member_and_server_usage_in_the_current_windows(tmp_path: Path) -> None:
    """Usage per member and server-wide, today and this hour; other days, servers, DMs and failed jobs do not count."""
    store = JobStore(tmp_path / "jobs.db")
    try:
        for user, guild, created, count in (("a", "g", NOON - 600, 2), ("b", "g", NOON - 2 * 3600, 1),
                                            ("a", "g", NOON - 86400, 1), ("a", "other", NOON, 1), ("a", None, NOON, 1)):
            store.insert_job(Requester(user, guild_id=guild), params(count=count), images=count, now=created)
        failed = store.insert_job(Requester("a", guild_id="g"), params(), now=NOON - 60)
        store.set_failed(failed.id, "boom")
        assert store.usage("g", "a", NOON) == Usage(member_day=2, member_hour=2, server_day=3, server_hour=2)
        assert store.server_usage(NOON) == {"g": (3, 2), "other": (1, 1)}
    finally:
        store.close()


def test_a_refusing_quota_writes_no_row(tmp_path: Path) -> None:
    """The quota check and the insert are one transaction: a refusal leaves the store as it was."""
    store = JobStore(tmp_path / "jobs.db")
    try:
        with pytest.raises(Refused):
            store.insert_job(Requester("a", guild_id="g"), params(),
                             quota=lambda usage: Refused("quota", "no"))
        assert store.recent(states=("queued",)) == []
    finally:
        store.close()


async def test_engine_refuses_over_the_member_daily_quota(engine: Engine) -> None:
    """The member's third image of the day (quota 2) is refused, saying when it resets; others still may."""
    await engine.policy.set_defaults("g1", {"quota_member_day": 2})
    await engine.submit(params(count=2), Requester("u1", guild_id="g1"))
    with pytest.raises(Refused) as info:
        await engine.submit(params(), Requester("u1", guild_id="g1"))
    assert info.value.reason == "quota" and "2 of 2 images used, 0 left" in info.value.message
    assert info.value.resets_at is not None
    await engine.submit(params(), Requester("u2", guild_id="g1"))
    await engine.submit(params(), Requester("u1", guild_id=None))  # DMs have no server quota


async def test_exempt_roles_and_the_operator_skip_quotas(engine: Engine) -> None:
    """A member with an exempt role and the panel's operator jobs are never refused by a quota."""
    await engine.policy.set_defaults("g1", {"quota_server_day": 1, "quota_exempt_roles": "77"})
    await engine.submit(params(), Requester("u1", guild_id="g1"))
    await engine.request(JobRequest(params(), Requester("u2", guild_id="g1"), Place(role_ids=("5", "77"))))
    await engine.submit(params(), Requester("op", guild_id="g1", source="admin"), priority=10)
    with pytest.raises(Refused):
        await engine.request(JobRequest(params(), Requester("u3", guild_id="g1"), Place(role_ids=("5",))))


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
            await again.submit(params(), Requester("u1", guild_id="g1"))


async def test_failed_job_does_not_use_quota(engine: Engine) -> None:
    """A job that fails gives its images back, so the member may try again."""
    await engine.policy.set_defaults("g1", {"quota_member_day": 1})

    def explode(jobs: list[Job]) -> None:
        raise RuntimeError("boom")

    engine.before_batch = explode
    job = (await engine.submit(params(), Requester("u1", guild_id="g1"))).job
    assert (await wait_final(engine, job.id)).state == "failed"
    engine.before_batch = None
    await engine.submit(params(), Requester("u1", guild_id="g1"))


@pytest.mark.parametrize("count", [1, 3])
async def test_a_burst_of_requests_makes_exactly_the_quota(make_engine, count: int) -> None:
    """20 requests at once against a daily quota of 3 images queue exactly 3 images; the rest are refused
    with the time the quota resets (the acknowledgement of each yields to the others, as Discord's does)."""
    eng = await make_engine(loader=GatedLoader(), per_user_cap=100)
    await eng.policy.set_defaults("g1", {"quota_member_day": 3})

    async def acknowledge() -> None:
        await asyncio.sleep(0)

    requests = [eng.request(JobRequest(params(count=count), Requester("u1", guild_id="g1")), acknowledge=acknowledge)
                for _ in range(20)]
    results = await asyncio.gather(*requests, return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Refused)]
    assert sum(s.job.params.count for s in accepted) == 3
    assert len(accepted) + len(refused) == 20
    assert {r.reason for r in refused} == {"quota"} and all(r.resets_at for r in refused)
    assert eng.queue.counts() == (len(accepted), 0)


def test_quota_settings_are_validated() -> None:
    """Negative quotas and non-numeric role ids are refused with the setting's name."""
    from engine.requests.params import Limits, ParamError
    from engine.requests.sizes import parse_size_list
    from engine.rules.policy import validate_overrides

    limits = Limits(parse_size_list("64x64"), 60, 20.0, 4)
    with pytest.raises(ParamError, match="quota_member_day must be from 0"):
        validate_overrides({"quota_member_day": -1}, limits)
    with pytest.raises(ParamError, match="role ids"):
        validate_overrides({"quota_exempt_roles": "moderators"}, limits)
    assert validate_overrides({"quota_exempt_roles": "22, 11,22"}, limits) == {"quota_exempt_roles": ("11", "22")}


async def test_a_refused_picture_leaves_nothing_behind(engine: Engine) -> None:
    """A request from a picture refused by the quota (in the job's own transaction) removes the stored picture."""
    import io

    from PIL import Image

    async def picture() -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (80, 80), (10, 200, 30)).save(buf, "PNG")
        return buf.getvalue()

    await engine.policy.set_defaults("g1", {"quota_member_day": 1})
    await engine.submit(params(), Requester("u1", guild_id="g1"))
    with pytest.raises(Refused):
        await engine.request(JobRequest(params(), Requester("u1", guild_id="g1"), Place(), picture=picture))
    uploads = engine.settings.data_dir / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
