"""Discord's OAuth2 authorization code flow, as web logins (the members' gallery) use it.

- ``GET /oauth2/authorize`` is the consent page: it checks ``client_id``, ``response_type=code``, a registered
  ``redirect_uri`` (exact match, else 400 as Discord's page does) and the ``identify`` scope, then sends the browser
  back at once with a one-time ``code`` for ``oauth_user`` (the member "clicking Authorize"), or with
  ``error=access_denied`` when ``oauth_denied`` is set.
- ``POST /api/v10/oauth2/token`` (form-encoded, the client's id and secret by HTTP Basic or in the form) trades the
  code, within 10 minutes, once, and only with the same ``redirect_uri``, for a Bearer token; ``.../token/revoke``
  ends one. Errors are Discord's ``{"error": ...}`` bodies (400 ``invalid_grant``, 401 ``invalid_client``).
- ``GET /api/v10/users/@me`` with ``Authorization: Bearer`` answers the token's user.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .discord_protocol import API_PREFIX
from .discord_records import FakeUser

CODE_SECONDS = 600.0
TOKEN_SECONDS = 604800


class OAuthMixin:
    """The OAuth2 endpoints; ``self`` is the FakeDiscord."""

    application_id: int
    default_user: FakeUser
    _handle_api: Any

    def _init_oauth(self) -> None:
        #: The application's client secret; the client id is ``application_id``.
        self.oauth_secret = "fake-client-secret"
        #: Redirect URIs registered in the application's OAuth2 settings (exact matches, as Discord wants).
        self.oauth_redirects: list[str] = []
        #: Who authorizes on the consent page (None: ``default_user``); ``oauth_denied``: they press Cancel.
        self.oauth_user: FakeUser | None = None
        self.oauth_denied = False
        #: (endpoint, outcome) of every OAuth2 call, in order: "authorize"/"token"/"revoke"/"me".
        self.oauth_calls: list[tuple[str, str]] = []
        self._codes: dict[str, tuple[int, str, float]] = {}  # code -> (user id, redirect_uri, expires)
        self._oauth_tokens: dict[str, int] = {}  # access token -> user id

    def _add_oauth_routes(self, app: web.Application) -> None:
        """Before the API's catch-all route, so these answer first."""
        app.router.add_get("/oauth2/authorize", self._oauth_authorize)
        app.router.add_post(API_PREFIX + "/oauth2/token", self._oauth_token)
        app.router.add_post(API_PREFIX + "/oauth2/token/revoke", self._oauth_revoke)
        app.router.add_get(API_PREFIX + "/users/@me", self._oauth_me)

    async def _oauth_authorize(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        redirect = q.get("redirect_uri", "")
        problem = (
            "Unknown client_id" if q.get("client_id") != str(self.application_id) else
            "Invalid OAuth2 redirect_uri" if redirect not in self.oauth_redirects else
            "Unsupported response_type" if q.get("response_type") != "code" else
            "Invalid scope" if "identify" not in q.get("scope", "").split() else "")
        if problem:
            self.oauth_calls.append(("authorize", problem))
            return web.Response(status=400, text=problem)
        state = {"state": q["state"]} if "state" in q else {}
        if self.oauth_denied:
            self.oauth_calls.append(("authorize", "denied"))
            answer = {"error": "access_denied", "error_description": "The resource owner or authorization server "
                                                                     "denied the request", **state}
        else:
            code = secrets.token_urlsafe(20)
            self._codes[code] = ((self.oauth_user or self.default_user).id, redirect, time.time() + CODE_SECONDS)
            self.oauth_calls.append(("authorize", "code"))
            answer = {"code": code, **state}
        raise web.HTTPFound(f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(answer)}")

    def _client_ok(self, request: web.Request, form: Any) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                client, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            except ValueError:  # not base64, or not text: Discord answers invalid_client
                return False
        else:
            client, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client == str(self.application_id) and secret == self.oauth_secret

    async def _oauth_token(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/x-www-form-urlencoded":
            return self._oauth_error("token", 400, "invalid_request", "form-encoded body required")
        form = await request.post()
        if not self._client_ok(request, form):
            return self._oauth_error("token", 401, "invalid_client", None)
        if form.get("grant_type") != "authorization_code":
            return self._oauth_error("token", 400, "unsupported_grant_type", None)
        found = self._codes.pop(str(form.get("code", "")), None)  # one use, whatever happens next
        if found is None or found[2] < time.time() or found[1] != form.get("redirect_uri"):
            return self._oauth_error("token", 400, "invalid_grant", 'Invalid "code" in request.')
        token = secrets.token_urlsafe(30)
        self._oauth_tokens[token] = found[0]
        self.oauth_calls.append(("token", "ok"))
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                                  "refresh_token": secrets.token_urlsafe(30), "scope": "identify"})

    async def _oauth_revoke(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not self._client_ok(request, form):
            return self._oauth_error("revoke", 401, "invalid_client", None)
        self._oauth_tokens.pop(str(form.get("token", "")), None)
        self.oauth_calls.append(("revoke", "ok"))
        return web.json_response({})

    async def _oauth_me(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return await self._handle_api(request)  # the bot's own GET /users/@me
        user_id = self._oauth_tokens.get(auth[7:])
        if user_id is None or user_id not in self.users:  # type: ignore[attr-defined]
            self.oauth_calls.append(("me", "401"))
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        self.oauth_calls.append(("me", "ok"))
        user = self.users[user_id]  # type: ignore[attr-defined]
        return web.json_response(user.to_dict())

    def _oauth_error(self, endpoint: str, status: int, error: str, description: str | None) -> web.Response:
        self.oauth_calls.append((endpoint, error))
        body = {"error": error, **({"error_description": description} if description else {})}
        return web.json_response(body, status=status)
