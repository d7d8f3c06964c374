"""The deny list and the moderation log: who may not make images where, until when, and what is written down."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.engine_settings import EngineSettings
from engine.jobs.records import JobRequest, Place, Refused, Requester
from engine.rules.policy import ELSEWHERE, GLOBAL
from engine.service import Engine
from tests.engine.helpers import params


async def test_a_denied_member_is_refused_in_that_server_only(engine: Engine) -> None:
    """A server's entry refuses its member there, with a reason to ask; elsewhere they may go on."""
    await engine.deny_list.deny("g1", "u1", days=0, reason="spam", by_whom="mod (9)")
    with pytest.raises(Refused) as info:
        await engine.submit(params(), Requester("u1", guild_id="g1"))
    assert info.value.reason == "denied" and "ask this server's moderators" in info.value.message
    await engine.submit(params(), Requester("u1", guild_id="g2"))
    await engine.submit(params(), Requester("u2", guild_id="g1"))


async def test_the_operators_entry_holds_everywhere(engine: Engine) -> None:
    """A global entry refuses the member in every server and outside servers too."""
    await engine.deny_list.deny(GLOBAL, "u1", days=1, reason="", by_whom="the operator (panel)")
    for guild in ("g1", None):
        with pytest.raises(Refused, match="until <t:"):
            await engine.request(JobRequest(params(), Requester("u1", guild_id=guild), Place()))


async def test_an_entry_ends_when_it_expires(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-day entry no longer holds the day after."""
    import time

    await engine.deny_list.deny("g1", "u1", days=1, reason="", by_whom="mod")
    later = time.time() + 86400 + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert engine.deny_list.denial("u1", "g1") is None


async def test_entries_survive_a_restart(make_settings: Callable[..., EngineSettings]) -> None:
    """The deny list is kept in the store."""
    settings = make_settings()
    async with Engine(settings) as first:
        await first.deny_list.deny(ELSEWHERE, "u1", days=0, reason="", by_whom="op")
    async with Engine(settings) as again:
        assert again.deny_list.denial("u1", ELSEWHERE) is not None


async def test_refused_prompts_and_changes_are_logged(engine: Engine) -> None:
    """The moderation log has a refused prompt (with who asked) and each change with who made it."""
    await engine.policy.set_blocklist("g1", ["dragon"], actor="mod (9)")
    await engine.policy.set_defaults("g1", {"steps": 3}, actor="mod (9)")
    with pytest.raises(Refused):
        await engine.submit(params("a red dragon"), Requester("u1", user_name="ann", guild_id="g1"))
    await engine.deny_list.deny("g1", "u2", days=2, reason="flooding", by_whom="mod (9)")
    import asyncio
    for _ in range(50):  # a refusal's line is written just after the answer
        lines = await engine.audit.lines(scope="g1")
        if any(line.kind == "refused" for line in lines):
            break
        await asyncio.sleep(0.02)
    kinds = [(line.kind, line.actor) for line in reversed(lines)]
    assert kinds == [("blocklist", "mod (9)"), ("settings", "mod (9)"), ("refused", "ann (u1)"), ("deny", "mod (9)")]
    assert "blocked: a red dragon" in lines[1].detail and "flooding" in lines[0].detail


async def test_the_log_is_bounded(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past AUDIT_MAX_LINES the oldest lines go."""
    from engine.rules import audit

    monkeypatch.setattr(audit, "AUDIT_MAX_LINES", 5)
    monkeypatch.setattr(audit, "PRUNE_EVERY", 1)
    for n in range(12):
        await engine.audit.record("g1", "op", "settings", f"change {n}")
    lines = await engine.audit.lines(limit=100)
    assert [line.detail for line in lines] == [f"change {n}" for n in range(11, 6, -1)]
