"""/help through discord.py against the emulator: private, complete, within Discord's limits."""

from __future__ import annotations

import pytest

from bot.components import LOOKS, SINGLE_ACTIONS
from bot.inline import INLINE
from tests.support.discord_emulator import FakeDiscord


async def _help(fake: FakeDiscord, locale: str = "en-US") -> dict:
    inter = await fake.slash("help", locale=locale)
    await inter.wait_acked(timeout=3)
    data = inter.callbacks[0].json["data"]
    assert data["flags"] & 64  # only for the member
    [embed] = data["embeds"]
    return embed


async def test_help_lists_every_registered_command(engine, fake: FakeDiscord, start_bot):
    """Every command the bot registered with Discord is named, and the message menu too."""
    async with start_bot(engine):
        embed = await _help(fake)
        registered = fake.commands()
    slash = {c["name"] for c in registered if c.get("type", 1) == 1}
    menus = {c["name"] for c in registered if c.get("type") == 3}
    assert slash >= {"imagine", "help", "status", "quota", "cancel", "settings"}
    for name in slash:
        assert f"`/{name}`" in embed["description"], name
    for name in menus:
        assert f"**{name}**" in embed["description"], name


async def test_help_explains_every_inline_parameter_and_button(engine, fake: FakeDiscord, start_bot):
    """Each inline parameter (with an example) and each button under a result is explained."""
    async with start_bot(engine):
        embed = await _help(fake)
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    inline = fields["Inline parameters, typed after your prompt"]
    for param in INLINE:
        assert f"`--{param.names[0]}" in inline and param.meaning in inline
    buttons = fields["Buttons under a result"]
    for look in LOOKS.values():
        assert f"**{look.label}**" in buttons
    assert "**V1" in buttons and "**U1" in buttons
    single = fields["Buttons under one image (after U)"]
    assert all(f"**{label}**" in single for _, label, _, _ in SINGLE_ACTIONS if label)
    assert "\u2b05\ufe0f \u27a1\ufe0f \u2b06\ufe0f \u2b07\ufe0f**: Pan" in single
    assert "--ar 16:9" in fields["Example"]


async def test_help_names_the_gallery_where_there_is_one(engine, fake: FakeDiscord, start_bot):
    """With GALLERY_URL set, /help says where a member's images are on the web; without it, nothing is said."""
    async with start_bot(engine, gallery_url="https://imagine.example.com/gallery"):
        embed = await _help(fake)
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Your images on the web"].startswith("https://imagine.example.com/gallery/ (log in with Discord")
    async with start_bot(engine):
        plain = await _help(fake)
    assert "Your images on the web" not in {f["name"] for f in plain["fields"]}


@pytest.mark.parametrize("locale", ["de", "es-ES", "fr", "ja", "pt-BR"])
async def test_help_in_the_members_language_fits_discords_limits(engine, fake: FakeDiscord, start_bot,
                                                                  locale: str) -> None:
    """/help in each language: every heading, command, parameter and button said in it, each field within
    Discord's 1024 characters and the whole within 6000 (the emulator refuses more)."""
    async with start_bot(engine):
        embed = await _help(fake, locale)
    english = {"How to use Imagine", "Inline parameters, typed after your prompt", "Buttons under a result",
               "Buttons under one image (after U)", "Example"}
    assert embed["title"] not in english and not english & {f["name"] for f in embed["fields"]}
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    size = len(embed["title"]) + len(embed["description"]) + sum(len(f["name"]) + len(f["value"])
                                                                 for f in embed["fields"])
    assert size <= 6000
    for param in INLINE:
        assert param.meaning not in embed["fields"][0]["value"], param.meaning
    assert "`/imagine`" in embed["description"] and "`/help`" not in embed["description"]
