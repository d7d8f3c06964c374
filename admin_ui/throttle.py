"""Slowing down password guessing at the panel's login without serialising everyone.

Failures are counted per client address and per user name in a sliding window. A failed attempt is
answered after a delay that grows with its client's failures (the attempt sleeps on its own; nothing
is locked, so other clients are not held up). Past a cap the client, or the user name, is refused at
once until the window has passed, with the time to wait.

The user-name cap would let anyone lock the operator out by guessing from many addresses (or from
the same loopback address behind an SSH tunnel), so a browser that logged in before carries a device
cookie: its attempts are counted on that cookie alone and the address and user-name caps do not apply
to it (OWASP "device cookies").
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# a failed attempt waits FIRST_DELAY, doubled with each further failure of its client, at most MAX_DELAY
FIRST_DELAY = 0.5
MAX_DELAY = 4.0
# failures one client (or one trusted browser) may make within WINDOW before it is refused
CLIENT_FAILURES = 10
# failures on one user name from untrusted clients, all addresses together, within WINDOW
USER_FAILURES = 30
WINDOW = 15 * 60.0
# how long a trusted browser's device cookie lasts
DEVICE_SECONDS = 30 * 24 * 3600.0
# bound on the addresses, names and devices remembered (an attacker picks them freely)
MAX_TRACKED = 10_000
_NAME_CHARS = 64


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused without checking its password, and for how long."""

    retry_after: float
    by_user: bool

    @property
    def message(self) -> str:
        """What the person at the login form reads."""
        who = "for this user" if self.by_user else "from your address"
        return f"Too many failed logins {who}. Try again in {_duration(self.retry_after)}."


class LoginThrottle:
    """Failure counts per client, per user name and per trusted device (all in memory, bounded)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._devices: dict[str, float] = {}  # device token -> expiry

    def issue_device(self) -> str:
        """A new device token for a browser that just logged in."""
        self._forget_over(self._devices, MAX_TRACKED - 1)
        token = secrets.token_urlsafe(24)
        self._devices[token] = self._clock() + DEVICE_SECONDS
        return token

    def trusted(self, device: str | None) -> bool:
        """True for a device token this panel issued and that has not expired."""
        expiry = self._devices.get(device or "")
        return expiry is not None and expiry > self._clock()

    def check(self, client: str, username: str, device: str | None) -> Refusal | None:
        """Whether an attempt may be checked at all (None) or must be refused now."""
        if self.trusted(device):
            wait = self._wait(f"device:{device}", CLIENT_FAILURES)
            return Refusal(wait, by_user=False) if wait else None
        wait = self._wait(f"client:{client}", CLIENT_FAILURES)
        if wait:
            return Refusal(wait, by_user=False)
        wait = self._wait(f"user:{_name(username)}", USER_FAILURES)
        return Refusal(wait, by_user=True) if wait else None

    def failed(self, client: str, username: str, device: str | None) -> float:
        """Count a failed attempt; returns how long to wait before answering it."""
        if self.trusted(device):
            count = self._count(f"device:{device}")
        else:
            count = self._count(f"client:{client}")
            self._count(f"user:{_name(username)}")
        return min(MAX_DELAY, FIRST_DELAY * 2 ** (count - 1))

    def succeeded(self, client: str, device: str | None) -> None:
        """A right password clears its client's (or device's) failures; the user name's stay counted."""
        self._failures.pop(f"device:{device}" if self.trusted(device) else f"client:{client}", None)

    def _recent(self, key: str) -> deque[float]:
        stamps = self._failures.get(key)
        if stamps is None:
            return deque()
        horizon = self._clock() - WINDOW
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
        return stamps

    def _wait(self, key: str, cap: int) -> float:
        stamps = self._recent(key)
        if len(stamps) < cap:
            return 0.0
        # refused until enough of the counted failures have left the window to allow one more
        return max(0.1, stamps[len(stamps) - cap] + WINDOW - self._clock())

    def _count(self, key: str) -> int:
        stamps = self._recent(key)
        if key not in self._failures:
            self._forget_over(self._failures, MAX_TRACKED - 1)
            self._failures[key] = stamps
        stamps.append(self._clock())
        return len(stamps)

    @staticmethod
    def _forget_over(table: dict[str, object], size: int) -> None:
        # the oldest entries go first (dicts keep insertion order)
        while len(table) > size:
            table.pop(next(iter(table)))


def _name(username: str) -> str:
    return username.strip().casefold()[:_NAME_CHARS]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} s"
    return f"{math.ceil(seconds / 60)} min"


__all__ = ["CLIENT_FAILURES", "LoginThrottle", "Refusal", "USER_FAILURES", "WINDOW"]
