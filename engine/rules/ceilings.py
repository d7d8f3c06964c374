"""The operator's limits are ceilings: a server may lower them, never raise them.

A server's own values for the per-member cap, the most steps and images per request, and the quotas
apply only below the operator's (the global values: panel, or the environment). A server quota of 0
means "no quota" only where the operator set none; where the operator set one, the server's 0 or a
higher value gives way to the operator's. ``within`` is the rule, a pure function; the Policy applies
it to every server's effective defaults, and /settings shows its notes.
"""

from __future__ import annotations

from dataclasses import replace

from engine.requests.params import Defaults

LOWER_ONLY = ("per_user_cap", "max_steps", "max_count")
QUOTAS = ("quota_member_day", "quota_member_hour", "quota_server_day", "quota_server_hour")


def within(operator: Defaults, server: Defaults) -> tuple[Defaults, tuple[str, ...]]:
    """``server``'s defaults held under ``operator``'s ceilings, and a note for each value that was capped."""
    changes: dict[str, int] = {}
    notes: list[str] = []
    for name in LOWER_ONLY:
        top, asked = getattr(operator, name), getattr(server, name)
        if asked > top:
            changes[name] = top
            notes.append(f"{name} {asked} is above the operator's {top}, so {top} applies")
    for name in QUOTAS:
        top, asked = getattr(operator, name), getattr(server, name)
        if top and (asked == 0 or asked > top):
            changes[name] = top
            shown = "no limit" if asked == 0 else str(asked)
            notes.append(f"{name} {shown} is above the operator's {top} images, so {top} applies")
    capped = replace(server, **changes)
    # a default above its (now lower) limit would make every request that relies on it fail
    capped = replace(capped, steps=min(capped.steps, capped.max_steps), count=min(capped.count, capped.max_count))
    return capped, tuple(notes)
