"""Admin panel settings, read from the environment and ``.env`` only when ``AdminSettings()`` is built."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ORIGIN_RE = re.compile(r"^https?://[^/\s?#]+$")


METRICS_TOKEN_MIN = 32


class AdminSettings(BaseSettings):
    """Where the panel listens and who may log in.

    ``password`` is None when ADMIN_PASSWORD is unset or empty: the server then generates one on
    first start and keeps it under DATA_DIR (see ``admin_ui.auth.prepare_password``).
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=True)

    host: str = Field("127.0.0.1", alias="ADMIN_HOST")
    # 0 asks the OS for a free port (tests); AdminServer.url reports the real one
    port: int = Field(7860, alias="ADMIN_PORT", ge=0, le=65535)
    username: str = Field("admin", alias="ADMIN_USERNAME", min_length=1)
    password: SecretStr | None = Field(None, alias="ADMIN_PASSWORD")
    # behind a reverse proxy that rewrites Host: the address(es) browsers use, e.g. https://panel.example.com
    origin: str = Field("", alias="ADMIN_ORIGIN")
    # Prometheus: a port of its own (no login), and/or /metrics on the panel's port behind this token
    metrics_port: int | None = Field(None, alias="METRICS_PORT", ge=1, le=65535)
    metrics_host: str = Field("127.0.0.1", alias="METRICS_HOST")
    metrics_token: SecretStr | None = Field(None, alias="METRICS_TOKEN")

    @field_validator("host", "username")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("is empty")
        return value

    @field_validator("metrics_port", "metrics_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # `METRICS_PORT=` in .env (as in .env.example) means "not set"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("metrics_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        # a short token is guessed in seconds (METRICS_TOKEN=a fell in 0.3 s); never echo it in the message
        if value is not None and len(value.get_secret_value()) < METRICS_TOKEN_MIN:
            raise ValueError(f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN} characters; make one with "
                             f"python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return value

    @field_validator("password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `ADMIN_PASSWORD=` in .env means "not set", not "the empty password"
        if value is None:
            return None
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return raw if raw.strip() else None

    @field_validator("origin")
    @classmethod
    def _check_origins(cls, value: str) -> str:
        origins = [o.strip().rstrip("/").lower() for o in value.split(",") if o.strip()]
        for origin in origins:
            if not _ORIGIN_RE.match(origin):
                raise ValueError(f"{origin!r} is not an origin; give scheme://host[:port] with nothing after it, "
                                 f"e.g. https://panel.example.com (comma-separated for several)")
        return ",".join(origins)

    @property
    def allowed_origins(self) -> frozenset[str]:
        """Origins accepted besides the panel's own address (ADMIN_ORIGIN), normalised."""
        return frozenset(o for o in self.origin.split(",") if o)

    @property
    def password_is_explicit(self) -> bool:
        """True when the operator set ADMIN_PASSWORD (required to bind beyond loopback)."""
        return self.password is not None


__all__ = ["AdminSettings"]
