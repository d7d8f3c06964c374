"""Discord-side settings, read from the environment and ``.env`` when ``main()`` builds them."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.settings import SettingsError, format_validation_error


class BotSettings(BaseSettings):
    """How the bot reaches Discord and how it delivers."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=True, frozen=True)

    discord_token: SecretStr | None = Field(None, alias="DISCORD_TOKEN")
    discord_api_base: str = Field("https://discord.com/api/v10", alias="DISCORD_API_BASE")
    discord_gateway_url: str = Field("wss://gateway.discord.gg/", alias="DISCORD_GATEWAY_URL")
    discord_guild_id: int | None = Field(None, alias="DISCORD_GUILD_ID")
    # interaction tokens live 15 minutes; past this many seconds deliver by channel message instead
    token_safe_seconds: float = Field(840.0, alias="TOKEN_SAFE_SECONDS", gt=0, le=900)
    progress_edit_interval: float = Field(1.5, alias="PROGRESS_EDIT_INTERVAL", ge=1.0, le=60)
    dm_fallback: bool = Field(True, alias="DM_FALLBACK")

    @field_validator("discord_token", "discord_guild_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # `NAME=` in .env (as in .env.example) means "not set"
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("discord_api_base", "discord_gateway_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"'{value}' is not a URL (it must start with http(s):// or ws(s)://)")
        return value.rstrip("/") if value.startswith("http") else value


def load_bot_settings(**overrides: object) -> BotSettings:
    """Build the bot settings; raises SettingsError naming the wrong variable."""
    try:
        return BotSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, BotSettings)) from None
