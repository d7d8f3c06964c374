"""Discord-side settings, read from the environment and ``.env`` when ``main()`` builds them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.engine_settings import SettingsError, format_validation_error


class BotSettings(BaseSettings):
    """How the bot reaches Discord and how it delivers."""

    # field names are the variables' names; pydantic-settings matches them case-insensitively
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    discord_token: SecretStr | None = None
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_guild_id: int | None = None
    # interaction tokens live 15 minutes; past this many seconds deliver by channel message instead
    token_safe_seconds: float = Field(840.0, gt=0, le=900)
    progress_edit_interval: float = Field(1.5, ge=1.0, le=60)
    dm_fallback: bool = True
    # declare the commands for user installs too (servers without the bot, group DMs, other people's DMs)
    user_installs: bool = True
    # the only hosts members' pictures are fetched from (Discord's CDN; tests name their emulator's), no redirects
    picture_hosts: Annotated[tuple[str, ...], NoDecode] = ("cdn.discordapp.com", "media.discordapp.net")

    @field_validator("picture_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

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
