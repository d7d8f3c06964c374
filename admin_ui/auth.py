"""Panel login: the bind/password rule, the generated password, and cookie sessions.

Gradio's own ``auth=`` answers an unauthenticated page request with 200 and its login form; we want
the page itself to be refused (401) and the login page to carry our brand, so the parent FastAPI
app owns ``/login`` and ``/logout`` and Gradio gets an ``auth_dependency`` that reads our cookie.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from admin_ui.admin_settings import AdminSettings
from admin_ui.throttle import LoginThrottle, Refusal
from engine.media.files import atomic_write

log = logging.getLogger(__name__)

PASSWORD_FILE = "admin-password"
SESSION_COOKIE = "imagine_admin_session"
# marks a browser that logged in before: its attempts are not caught by the address and user-name caps
DEVICE_COOKIE = "imagine_admin_device"
SESSION_SECONDS = 12 * 3600
# a panel reachable from other machines faces guessing from anywhere: ask for a password that survives it
MIN_PUBLIC_PASSWORD_LENGTH = 12


class AdminConfigError(RuntimeError):
    """The panel cannot start with these settings; the message says which variable to change."""


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        # a host name could resolve anywhere; treat it as public so the password rule applies
        return False


def check_bind(settings: AdminSettings) -> None:
    """Refuse to expose the panel beyond loopback with a password nobody chose, or a short one.

    Raises AdminConfigError naming what to set.
    """
    if not is_loopback(settings.host) and not settings.password_is_explicit:
        raise AdminConfigError(
            f"ADMIN_HOST={settings.host} would make the admin panel reachable from other machines, but "
            f"ADMIN_PASSWORD is not set. Set ADMIN_PASSWORD to a strong password (in .env or the environment), "
            f"or keep ADMIN_HOST=127.0.0.1 and reach the panel through an SSH tunnel."
        )
    if not is_loopback(settings.host) and settings.password is not None \
            and len(settings.password.get_secret_value()) < MIN_PUBLIC_PASSWORD_LENGTH:
        # the message names the rule, never the password itself
        raise AdminConfigError(
            f"ADMIN_HOST={settings.host} makes the admin panel reachable from other machines, so ADMIN_PASSWORD must "
            f"be at least {MIN_PUBLIC_PASSWORD_LENGTH} characters long. Set a longer one (for example the output of "
            f"python -c 'import secrets; print(secrets.token_urlsafe(18))'), or keep ADMIN_HOST=127.0.0.1."
        )


def password_path(data_dir: Path) -> Path:
    """Where a generated panel password is kept."""
    return Path(data_dir) / PASSWORD_FILE


def prepare_password(settings: AdminSettings, data_dir: Path, out: TextIO | None = None) -> SecretStr:
    """The password to check logins against.

    ADMIN_PASSWORD wins. Otherwise the password stored under DATA_DIR is used, or, on the first
    start, a new one is generated and written there with mode 0600. ``out`` (stdout) is told where it
    is and how to read it, never the password itself: stdout of a service ends up in its journal.
    """
    out = out or sys.stdout
    if settings.password is not None:
        return settings.password
    path = password_path(data_dir)
    stored = _read_password(path)
    if stored:
        print(f"Admin panel: log in as '{settings.username}' with the password stored in {path} "
              f"(set ADMIN_PASSWORD to choose your own).", file=out, flush=True)
        return SecretStr(stored)
    password = secrets.token_urlsafe(18)
    _write_private(path, password + "\n")
    print("\n".join([
        "",
        "=" * 72,
        "Admin panel: no ADMIN_PASSWORD was set, so a password was generated and stored in",
        f"  {path} (readable only by this user). Read it with:",
        f"  cat {path}",
        f"and log in as '{settings.username}'. Set ADMIN_PASSWORD to choose your own.",
        "=" * 72,
        "",
    ]), file=out, flush=True)
    return SecretStr(password)


def _read_password(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # someone loosened it (a copy, a backup restore); a secret file must stay private
        log.warning("%s was readable by other users (mode %o); setting it to 0600", path, mode)
        os.chmod(path, 0o600)
    return text or None


def _write_private(path: Path, text: str) -> None:
    # mode 0600 from the start: the secret is never on disk with wider permissions
    atomic_write(path, text.encode("utf-8"), mode=0o600)


@dataclass
class _Session:
    username: str
    expires: float


@dataclass(frozen=True)
class LoginOutcome:
    """The answer to one login attempt: a session (and the browser's device token), or why not."""

    token: str | None = None
    device: str | None = None
    refusal: Refusal | None = None


class Sessions:
    """Logged-in browser sessions (in memory: a restart logs everyone out, which is fine for one operator)."""

    def __init__(self, username: str, password: SecretStr, ttl: float = SESSION_SECONDS) -> None:
        self.username = username
        self._password = password
        self._ttl = ttl
        self._sessions: dict[str, _Session] = {}
        self.throttle = LoginThrottle()

    async def login(self, username: str, password: str, *, client: str = "", device: str | None = None) -> LoginOutcome:
        """Check credentials from ``client`` (its address) holding ``device`` (its device cookie, if any).

        A refused client or user name gets its refusal without its password being checked. A wrong
        password is counted and answered after a delay that grows per client; the delay is slept
        here, without any lock, so other clients' logins go on meanwhile.
        """
        refusal = self.throttle.check(client, username, device)
        if refusal is not None:
            log.warning("refused admin panel login for user %r from %s: too many failures (retry in %.0f s)",
                        username[:64], client, refusal.retry_after)
            return LoginOutcome(refusal=refusal)
        ok = _same(username.strip(), self.username) & _same(password, self._password.get_secret_value())
        if not ok:
            # counted before the first await, so concurrent attempts cannot slip past the cap together
            delay = self.throttle.failed(client, username, device)
            log.warning("failed admin panel login for user %r from %s", username[:64], client)
            await asyncio.sleep(delay)
            return LoginOutcome()
        self.throttle.succeeded(client, device)
        token = secrets.token_urlsafe(32)
        self._sessions[token] = _Session(self.username, time.time() + self._ttl)
        self._drop_expired()
        return LoginOutcome(token=token, device=device if self.throttle.trusted(device)
                            else self.throttle.issue_device())

    def _drop_expired(self) -> None:
        now = time.time()
        for token in [t for t, s in self._sessions.items() if s.expires < now]:
            del self._sessions[token]

    def user(self, token: str | None) -> str | None:
        """The user of a live session token, else None."""
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires < time.time():
            self._sessions.pop(token, None)
            return None
        return session.username

    def logout(self, token: str | None) -> None:
        """End a session."""
        if token:
            self._sessions.pop(token, None)

    def current_user(self, conn: HTTPConnection) -> str | None:
        """Gradio's ``auth_dependency``: the logged-in user of a request, or None (Gradio answers 401)."""
        return self.user(conn.cookies.get(SESSION_COOKIE))


def _same(given: str, expected: str) -> bool:
    # constant time, so the comparison does not leak how much of a guess was right
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


__all__ = [
    "AdminConfigError", "DEVICE_COOKIE", "LoginOutcome", "PASSWORD_FILE", "SESSION_COOKIE", "Sessions", "check_bind",
    "is_loopback", "password_path", "prepare_password",
]
