"""The operator's limits are ceilings: a server may lower them, never raise them.

A server's own values for the per-member cap, the most steps and images per request, the quotas and
the models and LoRAs members may choose apply only within the operator's (the global values: panel, or
the environment). A server quota of 0 means "no quota" only where the operator set none; where the
operator set one, the server's 0 or a higher value gives way to the operator's. ``within`` is the rule,
a pure function; the Policy applies it to every server's effective defaults, and /settings shows its
notes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.requests.checks import Phrase
from engine.requests.params import Defaults

LOWER_ONLY = ("per_user_cap", "max_steps", "max_count")
QUOTAS = ("quota_member_day", "quota_member_hour", "quota_server_day", "quota_server_hour")
ALLOW_LISTS = ("models_allowed", "loras_allowed")


def within(operator: Defaults, server: Defaults) -> tuple[Defaults, tuple[Phrase, ...]]:
    """``server``'s defaults held under ``operator``'s ceilings, and a note for each value that was capped."""
    changes: dict[str, Any] = {}
    notes: list[Phrase] = []
    for name in LOWER_ONLY:
        top, asked = getattr(operator, name), getattr(server, name)
        if asked > top:
            changes[name] = top
            notes.append(Phrase.of("{name} {asked} is above the operator's {top}, so {top} applies", name=name,
                                   asked=asked, top=top))
    for name in QUOTAS:
        top, asked = getattr(operator, name), getattr(server, name)
        if top and (asked == 0 or asked > top):
            changes[name] = top
            shown = Phrase("no limit") if asked == 0 else str(asked)
            notes.append(Phrase.of("{name} {asked} is above the operator's {top} images, so {top} applies", name=name,
                                   asked=shown, top=top))
    for name in ALLOW_LISTS:  # a server's list of models or LoRAs within the operator's (empty: every one)
        top, asked = getattr(operator, name), getattr(server, name)
        outside = [n for n in asked if n not in top] if top else []
        if top and (not asked or outside):
            changes[name] = tuple(n for n in asked if n in top) or top
            notes.append(Phrase.of("{name}: {asked} is beyond the operator's list, so {applies} applies", name=name,
                                   asked=", ".join(outside) if outside else Phrase("all"),
                                   applies=", ".join(changes[name])))
    capped = replace(server, **changes)
    # a default above its (now lower) limit would make every request that relies on it fail
    capped = replace(capped, steps=min(capped.steps, capped.max_steps), count=min(capped.count, capped.max_count))
    return capped, tuple(notes)
