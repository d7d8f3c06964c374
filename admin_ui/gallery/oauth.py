"""Discord's OAuth2 authorization code flow, for the gallery's "Log in with Discord" (scope ``identify`` only).

The member is sent to Discord's consent page with a random ``state``; Discord sends them back with a one-time
code, which is exchanged here (server to server, with the application's secret) for an access token, used once to
read who they are (``GET /users/@me``) and then revoked: the gallery keeps the member's id and name, never a token.
Every answer from Discord is validated before it is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
SCOPE = "identify"


class OAuthError(Exception):
    """Logging in did not work; the message says what the member can do."""


@dataclass(frozen=True)
class Member:
    """Who logged in."""

    id: str
    name: str  # their display name, else their user name


class _Token(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_token: str = Field(min_length=1, max_length=1024)
    token_type: str


class _User(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^\d{1,20}$")
    username: str = Field(min_length=1, max_length=64)
    global_name: str | None = Field(None, max_length=64)


class DiscordOAuth:
    """The application's side of the flow."""

    def __init__(self, client_id: str, client_secret: SecretStr, api_base: str, authorize_url: str) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self._api = api_base.rstrip("/")
        self._authorize = authorize_url

    def consent_url(self, state: str, redirect_uri: str) -> str:
        """Discord's consent page for this application (``prompt=none`` skips it for a member who agreed before)."""
        query = {"client_id": self.client_id, "response_type": "code", "redirect_uri": redirect_uri,
                 "scope": SCOPE, "state": state, "prompt": "none"}
        return f"{self._authorize}?{urlencode(query)}"

    async def member(self, code: str, redirect_uri: str) -> Member:
        """Who the one-time ``code`` belongs to (OAuthError says why not)."""
        auth = (self.client_id, self._secret.get_secret_value())
        async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False) as client:
            try:
                answer = await client.post(f"{self._api}/oauth2/token", auth=auth, data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})
                if answer.status_code != 200:
                    log.warning("Discord refused the gallery's OAuth2 code (HTTP %s): %s", answer.status_code,
                                answer.text[:200])
                    raise OAuthError("Discord did not accept this login (it may have expired); log in again.")
                token = _Token.model_validate(answer.json())
                if token.token_type.lower() != "bearer":
                    raise OAuthError("Discord answered with an unexpected kind of token; log in again.")
                try:
                    answer = await client.get(f"{self._api}/users/@me",
                                              headers={"Authorization": f"Bearer {token.access_token}"})
                    if answer.status_code != 200:
                        raise OAuthError("Discord did not say who you are; log in again.")
                    user = _User.model_validate(answer.json())
                finally:  # whatever happened, the token goes back
                    await self._revoke(client, auth, token.access_token)
            except (httpx.HTTPError, ValueError, ValidationError) as exc:
                if isinstance(exc, OAuthError):
                    raise
                log.warning("the gallery's Discord login failed: %s", exc)
                raise OAuthError("Discord could not be reached or answered oddly; try again in a minute.") from None
        return Member(user.id, user.global_name or user.username)

    async def _revoke(self, client: httpx.AsyncClient, auth: tuple[str, str], token: str) -> None:
        """Give the token back at once: the gallery has what it needed (best effort)."""
        try:
            await client.post(f"{self._api}/oauth2/token/revoke", auth=auth,
                              data={"token": token, "token_type_hint": "access_token"})
        except httpx.HTTPError as exc:
            log.info("revoking the gallery's Discord token failed (it expires by itself): %s", exc)


__all__ = ["DiscordOAuth", "Member", "OAuthError"]
