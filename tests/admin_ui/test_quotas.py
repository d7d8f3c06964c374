"""Quotas tab through gradio_client: saving a server's quotas, validation, and today's usage."""

from __future__ import annotations

import pytest

from engine.jobs.records import Refused, Requester
from engine.rules.policy import GLOBAL
from tests.admin_ui.support import run_job
from tests.engine.helpers import params


async def test_saved_server_quota_refuses_the_next_request(call, engine):
    """A member quota saved for a server applies to the very next request from it."""
    message, _usage = await call("/save_quotas", "111", 1, 0, 0, 0, "")
    assert "Saved quotas for" in message
    assert engine.policy.overrides("111") == {"quota_member_day": 1}
    await run_job(engine, "a fox", user_id="u1", guild_id="111")
    with pytest.raises(Refused) as info:
        await engine.submit(params(), Requester("u1", guild_id="111"))
    assert "daily quota" in info.value.message


async def test_bad_role_ids_are_refused_inline(call, engine):
    """Exempt roles must be ids: the tab says so and stores nothing."""
    message, _usage = await call("/save_quotas", GLOBAL, 0, 0, 0, 0, "moderators")
    assert "Not saved" in message and "role ids" in message
    assert engine.policy.overrides(GLOBAL) == {}


async def test_usage_shows_each_servers_images_today(call, engine):
    """After a job in a server, the usage table shows that server's count against its limit."""
    await engine.policy.set_defaults("111", {"quota_server_day": 10})
    await run_job(engine, "a fox", user_id="u1", guild_id="111", count=2)
    *_form, _message, usage = await call("/load_quotas", "111")
    assert "2 of 10" in usage and "resets at" in usage
