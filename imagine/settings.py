"""Every part's settings together, read once in ``main()`` (never at import)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from admin_ui.admin_settings import AdminSettings
from admin_ui.gallery.gallery_settings import GallerySettings
from bot.bot_settings import BotSettings, load_bot_settings
from engine.engine_settings import EngineSettings, SettingsError, format_validation_error, load_engine_settings


@dataclass(frozen=True)
class ServiceSettings:
    """Every part's settings, read from the environment and ``.env``."""

    engine: EngineSettings
    bot: BotSettings
    admin: AdminSettings
    gallery: GallerySettings


def load_settings() -> ServiceSettings:
    """Read all settings; raises SettingsError naming the wrong variable."""
    engine, bot = load_engine_settings(), load_bot_settings()
    try:
        admin = AdminSettings()
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, AdminSettings)) from None
    try:
        gallery = GallerySettings()
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, GallerySettings)) from None
    return ServiceSettings(engine, bot, admin, gallery)
