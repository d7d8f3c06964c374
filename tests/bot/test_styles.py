"""Style presets from Discord: the style option and its autocomplete, --style, the embed, Info, /settings."""

from __future__ import annotations

import pytest

from engine.requests.styles import make_style
from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import CALLBACK_AUTOCOMPLETE_RESULT, FakeDiscord

MANAGE_GUILD = 1 << 5


@pytest.fixture
async def styled(engine):
    """The engine with two styles: cinematic and comic."""
    limits = engine.policy.limits
    await engine.styles.save(make_style("cinematic", "cinematic still of {prompt}, film grain", "cartoon",
                                        limits=limits))
    await engine.styles.save(make_style("comic", "comic book panel of {prompt}", limits=limits))
    return engine


def _fields(msg: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}


async def test_style_option_wraps_the_prompt(styled, fake: FakeDiscord, start_bot):
    """/imagine style: runs the template around the prompt; the embed shows the user's words and the style."""
    async with start_bot(styled):
        inter = await fake.slash("imagine", {"prompt": "a red fox", "style": "cinematic"})
        msg = await inter.wait_original(message_has_result, timeout=30)
    job = await styled.get_job(1)
    assert job.params.prompt == "cinematic still of a red fox, film grain" and job.params.negative_prompt.endswith(
        "cartoon")
    assert msg["embeds"][0]["description"] == "a red fox" and _fields(msg)["Style"] == "cinematic"


async def test_inline_style_picks_the_style(styled, fake: FakeDiscord, start_bot):
    """--style name in the prompt does the same as the option."""
    async with start_bot(styled):
        inter = await fake.slash("imagine", {"prompt": "a red fox --style comic"})
        await inter.wait_original(message_has_result, timeout=30)
    assert (await styled.get_job(1)).params.prompt == "comic book panel of a red fox"


async def test_style_autocomplete_offers_matching_styles(styled, fake: FakeDiscord, start_bot):
    """Typing in the style option offers the styles that start with what was typed."""
    async with start_bot(styled):
        inter = await fake.slash("imagine", {"prompt": "a fox", "style": "ci"}, focused="style")
        assert await inter.wait_acked(timeout=3) == CALLBACK_AUTOCOMPLETE_RESULT
    assert [c["value"] for c in inter.choices] == ["cinematic"]
    assert inter.choices[0]["name"].startswith("cinematic \u2014 cinematic still of")


async def test_unknown_style_is_refused_with_the_known_ones(styled, fake: FakeDiscord, start_bot):
    """A style that does not exist gets a private answer listing the styles."""
    async with start_bot(styled):
        inter = await fake.slash("imagine", {"prompt": "a fox --style pastel"})
        await inter.wait_acked(timeout=3)
    data = inter.callbacks[0].json["data"]
    assert data["flags"] & 64 and "known styles: cinematic, comic" in data["content"]


async def test_settings_default_style_applies_to_the_next_imagine(styled, fake: FakeDiscord, start_bot):
    """/settings style: makes it the server's default; Info's /imagine line names it."""
    async with start_bot(styled):
        settings = await fake.slash("settings defaults", {"style": "comic"}, permissions=MANAGE_GUILD)
        await settings.wait_acked(timeout=3)
        assert "Style comic" in settings.callbacks[0].json["data"]["content"]
        inter = await fake.slash("imagine", {"prompt": "a red fox --seed 3"})
        msg = await inter.wait_original(message_has_result, timeout=30)
        click = await fake.click("imagine:info:1", int(msg["id"]))
        await click.wait_acked(timeout=3)
    assert (await styled.get_job(1)).params.style == "comic"
    assert "a red fox --ar" in click.callbacks[0].json["data"]["content"]
    assert "--style comic" in click.callbacks[0].json["data"]["content"]


async def test_info_line_opts_out_of_the_servers_default_style(styled, fake: FakeDiscord, start_bot):
    """An unstyled job's /imagine line says --style none where the server's default style would wrap it."""
    async with start_bot(styled):
        inter = await fake.slash("imagine", {"prompt": "a red fox --seed 3"})
        msg = await inter.wait_original(message_has_result, timeout=30)
        await styled.policy.set_defaults(str(fake.default_guild.id), {"style": "comic"})
        click = await fake.click("imagine:info:1", int(msg["id"]))
        await click.wait_acked(timeout=3)
    assert "--style none" in click.callbacks[0].json["data"]["content"]
