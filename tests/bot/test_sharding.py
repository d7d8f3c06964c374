"""Sharding: past Discord's guilds per connection a single gateway connection is closed (4011); the bot asks
Discord how many shards it needs and opens one connection per shard, each serving its own servers."""

from __future__ import annotations

import discord
import pytest

from tests.bot.conftest import message_has_result
from tests.support.discord_emulator import FakeDiscord

SHARDS = 2


async def no_identify_delay(self: discord.Client, shard_id: int | None, *, initial: bool = False) -> None:
    """discord.py waits 5 s between two shards' IDENTIFY (Discord's max_concurrency 1); not needed here."""


def guild_on_shard(fake: FakeDiscord, shard: int, n: int):
    """A server of the bot whose id puts it on ``shard`` of SHARDS ((id >> 22) % shards, as Discord routes)."""
    return fake.add_guild(f"server {shard}-{n}", id=((1_000_000 + 10 * n + shard) << 22) | 7)


async def test_a_bot_in_more_servers_than_one_connection_takes_opens_shards(engine, fake: FakeDiscord, start_bot,
                                                                         monkeypatch: pytest.MonkeyPatch):
    """With more servers than one connection may serve, the bot connects with two shards (no 4011) and answers
    /imagine in a server of each."""
    monkeypatch.setattr(discord.Client, "before_identify_hook", no_identify_delay)
    fake.max_guilds_per_shard = 2
    servers = [guild_on_shard(fake, shard, 1) for shard in range(SHARDS)]
    channels = [fake.add_channel(server, "art").id for server in servers]
    async with start_bot(engine):
        answers = [await fake.slash("imagine", {"prompt": f"a fox {n}"}, channel_id=c) for n, c in enumerate(channels)]
        for answer in answers:
            await answer.wait_original(message_has_result, timeout=30)
    shards = sorted(tuple(p["d"]["shard"]) for p in fake.gateway_received if p.get("op") == 2)
    assert shards == [(0, SHARDS), (1, SHARDS)]
