"""Who is logged in to the gallery, and the logins under way: in memory, bounded and expiring (a restart logs
members out; they log in again with one click)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from admin_ui.gallery.oauth import Member

SESSION_SECONDS = 7 * 24 * 3600
STATE_SECONDS = 600  # from "Log in with Discord" to Discord's answer
MAX_SESSIONS = 10_000  # the oldest is logged out first
PER_MEMBER = 8  # sessions one member keeps (browsers, devices); their oldest goes first


@dataclass(frozen=True)
class MemberSession:
    """A logged-in member, with the token their forms must carry (no other page can post for them)."""

    member: Member
    csrf: str
    expires: float


class MemberSessions:
    """Logins under way (signed ``state`` values, nothing stored) and members' sessions (by cookie token)."""

    def __init__(self, ttl: float = SESSION_SECONDS) -> None:
        self._ttl = ttl
        self._key = secrets.token_bytes(32)  # signs the states this process hands out
        self._sessions: OrderedDict[str, MemberSession] = OrderedDict()

    def begin(self) -> str:
        """A new login's ``state``: signed, valid STATE_SECONDS. Nothing is kept, so no number of logins begun (by
        anyone) can push out a member's."""
        body = f"{secrets.token_urlsafe(16)}.{int(time.time()) + STATE_SECONDS}"
        return f"{body}.{self._sign(body)}"

    def finish(self, state: str) -> bool:
        """Whether ``state`` is one this gallery signed and it has not expired."""
        body, _, mac = state.rpartition(".")
        expires = body.rpartition(".")[2]
        return (hmac.compare_digest(mac.encode(), self._sign(body).encode()) and expires.isdecimal()
                and int(expires) > time.time())

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def open(self, member: Member) -> str:
        """A session for ``member``; returns its cookie token."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        mine = [t for t, s in self._sessions.items() if s.member.id == member.id]
        for old in mine[:max(0, len(mine) - PER_MEMBER + 1)]:
            del self._sessions[old]
        self._sessions[token] = MemberSession(member, secrets.token_urlsafe(24), now + self._ttl)
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
