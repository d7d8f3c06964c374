"""The operator's limits are ceilings: the pure rule, and the Policy applying it to a server's values."""

from __future__ import annotations

from engine.requests.params import Defaults
from engine.rules.ceilings import within
from engine.service import Engine

OPERATOR = Defaults(per_user_cap=4, max_steps=30, max_count=2, quota_member_day=10)


def test_a_server_cannot_raise_the_per_member_cap_or_the_request_limits() -> None:
    """per_user_cap 1000, max_steps 60 and max_count 4 give way to the operator's 4, 30 and 2, each with a note."""
    capped, notes = within(OPERATOR, Defaults(per_user_cap=1000, max_steps=60, max_count=4, quota_member_day=10))
    assert (capped.per_user_cap, capped.max_steps, capped.max_count) == (4, 30, 2)
    assert str(notes[0]) == "per_user_cap 1000 is above the operator's 4, so 4 applies" and len(notes) == 3


def test_a_server_may_lower_the_limits() -> None:
    """Values below the operator's apply as they are, with no note."""
    server = Defaults(steps=10, per_user_cap=2, max_steps=20, max_count=1, quota_member_day=5)
    assert within(OPERATOR, server) == (server, ())


def test_a_server_quota_of_zero_means_none_only_where_the_operator_set_none() -> None:
    """The operator's quota of 10 holds against a server's 0 (no limit) and 50; with none set, 0 and 50 stand."""
    for asked in (0, 50):
        capped, notes = within(OPERATOR, Defaults(per_user_cap=4, max_steps=30, max_count=2, quota_member_day=asked))
        assert capped.quota_member_day == 10 and "quota_member_day" in str(notes[0])
    assert within(Defaults(), Defaults(quota_server_day=50))[0].quota_server_day == 50


def test_defaults_follow_a_lowered_limit() -> None:
    """A server's default steps above the ceiling that now applies come down with it, so requests still work."""
    capped, _ = within(OPERATOR, Defaults(steps=50, max_steps=60, count=4, max_count=4))
    assert (capped.steps, capped.count) == (30, 2)


async def test_the_policy_applies_the_operators_ceilings_to_servers(engine: Engine) -> None:
    """A moderator's per_user_cap 1000 and quota 0 stay stored, but the operator's 4 and 10 are what apply."""
    await engine.policy.set_defaults("global", {"per_user_cap": 4, "quota_member_day": 10})
    await engine.policy.set_defaults("g1", {"per_user_cap": 1000, "quota_member_day": 0})
    effective = engine.policy.defaults("g1")
    assert (effective.per_user_cap, effective.quota_member_day) == (4, 10)
    assert len(engine.policy.capped("g1")) == 2


def test_a_servers_models_and_loras_stay_within_the_operators_lists() -> None:
    """The operator allows base and other: a server's other stays; its third (not in the list) gives way; a server
    that lists none gets the operator's list. Without an operator's list the server's stands."""
    operator = Defaults(models_allowed=("base", "other"))
    assert within(operator, Defaults(models_allowed=("other",)))[0].models_allowed == ("other",)
    capped, notes = within(operator, Defaults(models_allowed=("other", "third")))
    assert capped.models_allowed == ("other",) and "third is beyond the operator's list" in str(notes[0])
    assert within(operator, Defaults())[0].models_allowed == ("base", "other")
    assert within(Defaults(), Defaults(loras_allowed=("ink",)))[0].loras_allowed == ("ink",)
