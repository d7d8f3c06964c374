"""The gallery's settings (its Discord OAuth2 application and public address), read when ``main()`` builds them."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_URL_RE = re.compile(r"^https?://[^\s?#]+$")


class GallerySettings(BaseSettings):
    """The Discord application members log in with, and where the gallery is reached.

    The gallery is on when DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET are set; GALLERY_URL is its public address,
    whose ``/callback`` must be listed as a redirect in the application's OAuth2 settings (unset: the address the
    browser used, right for a gallery reached on the panel's own host and port).
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=True, frozen=True)

    client_id: str = Field("", alias="DISCORD_CLIENT_ID")
    client_secret: SecretStr | None = Field(None, alias="DISCORD_CLIENT_SECRET")
    url: str = Field("", alias="GALLERY_URL")
    # Discord's consent page (tests name their emulator's); the token and user calls go to DISCORD_API_BASE
    authorize_url: str = Field("https://discord.com/oauth2/authorize", alias="DISCORD_AUTHORIZE_URL")

    @field_validator("client_id")
    @classmethod
    def _snowflake(cls, value: str) -> str:
        value = value.strip()
        if value and not value.isdigit():
            raise ValueError("must be the application's id (digits), from the Developer Portal's OAuth2 page")
        return value

    @field_validator("client_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(raw, str) and not raw.strip() else value

    @field_validator("url", "authorize_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not _URL_RE.match(value):
            raise ValueError(f"{value!r} is not an address; give http(s)://host[:port][/path], with no ? or #")
        return value

    @property
    def enabled(self) -> bool:
        """Whether members can log in: the application's id and secret are both set."""
        return bool(self.client_id and self.client_secret is not None)


__all__ = ["GallerySettings"]
