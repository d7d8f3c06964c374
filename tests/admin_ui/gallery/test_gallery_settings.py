"""The gallery's settings: from a copy of .env.example it is off; each variable is listed there; wrong values are
named with what to give instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from admin_ui.gallery.gallery_settings import GallerySettings
from tests.bot.test_settings import env_from_example  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[3]


def test_the_gallery_is_off_with_env_example(env_from_example) -> None:  # noqa: F811
    """Empty DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET: off, and the consent page is Discord's."""
    settings = GallerySettings()
    assert not settings.enabled and settings.authorize_url == "https://discord.com/oauth2/authorize"


def test_every_gallery_variable_is_in_env_example() -> None:
    """Each variable has its line in .env.example."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    names = [field.alias for field in GallerySettings.model_fields.values()]
    assert [n for n in names if n and not re.search(rf"^#?\s*{n}=", text, re.MULTILINE)] == []


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("DISCORD_CLIENT_ID", "my-app", "the application's id (digits)"),
    ("GALLERY_URL", "imagine.example.com/gallery", "is not an address"),
    ("GALLERY_URL", "https://imagine.example.com/gallery?x=1", "is not an address"),
])
def test_a_wrong_value_is_named(variable: str, value: str, message: str) -> None:
    """The error says which variable and what to give."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        GallerySettings(_env_file=None, **{variable: value})  # type: ignore[arg-type]


def test_a_trailing_slash_is_dropped() -> None:
    """GALLERY_URL with or without its last / gives the same redirect address."""
    settings = GallerySettings(_env_file=None, GALLERY_URL="https://imagine.example.com/gallery/")  # type: ignore
    assert settings.url == "https://imagine.example.com/gallery"
