"""Install types and contexts: what the commands declare, and /imagine, /status, /cancel in each context."""

from __future__ import annotations

import pytest

from engine.rules.policy import ELSEWHERE
from tests.bot.conftest import message_has_result, private_refusal
from tests.bot.places import NO_CHANNEL, PLACES, channel_requests, place, wait_delivered
from tests.support.discord_emulator import FakeDiscord


def _declared(fake: FakeDiscord) -> dict[str, tuple[list[int], list[int] | None]]:
    return {c["name"]: (c["integration_types"], c["contexts"]) for c in fake.commands()}


async def test_commands_declare_every_install_type_and_context(engine, fake: FakeDiscord, start_bot):
    """/imagine, /status and /cancel work through guild and user installs, in guilds, the bot's DM and
    private channels."""
    async with start_bot(engine):
        pass
    declared = _declared(fake)
    assert {name: declared[name] for name in ("imagine", "status", "cancel")} == {
        name: ([0, 1], [0, 1, 2]) for name in ("imagine", "status", "cancel")}


async def test_settings_is_declared_for_guild_installs_in_guilds_only(engine, fake: FakeDiscord, start_bot):
    """/settings is a server's business: guild install, guild context."""
    async with start_bot(engine):
        pass
    assert _declared(fake)["settings"] == ([0], [0])


async def test_user_installs_off_declares_guild_install_only(engine, fake: FakeDiscord, start_bot):
    """With USER_INSTALLS=false every command is guild install only, and none is offered in private channels."""
    async with start_bot(engine, user_installs=False):
        pass
    declared = _declared(fake)
    assert all(types == [0] and 2 not in contexts for types, contexts in declared.values())
    assert declared["imagine"][1] == [0, 1]  # the bot's DM still works through the guild install


async def test_switching_user_installs_off_syncs_again(engine, fake: FakeDiscord, start_bot):
    """The changed declarations are synced on the next start without --sync."""
    async with start_bot(engine):
        pass
    async with start_bot(engine, user_installs=False):
        pass
    assert fake.sync_count == 2


@pytest.mark.parametrize("where", PLACES)
async def test_result_arrives_through_the_interaction(engine, fake: FakeDiscord, start_bot, where: str):
    """In each install type and context, the images replace the command's deferred response."""
    _, kwargs = place(fake, where)
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"}, **kwargs)
        assert await inter.wait_acked() == 5
        await inter.wait_original(message_has_result, timeout=30)
        assert await wait_delivered(engine, 1)


@pytest.mark.parametrize("where", NO_CHANNEL)
async def test_queue_progress_and_result_never_touch_a_channel_without_the_bot(
        engine, fake: FakeDiscord, start_bot, where: str):
    """Where the bot has no channel, every message of a job goes through the interaction."""
    _, kwargs = place(fake, where)
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"}, **kwargs)
        await inter.wait_original(message_has_result, timeout=30)
        assert await wait_delivered(engine, 1)
    assert channel_requests(fake, kwargs["channel_id"]) == []


@pytest.mark.parametrize("command", ["status", "cancel"])
async def test_status_and_cancel_answer_in_a_group_dm(engine, fake: FakeDiscord, start_bot, command: str):
    """/status and /cancel answer a user install in a group DM, only for the user."""
    _, kwargs = place(fake, "group_dm")
    async with start_bot(engine):
        inter = await fake.slash(command, **kwargs)
        assert await inter.wait_acked(timeout=3) == 4
    assert inter.callbacks[0].json["data"]["flags"] & 64


@pytest.mark.parametrize("where", ["user_install_guild", "bot_dm", "group_dm", "private_dm"])
async def test_the_operators_nsfw_policy_holds_where_no_server_has_a_say(engine, fake: FakeDiscord, start_bot,
                                                                        where: str):
    """The operator's global "block" holds in DMs, group DMs and user installs in servers without the bot (it
    used to be "allow" there): without a classifier, /imagine is refused outside channels marked NSFW."""
    await engine.policy.set_defaults("global", {"nsfw_policy": "block"})
    _, kwargs = place(fake, where)
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"}, **kwargs)
        assert await inter.wait_acked(timeout=3) == 4
    assert "marked NSFW" in inter.callbacks[0].json["data"]["content"]
    assert await engine.get_job(1) is None


async def test_the_operator_may_set_another_policy_outside_servers(engine, fake: FakeDiscord, start_bot):
    """The operator's values for "elsewhere" (panel) apply in DMs, while servers keep the global ones."""
    await engine.policy.set_defaults("global", {"nsfw_policy": "block"})
    await engine.policy.set_defaults(ELSEWHERE, {"nsfw_policy": "allow"})
    _, kwargs = place(fake, "group_dm")
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"}, **kwargs)
        await inter.wait_original(message_has_result, timeout=30)
        refused = await fake.slash("imagine", {"prompt": "a fox"})
        assert await refused.wait_acked(timeout=3) == 4


@pytest.mark.parametrize(("where", "named"), [("bot_dm", "outside servers (DMs and group DMs)"),
                                              ("group_dm", "outside servers (DMs and group DMs)"),
                                              ("private_dm", "outside servers (DMs and group DMs)"),
                                              ("user_install_guild", "on this server")])
async def test_the_operators_member_quota_holds_where_no_server_has_a_say(engine, fake: FakeDiscord, start_bot,
                                                                         where: str, named: str):
    """A global member quota of 1 refuses the member's second job in DMs, group DMs and user installs (DMs used to
    have no quota at all)."""
    await engine.policy.set_defaults("global", {"quota_member_day": 1})
    _, kwargs = place(fake, where)
    async with start_bot(engine):
        first = await fake.slash("imagine", {"prompt": "a fox"}, **kwargs)
        await first.wait_original(message_has_result, timeout=30)
        text = await private_refusal(await fake.slash("imagine", {"prompt": "another fox"}, **kwargs))
    assert f"your daily quota {named}: 1 of 1 images used" in text


async def test_user_install_follows_a_guilds_own_nsfw_policy(engine, fake: FakeDiscord, start_bot):
    """A server with defaults of its own keeps its NSFW policy, also for user installs."""
    _, kwargs = place(fake, "user_install_guild")
    guild = fake.channels[kwargs["channel_id"]].guild_id
    await engine.policy.set_defaults(str(guild), {"nsfw_policy": "block"})
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"}, **kwargs)
        assert await inter.wait_acked(timeout=3) == 4
    assert "marked NSFW" in inter.callbacks[0].json["data"]["content"]


async def test_guild_install_keeps_the_global_nsfw_policy(engine, fake: FakeDiscord, start_bot):
    """A guild that installed the bot follows the operator's global policy, as before."""
    await engine.policy.set_defaults("global", {"nsfw_policy": "block"})
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a fox"})
        assert await inter.wait_acked(timeout=3) == 4


async def test_the_operators_words_for_outside_servers_are_blocked_in_dms(engine, fake: FakeDiscord, start_bot):
    """A blocklist the operator keeps for "outside servers" refuses those words in a group DM, not in servers."""
    await engine.policy.set_blocklist(ELSEWHERE, ["dragon"])
    _, kwargs = place(fake, "group_dm")
    async with start_bot(engine):
        inter = await fake.slash("imagine", {"prompt": "a red dragon"}, **kwargs)
        await inter.wait_acked(timeout=3)
        server = await fake.slash("imagine", {"prompt": "a red dragon"})
        await server.wait_original(message_has_result, timeout=30)
    assert "blocked words" in inter.callbacks[0].json["data"]["content"]
