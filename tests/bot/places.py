"""Where a test sends a command from: one place per install type and interaction context.

Declare the place before the bot starts, so guilds are in READY the way they would be on Discord.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine.service import Engine
from tests.support.discord_emulator import FakeDiscord, FakeUser

#: guild install in a guild; the bot's DM; a user install in a guild without the bot; a group DM; a DM
#: between two other users
PLACES = ("guild", "bot_dm", "user_install_guild", "group_dm", "private_dm")
#: the places where the bot has no channel it may post in
NO_CHANNEL = ("user_install_guild", "group_dm", "private_dm")


def place(fake: FakeDiscord, name: str) -> tuple[FakeUser, dict[str, Any]]:
    """The requester and the ``fake.slash`` keywords for the place called ``name`` (one of PLACES)."""
    if name == "guild":
        return fake.default_user, {}
    if name == "bot_dm":
        return fake.default_user, {"guild_id": None}
    fan = fake.add_user("fan", app_installed=True)
    if name == "user_install_guild":
        elsewhere = fake.add_guild("Elsewhere", bot_member=False)
        return fan, {"channel_id": fake.add_channel(elsewhere, "lounge").id, "user": fan}
    if name == "group_dm":
        channel = fake.add_private_channel(fan, fake.add_user("b"), fake.add_user("c"), name="friends")
    elif name == "private_dm":
        channel = fake.add_private_channel(fan, fake.add_user("friend"))
    else:
        raise ValueError(f"unknown place {name!r}")
    return fan, {"channel_id": channel.id, "user": fan}


def channel_requests(fake: FakeDiscord, channel_id: int) -> list[str]:
    """Every request the bot made to a channel's own routes (not the interaction's webhook)."""
    return [f"{r.method} {r.path}" for r in fake.find("*", f"/channels/{channel_id}*")]


async def wait_delivered(engine: Engine, job_id: int, timeout: float = 10.0) -> bool:
    """Whether the job gets marked delivered within ``timeout`` seconds (the mark follows Discord's answer)."""
    for _ in range(int(timeout * 10)):
        job = await engine.get_job(job_id)
        if job is not None and job.delivered_at is not None:
            return True
        await asyncio.sleep(0.1)
    return False
