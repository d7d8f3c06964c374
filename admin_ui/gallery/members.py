"""Who is logged in to the gallery, and the logins under way: in memory, bounded and expiring (a restart logs
members out; they log in again with one click)."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from admin_ui.gallery.oauth import Member

SESSION_SECONDS = 7 * 24 * 3600
STATE_SECONDS = 600.0  # from "Log in with Discord" to Discord's answer
MAX_SESSIONS = 10_000  # the oldest is logged out first
MAX_STATES = 10_000


@dataclass(frozen=True)
class MemberSession:
    """A logged-in member, with the token their forms must carry (no other page can post for them)."""

    member: Member
    csrf: str
    expires: float


class MemberSessions:
    """Logins under way (by ``state``) and members' sessions (by cookie token)."""

    def __init__(self, ttl: float = SESSION_SECONDS) -> None:
        self._ttl = ttl
        self._states: OrderedDict[str, float] = OrderedDict()  # state -> when it expires
        self._sessions: OrderedDict[str, MemberSession] = OrderedDict()

    def begin(self) -> str:
        """A new login's ``state``: one use, within STATE_SECONDS."""
        state = secrets.token_urlsafe(24)
        self._states[state] = time.time() + STATE_SECONDS
        while len(self._states) > MAX_STATES:
            self._states.popitem(last=False)
        return state

    def finish(self, state: str) -> bool:
        """Whether ``state`` is a login this gallery began and has not finished or let expire (used up either way)."""
        expires = self._states.pop(state, None)
        return expires is not None and expires > time.time()

    def open(self, member: Member) -> str:
        """A session for ``member``; returns its cookie token."""
        token = secrets.token_urlsafe(32)
        self._sessions[token] = MemberSession(member, secrets.token_urlsafe(24), time.time() + self._ttl)
        now = time.time()
        while self._sessions and (len(self._sessions) > MAX_SESSIONS or next(iter(self._sessions.values())).expires
                                  < now):
            self._sessions.popitem(last=False)  # opened first, so expiring first too
        return token

    def get(self, token: str | None) -> MemberSession | None:
        """The live session of a cookie token, else None."""
        session = self._sessions.get(token or "")
        if session is None or session.expires < time.time():
            return None
        return session

    def close(self, token: str | None) -> None:
        """Log out."""
        self._sessions.pop(token or "", None)


__all__ = ["MemberSession", "MemberSessions"]
