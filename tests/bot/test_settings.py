"""Every settings class starts from a copy of .env.example, as the quick start tells operators to do."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from admin_ui.admin_settings import AdminSettings
from bot.bot_settings import BotSettings, load_bot_settings
from engine.engine_settings import load_engine_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env_from_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose .env is .env.example, with no competing environment variables."""
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            monkeypatch.delenv(line.split("=", 1)[0], raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bot_settings_load_from_env_example(env_from_example):
    """Empty values such as DISCORD_TOKEN= and DISCORD_GUILD_ID= mean "not set"."""
    settings = load_bot_settings()
    assert settings.discord_token is None and settings.discord_guild_id is None
    assert settings.discord_api_base == "https://discord.com/api/v10"


def test_every_bot_variable_is_in_env_example():
    """Every bot variable has a line in .env.example, like the engine's."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    names = [name.upper() for name in BotSettings.model_fields]
    assert [n for n in names if not re.search(rf"^#?\s*{n}=", text, re.MULTILINE)] == []


def test_user_installs_are_on_in_env_example(env_from_example):
    """.env.example keeps user installs on, the built-in default."""
    assert load_bot_settings().user_installs is True


def test_user_installs_variable_turns_them_off(env_from_example, monkeypatch: pytest.MonkeyPatch):
    """USER_INSTALLS=false (any case, as pydantic-settings matches names) switches user installs off."""
    monkeypatch.setenv("user_installs", "false")
    assert load_bot_settings().user_installs is False


def test_admin_settings_load_from_env_example(env_from_example):
    """ADMIN_PASSWORD= means "generate one"."""
    settings = AdminSettings()
    assert settings.password is None and settings.host == "127.0.0.1" and settings.port == 7860


def test_engine_settings_load_from_env_example(env_from_example):
    """The engine accepts every value .env.example ships with."""
    settings = load_engine_settings()
    assert settings.model_id == "segmind/SSD-1B" and str(settings.default_size) == "1024x1024"
