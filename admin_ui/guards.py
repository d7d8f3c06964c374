"""The ASGI layers in front of the whole panel: login, origin and the headers every answer carries.

Gradio checks the login on most routes itself, but not on all (heartbeat, cancel, streams...), and
its CORS middleware reflects any Origin with credentials. One set of gates in front of everything
keeps the panel's promises in one place, whatever Gradio does behind them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin_ui.auth import Sessions
from admin_ui.gallery.routes import GALLERY_PREFIX
from admin_ui.health import HEALTH_PATHS
from admin_ui.login_page import render_login_page
from admin_ui.theme import BRAND_PREFIX

# paths anyone may request: the login form and what it shows
PUBLIC_PATHS = frozenset({"/login", "/logout", "/favicon.ico", "/robots.txt"})
NOT_LOGGED_IN = ("Not logged in. Log in at the panel's /login page, or give gradio_client "
                 "auth=(ADMIN_USERNAME, password).")
# sent with every answer: never inside a frame (clickjacking), and files only to the panel's own pages
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class LoginGate:
    """Refuses every request without a session, except the login page and its brand files.

    An unauthenticated request for the page itself gets 401 with the login form, so a browser shows
    where to log in.
    """

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.sessions.current_user(HTTPConnection(scope)) is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response: Response
        if scope["method"] in ("GET", "HEAD") and scope["path"] in ("", "/"):
            response = HTMLResponse(render_login_page(), status_code=401, headers={"Cache-Control": "no-store"})
        else:
            response = JSONResponse({"detail": NOT_LOGGED_IN}, status_code=401)
        await response(scope, receive, send)


class OriginGuard:
    """Answers only the panel's own pages: a request whose Origin is another site or port gets 403.

    Browsers send Origin with every cross-origin fetch and form post, and a page on another port of
    the same host is "same-site", so it would carry the operator's session cookie. Requests without
    an Origin (address bar, gradio_client, curl) pass. The panel's own origin is the one its Host
    header names; ``extra_origins`` (ADMIN_ORIGIN) adds the public address behind a reverse proxy
    that rewrites Host.
    """

    def __init__(self, app: ASGIApp, extra_origins: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.extra_origins = extra_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or self._is_own(origin, headers.get("host", "")):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        detail = (f"Cross-origin request refused: the panel answers only its own pages, and {origin[:100]} is not "
                  f"this panel's address. Behind a reverse proxy that rewrites the Host header, set ADMIN_ORIGIN "
                  f"to the address browsers use.")
        await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)

    def _is_own(self, origin: str, host: str) -> bool:
        if origin.rstrip("/").lower() in self.extra_origins:
            return True
        # "null" (sandboxed frames, file:// pages) and anything unparsable is foreign
        given, own = _endpoint(origin), _endpoint(f"http://{host}")
        if given is None or own is None:
            return False
        if ":" not in host.rsplit("]", 1)[-1]:
            # a Host without a port is the scheme's default port, http or (behind a TLS proxy) https
            return given[0] == own[0] and given[1] in (80, 443)
        return given == own


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP answer (refusals and the login page included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _endpoint(url: str) -> tuple[str, int] | None:
    """(host, port) of an origin or scheme://host, the port filled in from the scheme."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname.lower(), port


def _is_public(path: str) -> bool:
    # health, readiness and metrics guard themselves (admin_ui/health.py): a prober has no session; the members'
    # gallery has its own login (admin_ui/gallery/routes.py)
    return (path in PUBLIC_PATHS or path in HEALTH_PATHS or path.startswith(f"/{BRAND_PREFIX}/")
            or path == GALLERY_PREFIX or path.startswith(f"{GALLERY_PREFIX}/"))


__all__ = ["NOT_LOGGED_IN", "PUBLIC_PATHS", "SECURITY_HEADERS", "LoginGate", "OriginGuard", "SecurityHeaders"]
