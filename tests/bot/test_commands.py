"""/settings, /status, /cancel and command syncing."""

from __future__ import annotations

import logging

import pytest

from tests.support.discord_emulator import ADMINISTRATOR, FakeDiscord

MANAGE_GUILD = 1 << 5


async def _answer(inter) -> str:
    await inter.wait_acked(timeout=3)
    data = inter.callbacks[0].json["data"]
    assert data["flags"] & 64
    return data["content"]


async def test_settings_refuses_members_without_manage_server(engine, fake: FakeDiscord, start_bot):
    """/settings from an ordinary member changes nothing and says which permission is needed."""
    async with start_bot(engine):
        text = await _answer(await fake.slash("settings defaults", {"steps": 3}))
    assert text == "You need the Manage Server permission to change these settings."
    assert engine.policy.defaults(str(fake.default_guild.id)).steps == 2


async def test_settings_allows_administrators(engine, fake: FakeDiscord, start_bot):
    """Administrators pass the Manage Server check (Discord sends them every permission)."""
    async with start_bot(engine):
        text = await _answer(await fake.slash("settings defaults", {"steps": 3}, permissions=ADMINISTRATOR))
    assert "Saved" in text
    assert engine.policy.defaults(str(fake.default_guild.id)).steps == 3


async def test_settings_changes_apply_to_the_next_imagine(engine, fake: FakeDiscord, start_bot):
    """A moderator's /settings steps:3 is used by the next /imagine in that guild at once."""
    async with start_bot(engine):
        text = await _answer(await fake.slash("settings defaults", {"steps": 3, "negative_prompt": "blurry"},
                                              permissions=MANAGE_GUILD))
        assert "Saved" in text and "Steps 3" in text
        inter = await fake.slash("imagine", {"prompt": "a fox"})
        await inter.wait_original(lambda m: bool(m.get("embeds")), timeout=30)
    params = (await engine.get_job(1)).params
    assert params.steps == 3 and params.negative_prompt == "blurry"


async def test_settings_numbers_declare_their_bounds(engine, fake: FakeDiscord, start_bot):
    """Every number option of every /settings subcommand declares a minimum and a maximum, so Discord refuses
    an out-of-range value before the bot sees it (the emulator, like Discord's client, will not send it)."""
    async with start_bot(engine):
        group = next(c for c in fake.commands() if c["name"] == "settings")
        numbers = [o for sub in group["options"] for o in sub.get("options", []) if o["type"] in (4, 10)]
        with pytest.raises(ValueError, match="outside 1..60"):
            await fake.slash("settings defaults", {"steps": 999}, permissions=MANAGE_GUILD)
    assert {sub["name"] for sub in group["options"]} == {"show", "defaults", "limits", "quota", "moderation", "deny",
                                                         "undeny", "reset"}
    assert len(numbers) == 12 and all("min_value" in o and "max_value" in o for o in numbers)


async def test_settings_refuses_a_default_above_the_servers_own_limit(engine, fake: FakeDiscord, start_bot):
    """Within Discord's bounds but above the server's lowered max_steps: the engine says what to change."""
    async with start_bot(engine):
        await _answer(await fake.slash("settings limits", {"max_steps": 10}, permissions=MANAGE_GUILD))
        text = await _answer(await fake.slash("settings defaults", {"steps": 20}, permissions=MANAGE_GUILD))
    assert "steps 20 is above max" in text and "lower steps" in text


async def test_settings_blocklist_add_and_remove(engine, fake: FakeDiscord, start_bot):
    """block/unblock edit the guild's blocklist."""
    guild = str(fake.default_guild.id)
    async with start_bot(engine):
        await _answer(await fake.slash("settings moderation", {"block": "Spiders, clowns"}, permissions=MANAGE_GUILD))
        assert engine.policy.blocklist(guild) == ["clowns", "spiders"]
        await _answer(await fake.slash("settings moderation", {"unblock": "spiders"}, permissions=MANAGE_GUILD))
    assert engine.policy.blocklist(guild) == ["clowns"]


async def test_status_reports_queue_and_model(engine, fake: FakeDiscord, start_bot):
    """/status shows the model, its state and the queue."""
    async with start_bot(engine):
        text = await _answer(await fake.slash("status"))
    assert "ready" in text and "Queue:" in text and "cpu" in text


async def test_cancel_command_cancels_own_queued_jobs(gated_engine, fake: FakeDiscord, start_bot):
    """/cancel cancels the caller's queued jobs and nobody else's."""
    engine, release = gated_engine
    bob = fake.add_user("bob")
    async with start_bot(engine):
        for _ in range(2):
            await (await fake.slash("imagine", {"prompt": "mine"})).wait_acked()
        await (await fake.slash("imagine", {"prompt": "bob's"}, user=bob)).wait_acked()
        await fake.wait_until(lambda: len(engine.queue_snapshot()) == 3, timeout=10)
        text = await _answer(await fake.slash("cancel"))
        release()
    assert "Cancelled 2" in text
    jobs = [await engine.get_job(i) for i in (1, 2, 3)]  # ids follow insert order, which may interleave
    assert sorted(j.state == "cancelled" for j in jobs if j.requester.user_id != str(bob.id)) == [True, True]
    assert [j.state for j in jobs if j.requester.user_id == str(bob.id)] != ["cancelled"]


async def test_commands_sync_only_when_changed(engine, fake: FakeDiscord, start_bot):
    """The first start syncs; a restart with the same definitions does not; --sync forces it."""
    async with start_bot(engine):
        pass
    assert fake.sync_count == 1
    names = {c["name"] for c in fake.commands()}
    assert names == {"imagine", "settings", "status", "cancel", "quota", "help", "show", "prefer",
                     "Vary with Imagine"}
    async with start_bot(engine):
        pass
    assert fake.sync_count == 1
    async with start_bot(engine, force_sync=True):
        pass
    assert fake.sync_count == 2


async def test_guild_id_setting_syncs_to_that_guild(engine, fake: FakeDiscord, start_bot):
    """DISCORD_GUILD_ID makes the sync guild-scoped for instant updates during development."""
    guild = fake.default_guild.id
    async with start_bot(engine, discord_guild_id=guild):
        pass
    assert {c["name"] for c in fake.commands(guild)} >= {"imagine"}


async def test_settings_cannot_lift_the_operators_limits(engine, fake: FakeDiscord, start_bot):
    """A moderator's per_user_cap 1000 does not apply above the operator's cap, and /settings says so."""
    guild = str(fake.default_guild.id)
    operator_cap = engine.policy.defaults().per_user_cap
    async with start_bot(engine):
        text = await _answer(await fake.slash("settings limits", {"per_user_cap": 1000}, permissions=MANAGE_GUILD))
    assert engine.policy.defaults(guild).per_user_cap == operator_cap
    assert "Capped by the bot's operator" in text and f"per\\_user\\_cap 1000 is above the operator's {operator_cap}" in text


async def test_a_moderator_denies_a_member_and_lifts_it(engine, fake: FakeDiscord, start_bot):
    """/settings deny keeps a member from /imagine on this server (told privately why); undeny lifts it."""
    troll = fake.add_user("troll")
    async with start_bot(engine):
        await _answer(await fake.slash("settings deny", {"member": troll, "days": 3, "reason": "spam"},
                                       permissions=MANAGE_GUILD))
        shown = await _answer(await fake.slash("settings show", permissions=MANAGE_GUILD))
        refused = await _answer(await fake.slash("imagine", {"prompt": "a fox"}, user=troll))
        await _answer(await fake.slash("settings undeny", {"member": troll}, permissions=MANAGE_GUILD))
        again = await fake.slash("imagine", {"prompt": "a fox"}, user=troll)
        assert await again.wait_acked(timeout=3) == 5
    assert f"Denied members: <@{troll.id}> until" in shown
    assert "You may not make images here until" in refused


async def test_moving_from_a_guild_to_global_commands_removes_the_guild_copies(engine, fake: FakeDiscord,
                                                                              start_bot):
    """DISCORD_GUILD_ID unset after trying the bot in one server: the commands go global and that server's copies
    are removed (every command used to show twice there)."""
    guild = fake.default_guild.id
    async with start_bot(engine, discord_guild_id=guild):
        pass
    async with start_bot(engine):
        pass
    assert fake.commands(guild) == []
    assert "imagine" in {c["name"] for c in fake.commands()}


async def test_moving_from_global_to_a_guild_removes_the_global_copies(engine, fake: FakeDiscord, start_bot):
    """Global commands, then DISCORD_GUILD_ID for development: the global copies are removed."""
    guild = fake.default_guild.id
    async with start_bot(engine):
        pass
    async with start_bot(engine, discord_guild_id=guild):
        pass
    assert fake.commands() == []
    assert "imagine" in {c["name"] for c in fake.commands(guild)}


async def test_the_bot_logs_its_invite_url_on_start(engine, fake: FakeDiscord, start_bot, caplog):
    """The log names the invite URL with both scopes and the permissions a late result needs, Send Messages in
    Threads included (an operator used to fill in APP_ID by hand)."""
    import discord

    caplog.set_level(logging.INFO, logger="bot.client")
    async with start_bot(engine) as bot:
        app_id = bot.application_id
    url = next(r.getMessage() for r in caplog.records if "oauth2/authorize" in r.getMessage())
    assert f"client_id={app_id}" in url and "scope=bot+applications.commands" in url
    permissions = discord.Permissions(int(url.split("permissions=")[1].split("&")[0].split()[0]))
    assert permissions.send_messages_in_threads and permissions.attach_files and permissions.embed_links
    assert not permissions.administrator and not permissions.mention_everyone
