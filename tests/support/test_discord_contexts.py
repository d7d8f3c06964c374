"""Tests of the emulator's install types and interaction contexts (discord_contexts.py), through real discord.py.

The client here declares two global commands: ``/draw`` for guild and user installs in every context, and
``/guildcmd`` for guild installs in servers and the bot's DM. ``/draw`` answers through its interaction and
reports what discord.py saw, so a test can check both the payload and how discord.py read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
import yarl
from discord import app_commands

from .discord_contexts import BOT_DM_APP_PERMISSIONS, PRIVATE_APP_PERMISSIONS
from .discord_emulator import FakeDiscord, run_client

pytestmark = pytest.mark.timeout(20)


class ContextBot(discord.Client):
    """A plain discord.py client whose tree defaults to every install type and context."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(
            self,
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
        )
        self.seen: asyncio.Queue[discord.Interaction] = asyncio.Queue()

        @self.tree.command(name="draw", description="Draw something")
        async def draw(interaction: discord.Interaction, prompt: str) -> None:
            await interaction.response.send_message(prompt, view=_button_view())
            await self.seen.put(interaction)

        @self.tree.command(name="guildcmd", description="Guild installs only")
        @app_commands.allowed_installs(guilds=True, users=False)
        @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
        async def guildcmd(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("ok")

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def next_seen(self) -> discord.Interaction:
        """The next /draw interaction, once answered."""
        return await asyncio.wait_for(self.seen.get(), timeout=5)


def _button_view() -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Again", custom_id="ctx:again"))
    return view


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as emulator:
        yield emulator


@pytest.fixture
async def bot(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ContextBot]:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    async with run_client(ContextBot()) as client:
        yield client


async def _draw(fake: FakeDiscord, bot: ContextBot, **where: Any) -> tuple[Any, discord.Interaction]:
    handle = await fake.slash("draw", {"prompt": "a fox"}, **where)
    seen = await bot.next_seen()
    return handle, seen


# ----------------------------------------------------------------------------------------------------------------
# Command declarations
# ----------------------------------------------------------------------------------------------------------------


async def test_sync_records_integration_types_and_contexts(fake: FakeDiscord, bot: ContextBot) -> None:
    declared = {c["name"]: (c["integration_types"], c["contexts"]) for c in fake.commands()}
    assert declared == {"draw": ([0, 1], [0, 1, 2]), "guildcmd": ([0], [0, 1])}
    assert {c["name"]: c["integration_types"] for c in fake.command_syncs[-1].commands} == {
        "draw": [0, 1], "guildcmd": [0]}


async def test_private_channel_context_without_user_install_is_refused(fake: FakeDiscord, bot: ContextBot) -> None:
    @app_commands.command(name="bad", description="Private channels without a user install")
    @app_commands.allowed_installs(guilds=True, users=False)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def bad(interaction: discord.Interaction) -> None:
        pass

    bot.tree.add_command(bad)
    with pytest.raises(app_commands.CommandSyncFailure) as info:
        await bot.tree.sync()
    assert info.value.code == 50035
    assert "bad" not in {c["name"] for c in fake.commands()}


# ----------------------------------------------------------------------------------------------------------------
# One interaction per context
# ----------------------------------------------------------------------------------------------------------------


async def test_guild_install_in_a_guild_is_context_0_owned_by_the_guild(fake: FakeDiscord, bot: ContextBot) -> None:
    handle, seen = await _draw(fake, bot)
    guild = fake.default_guild.id
    assert handle.payload["context"] == 0
    assert handle.payload["authorizing_integration_owners"] == {"0": str(guild)}
    assert seen.context.guild and seen.is_guild_integration() and not seen.is_user_integration()


async def test_bot_dm_is_context_1_with_guild_owner_zero(fake: FakeDiscord, bot: ContextBot) -> None:
    handle, seen = await _draw(fake, bot, guild_id=None)
    assert handle.payload["context"] == 1
    assert handle.payload["authorizing_integration_owners"] == {"0": "0"}
    assert int(handle.payload["app_permissions"]) == BOT_DM_APP_PERMISSIONS
    assert isinstance(seen.channel, discord.DMChannel) and seen.context.dm_channel
    await seen.channel.send("the bot may post in its own DM")
    assert fake.channel_messages(handle.channel.id)[-1]["content"] == "the bot may post in its own DM"


async def test_user_who_installed_the_app_adds_key_1_in_the_bot_dm(fake: FakeDiscord, bot: ContextBot) -> None:
    fan = fake.add_user("fan", app_installed=True)
    handle, _ = await _draw(fake, bot, guild_id=None, user=fan)
    assert handle.payload["authorizing_integration_owners"] == {"0": "0", "1": str(fan.id)}


async def test_user_install_in_a_guild_without_the_bot_is_owned_by_the_user(fake: FakeDiscord, bot: ContextBot) -> None:
    elsewhere = fake.add_guild("Elsewhere", bot_member=False)
    room = fake.add_channel(elsewhere, "lounge")
    fan = fake.add_user("fan", app_installed=True)
    handle, seen = await _draw(fake, bot, channel_id=room.id, user=fan)
    assert handle.payload["context"] == 0 and handle.payload["guild_id"] == str(elsewhere.id)
    assert handle.payload["authorizing_integration_owners"] == {"1": str(fan.id)}
    assert int(handle.payload["app_permissions"]) == PRIVATE_APP_PERMISSIONS
    assert seen.is_user_integration() and not seen.is_guild_integration()
    assert bot.get_guild(elsewhere.id) is None  # not in READY, no GUILD_CREATE


async def test_bot_posting_in_a_guild_it_is_not_in_gets_50001(fake: FakeDiscord, bot: ContextBot) -> None:
    elsewhere = fake.add_guild("Elsewhere", bot_member=False)
    room = fake.add_channel(elsewhere, "lounge")
    with pytest.raises(discord.Forbidden) as info:
        await bot.get_partial_messageable(room.id).send("hello")
    assert info.value.code == 50001 and fake.channel_messages(room.id) == []


async def test_dm_between_two_users_is_a_private_channel(fake: FakeDiscord, bot: ContextBot) -> None:
    fan = fake.add_user("fan", app_installed=True)
    friend = fake.add_user("friend")
    dm = fake.add_private_channel(fan, friend)
    handle, seen = await _draw(fake, bot, channel_id=dm.id, user=fan)
    assert handle.payload["context"] == 2 and "guild_id" not in handle.payload
    assert handle.payload["authorizing_integration_owners"] == {"1": str(fan.id)}
    assert handle.payload["channel"]["type"] == 1
    assert [u["id"] for u in handle.payload["channel"]["recipients"]] == [str(friend.id)]
    assert isinstance(seen.channel, discord.DMChannel) and seen.context.private_channel
    assert (await handle.wait_original())["content"] == "a fox"  # the interaction's own answer works there


async def test_group_dm_is_type_3_and_the_bot_cannot_post_there(fake: FakeDiscord, bot: ContextBot) -> None:
    fan = fake.add_user("fan", app_installed=True)
    group = fake.add_private_channel(fan, fake.add_user("b"), fake.add_user("c"), name="friends")
    handle, seen = await _draw(fake, bot, channel_id=group.id, user=fan)
    assert handle.payload["channel"]["type"] == 3 and handle.payload["channel"]["name"] == "friends"
    assert isinstance(seen.channel, discord.GroupChannel)
    with pytest.raises(discord.Forbidden) as info:
        await seen.channel.send("hello")
    assert info.value.code == 50001


async def test_commands_are_not_offered_where_no_install_authorizes_them(fake: FakeDiscord, bot: ContextBot) -> None:
    fan = fake.add_user("fan", app_installed=True)
    group = fake.add_private_channel(fan, fake.add_user("b"), fake.add_user("c"))
    with pytest.raises(LookupError):
        await fake.slash("guildcmd", channel_id=group.id, user=fan)  # guild install only: no private channels
    elsewhere = fake.add_guild("Elsewhere", bot_member=False)
    room = fake.add_channel(elsewhere, "lounge")
    with pytest.raises(LookupError):
        await fake.slash("draw", {"prompt": "x"}, channel_id=room.id)  # alice never installed the app


async def test_only_members_of_a_private_channel_act_from_it(fake: FakeDiscord, bot: ContextBot) -> None:
    group = fake.add_private_channel(*(fake.add_user(n, app_installed=True) for n in "abc"))
    with pytest.raises(ValueError):
        await fake.slash("draw", {"prompt": "x"}, channel_id=group.id)  # alice is not in that group DM


async def test_click_keeps_the_owners_of_the_interaction_that_sent_the_message(
    fake: FakeDiscord, bot: ContextBot
) -> None:
    fan = fake.add_user("fan", app_installed=True)
    elsewhere = fake.add_guild("Elsewhere", bot_member=False)
    room = fake.add_channel(elsewhere, "lounge")
    handle, _ = await _draw(fake, bot, channel_id=room.id, user=fan)
    original = await handle.wait_original()
    click = await fake.click("ctx:again", int(original["id"]), user=fake.add_user("bystander"))
    assert click.payload["authorizing_integration_owners"] == {"1": str(fan.id)}


async def test_guild_routes_of_a_guild_without_the_bot_get_50001(fake: FakeDiscord, bot: ContextBot) -> None:
    elsewhere = fake.add_guild("Elsewhere", bot_member=False)
    with pytest.raises(discord.Forbidden) as info:
        await bot.fetch_guild(elsewhere.id)
    assert info.value.code == 50001
    with pytest.raises(discord.Forbidden):
        await bot.tree.sync(guild=discord.Object(elsewhere.id))
