"""The moderation log: refused prompts, and every change of settings, blocklists and the deny list (who,
when, what), for the panel's Moderation tab.

Written off the event loop and never in the way of an answer: a refusal is told at once and its line is
written after. Bounded: lines older than RETENTION_DAYS go with the retention sweep, and at most
AUDIT_MAX_LINES are kept whatever the settings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.jobs.store import JobStore

log = logging.getLogger(__name__)

AUDIT_MAX_LINES = 10_000
PRUNE_EVERY = 100  # lines written between two checks of the bound
DETAIL_MAX = 300


@dataclass(frozen=True)
class AuditLine:
    """One line of the moderation log."""

    at: float
    scope: str  # a server id, "global" or "elsewhere"
    actor: str  # who: a member ("name (id)"), or the panel's operator
    kind: str  # refused | settings | blocklist | deny | undeny
    detail: str


class AuditLog:
    """Writes and reads the moderation log (the store holds it)."""

    def __init__(self, store: Callable[[], JobStore]) -> None:
        self._store = store
        self._writes = 0
        self._pending: set[asyncio.Task[None]] = set()

    async def record(self, scope: str, actor: str, kind: str, detail: str) -> None:
        """Write one line now (off the event loop)."""
        line = AuditLine(time.time(), scope, actor, kind, detail[:DETAIL_MAX])
        store = self._store()
        await asyncio.to_thread(store.add_audit, line.at, line.scope, line.actor, line.kind, line.detail)
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            await asyncio.to_thread(store.prune_audit, 0.0, AUDIT_MAX_LINES)

    def record_later(self, scope: str, actor: str, kind: str, detail: str) -> None:
        """Write one line in the background: the answer it belongs to goes out first."""
        task = asyncio.create_task(self._record_quietly(scope, actor, kind, detail))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record_quietly(self, scope: str, actor: str, kind: str, detail: str) -> None:
        try:
            await self.record(scope, actor, kind, detail)
        except Exception:  # the log is a record, not a gate: a failed write never fails a request
            log.exception("could not write the moderation log")

    async def lines(self, limit: int = 50, scope: str | None = None) -> list[AuditLine]:
        """The newest lines, of one scope or of all."""
        rows = await asyncio.to_thread(self._store().audit, limit, scope)
        return [AuditLine(r["at"], r["scope"], r["actor"], r["kind"], r["detail"]) for r in rows]

    def prune(self, max_age_days: float, now: float | None = None) -> int:
        """Drop lines past the retention age (if any) and beyond the bound (blocking: the retention sweep)."""
        now = time.time() if now is None else now
        before = now - max_age_days * 86400 if max_age_days > 0 else 0.0
        return self._store().prune_audit(before, AUDIT_MAX_LINES)
