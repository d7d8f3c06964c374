"""The deny list: members who may not make images, in one server (its moderators decide), outside servers,
or everywhere (the operator decides), until a time or until lifted.

Owned here, in memory, and kept in the store; expired entries are dropped when read. Admission asks
``denial`` before anything else (engine/rules/admission.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.jobs.store import JobStore
from engine.rules.audit import AuditLog
from engine.rules.policy import GLOBAL  # the operator's entries hold everywhere

MAX_DAYS = 3650


@dataclass(frozen=True)
class Denial:
    """Why and until when a member may not make images in a scope."""

    scope: str
    user_id: str
    until: float | None  # epoch seconds; None: until lifted
    reason: str
    by_whom: str

    def active(self, now: float) -> bool:
        """Whether it still holds at ``now``."""
        return self.until is None or now < self.until


class DenyList:
    """The one owner of who is denied where."""

    def __init__(self, store: Callable[[], JobStore], audit: AuditLog) -> None:
        self._store = store
        self._audit = audit
        self._entries: dict[tuple[str, str], Denial] = {}

    def load(self, store: JobStore) -> None:
        """Read the entries that still hold (blocking; at start)."""
        now = time.time()
        for row in store.denied():
            entry = Denial(row["scope"], row["user_id"], row["until"], row["reason"], row["by_whom"])
            if entry.active(now):
                self._entries[(entry.scope, entry.user_id)] = entry
            else:
                store.remove_denied(entry.scope, entry.user_id)

    def denial(self, user_id: str, scope: str) -> Denial | None:
        """The entry that keeps a member from making images in ``scope`` (its own, or the operator's), if any."""
        now = time.time()
        for key in ((GLOBAL, user_id), (scope, user_id)):
            entry = self._entries.get(key)
            if entry is not None and not entry.active(now):
                del self._entries[key]  # expired: the store's row goes at the next start
                entry = None
            if entry is not None:
                return entry
        return None

    def entries(self, scope: str) -> list[Denial]:
        """The entries of a scope that still hold, soonest to end first."""
        now = time.time()
        found = [e for (s, _u), e in self._entries.items() if s == scope and e.active(now)]
        return sorted(found, key=lambda e: (e.until is None, e.until or 0.0))

    async def deny(self, scope: str, user_id: str, *, days: float, reason: str, by_whom: str) -> Denial:
        """Deny a member in ``scope`` for ``days`` (0: until lifted); replaces an earlier entry."""
        if not 0 <= days <= MAX_DAYS:
            raise ValueError(f"days must be from 0 (until lifted) to {MAX_DAYS} (got {days:g})")
        now = time.time()
        entry = Denial(scope, str(user_id), now + days * 86400 if days else None, reason.strip()[:200], by_whom)
        await asyncio.to_thread(self._store().set_denied, scope, entry.user_id, entry.until, entry.reason,
                                by_whom, now)
        self._entries[(scope, entry.user_id)] = entry
        span = f"for {days:g} day(s)" if days else "until lifted"
        await self._audit.record(scope, by_whom, "deny", f"member {entry.user_id} {span}: {entry.reason or '-'}")
        return entry

    async def undeny(self, scope: str, user_id: str, *, by_whom: str) -> bool:
        """Lift a member's entry in ``scope``; False when there was none."""
        removed = await asyncio.to_thread(self._store().remove_denied, scope, str(user_id))
        self._entries.pop((scope, str(user_id)), None)
        if removed:
            await self._audit.record(scope, by_whom, "undeny", f"member {user_id}")
        return removed
