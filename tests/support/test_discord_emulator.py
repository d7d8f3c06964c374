"""Tests of the Discord emulator, driven by a minimal real discord.py client defined here (not the project's bot).

Each test exercises one emulator behaviour through discord.py's real HTTP, multipart, rate-limit and gateway
code. The client's ``/imagine`` command runs a per-test *scenario* coroutine and reports what it returned or
raised on ``bot.outcomes``, so a test can assert both on the emulator's records and on what discord.py saw.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands

from .discord_emulator import (
    ADMINISTRATOR,
    MANAGE_MESSAGES,
    FakeDiscord,
    run_client,
)

pytestmark = pytest.mark.timeout(20)

Scenario = Callable[[discord.Interaction, str], Awaitable[Any]]


# ----------------------------------------------------------------------------------------------------------------
# The minimal bot under test
# ----------------------------------------------------------------------------------------------------------------


class Reroll(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"emu:reroll:(?P<job>\d+)"):
    """A persistent button whose state lives in its custom_id, so it survives a bot restart."""

    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Reroll", custom_id=f"emu:reroll:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: Any, /
    ) -> Reroll:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"rerolling job {self.job}")


class EmuBot(discord.Client):
    """A plain discord.py client with a CommandTree: /imagine (global) and /gonly (guild-scoped)."""

    def __init__(self, guild_id: int) -> None:
        # guild_ready_timeout: on_ready otherwise waits 2 s after the last GUILD_CREATE.
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(self)
        self.guild_id = guild_id
        self.scenario: Scenario | None = None
        self.outcomes: asyncio.Queue[Any] = asyncio.Queue()
        #: Scenarios wait on this so a test can act (e.g. move the clock) at a precise point.
        self.gate = asyncio.Event()

        @self.tree.command(name="imagine", description="Generate an image")
        @app_commands.describe(prompt="What to draw", steps="Sampling steps")
        async def imagine(interaction: discord.Interaction, prompt: str, steps: int = 4) -> None:
            try:
                if self.scenario is None:
                    result: Any = await interaction.response.send_message(f"{prompt} ({steps} steps)")
                else:
                    result = await self.scenario(interaction, prompt)
            except Exception as exc:  # report to the test instead of the tree's error log
                await self.outcomes.put(exc)
            else:
                await self.outcomes.put(result)

        @app_commands.command(name="gonly", description="Guild-only command")
        async def gonly(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("guild only")

        self.tree.add_command(gonly, guild=discord.Object(id=guild_id))

    async def setup_hook(self) -> None:
        self.add_dynamic_items(Reroll)
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(id=self.guild_id))

    async def next_outcome(self, timeout: float = 5.0) -> Any:
        """What the next /imagine run returned or raised."""
        return await asyncio.wait_for(self.outcomes.get(), timeout=timeout)


def tiny_png(width: int = 2, height: int = 3) -> bytes:
    """A valid greyscale PNG, built by hand so the test needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def blob_file(name: str, size: int) -> discord.File:
    return discord.File(io.BytesIO(b"\0" * size), filename=name)


# ----------------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as emulator:
        yield emulator


@pytest.fixture
def redirect(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point discord.py at the emulator: the only two knobs a real bot needs."""
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))


@pytest.fixture
async def bot(fake: FakeDiscord, redirect: None) -> AsyncIterator[EmuBot]:
    async with run_client(EmuBot(fake.default_guild.id)) as client:
        yield client


# ----------------------------------------------------------------------------------------------------------------
# Startup
# ----------------------------------------------------------------------------------------------------------------


async def test_ready_then_guild_create_gives_the_bot_guild_and_channel_names(fake: FakeDiscord, bot: EmuBot) -> None:
    guild = bot.get_guild(fake.default_guild.id)
    assert guild is not None and guild.name == "Test Guild"
    assert [c.name for c in guild.text_channels] == ["general"]
    assert bot.user is not None and bot.user.id == fake.bot_user.id
    assert fake.identify_count == 1


async def test_login_with_the_wrong_token_fails(redirect: None) -> None:
    async with FakeDiscord(token="right") as strict:
        discord.http.Route.BASE = strict.api_base  # this test's own emulator; monkeypatch restores it
        with pytest.raises(discord.LoginFailure):
            async with run_client(EmuBot(strict.default_guild.id), token="wrong"):
                pass


async def test_sync_stores_global_and_guild_commands(fake: FakeDiscord, bot: EmuBot) -> None:
    assert fake.sync_count == 2
    assert [s.guild_id for s in fake.command_syncs] == [None, fake.default_guild.id]
    (imagine,) = fake.commands()
    assert imagine["name"] == "imagine"
    assert [(o["name"], o["type"], o.get("required", False)) for o in imagine["options"]] == [
        ("prompt", 3, True),
        ("steps", 4, False),
    ]
    assert [c["name"] for c in fake.commands(fake.default_guild.id)] == ["gonly"]


async def test_resync_keeps_command_ids_and_counts_again(fake: FakeDiscord, bot: EmuBot) -> None:
    first_id = fake.commands()[0]["id"]
    await bot.tree.sync()
    assert fake.sync_count == 3
    assert fake.commands()[0]["id"] == first_id


# ----------------------------------------------------------------------------------------------------------------
# Slash commands and responses
# ----------------------------------------------------------------------------------------------------------------


async def test_slash_options_arrive_typed(fake: FakeDiscord, bot: EmuBot) -> None:
    handle = await fake.slash("imagine", {"prompt": "a red fox", "steps": 12})
    assert await handle.wait_acked() == 4
    assert handle.payload["data"]["options"] == [
        {"name": "prompt", "type": 3, "value": "a red fox"},
        {"name": "steps", "type": 4, "value": 12},
    ]
    assert "guild_id" not in handle.payload["data"]  # global command
    original = await handle.wait_original()
    assert original["content"] == "a red fox (12 steps)"


async def test_guild_scoped_command_carries_data_guild_id(fake: FakeDiscord, bot: EmuBot) -> None:
    handle = await fake.slash("gonly")
    assert await handle.wait_acked() == 4
    assert handle.payload["data"]["guild_id"] == str(fake.default_guild.id)


async def test_defer_edit_with_file_and_embed_then_ephemeral_followup(fake: FakeDiscord, bot: EmuBot) -> None:
    png = tiny_png()

    async def scenario(interaction: discord.Interaction, prompt: str) -> bytes:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="step 1/2")
        embed = discord.Embed(title=prompt).set_image(url="attachment://out.png")
        message = await interaction.edit_original_response(
            content=None, attachments=[discord.File(io.BytesIO(png), filename="out.png")], embed=embed
        )
        await interaction.followup.send("only you can see this", ephemeral=True)
        return await message.attachments[0].read()  # served by the emulator's CDN route

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "a red fox"})
    assert await bot.next_outcome() == png
    assert [c.json for c in handle.callbacks] == [{"type": 5}]
    edit = fake.find("PATCH", "/webhooks/*/messages/@original", where=lambda r: bool(r.files))[0]
    assert edit.json["attachments"] == [{"id": 0, "filename": "out.png"}]
    assert edit.file_names == ["out.png"] and edit.file_sizes == [len(png)]
    original = handle.original
    assert original is not None
    (attachment,) = original["attachments"]
    assert (attachment["filename"], attachment["width"], attachment["height"]) == ("out.png", 2, 3)
    assert original["embeds"][0]["image"]["url"] == attachment["url"]
    assert fake.attachment_bytes(attachment) == png
    assert original["flags"] == 0  # the loading flag is gone after the edit
    (followup,) = handle.followups
    assert followup["content"] == "only you can see this" and followup["flags"] == 64


async def test_first_followup_after_defer_edits_the_loading_message(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("done")

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"})
    assert await bot.next_outcome() is None
    original = handle.original
    assert original is not None and original["content"] == "done"
    assert handle.followups == []


async def test_late_ack_gets_10062(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await bot.gate.wait()
        await interaction.response.defer()

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"})
    fake.clock.advance(3.5)
    bot.gate.set()
    error = await bot.next_outcome()
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert not handle.acked


async def test_second_ack_gets_40060(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()
        # discord.py refuses a second ack locally; a fresh InteractionResponse is what a buggy bot (or a
        # second bot instance) would send.
        await discord.InteractionResponse(interaction).defer()

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"})
    error = await bot.next_outcome()
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (400, 40060)
    assert [c.status for c in handle.callbacks] == [200, 400]


async def test_token_older_than_15_minutes_gets_50027(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()
        await bot.gate.wait()
        await interaction.edit_original_response(content="too late")

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"})
    await handle.wait_acked()
    fake.clock.advance(15 * 60 + 1)
    bot.gate.set()
    error = await bot.next_outcome()
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)


async def test_file_over_attachment_size_limit_gets_413(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> int:
        limit = interaction.filesize_limit
        await interaction.response.send_message(file=blob_file("big.png", limit + 1))
        return limit

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"}, attachment_size_limit=1000)
    error = await bot.next_outcome()
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (413, 40005)
    assert handle.callbacks[0].file_sizes == [1001]


async def test_eleven_files_get_30015(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(attachments=[blob_file(f"{i}.png", 10) for i in range(11)])

    bot.scenario = scenario
    await fake.slash("imagine", {"prompt": "x"})
    error = await bot.next_outcome()
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (400, 30015)


async def test_content_over_2000_chars_gets_50035(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.send_message("x" * 2001)

    bot.scenario = scenario
    await fake.slash("imagine", {"prompt": "x"})
    error = await bot.next_outcome()
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (400, 50035)
    assert "content" in error.text  # discord.py flattens Discord's "errors" tree into the text


async def test_embed_title_over_256_chars_gets_50035(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.send_message(embed=discord.Embed(title="t" * 257))

    bot.scenario = scenario
    await fake.slash("imagine", {"prompt": "x"})
    error = await bot.next_outcome()
    assert isinstance(error, discord.HTTPException) and error.code == 50035
    assert "embeds.0.title" in error.text


async def test_duplicate_custom_ids_get_50035(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        view = discord.ui.View()
        view.add_item(discord.ui.Button(label="a", custom_id="same"))
        view.add_item(discord.ui.Button(label="b", custom_id="same"))
        await interaction.response.send_message("x", view=view)

    bot.scenario = scenario
    await fake.slash("imagine", {"prompt": "x"})
    error = await bot.next_outcome()
    assert isinstance(error, discord.HTTPException) and error.code == 50035
    assert "components.0.components.1.custom_id" in error.text


# ----------------------------------------------------------------------------------------------------------------
# Rate limits and injected failures
# ----------------------------------------------------------------------------------------------------------------


async def progress_edits(interaction: discord.Interaction, prompt: str) -> None:
    await interaction.response.defer()
    for step in range(7):
        await interaction.edit_original_response(content=f"step {step}")


async def test_rate_limited_edit_is_retried_by_discord_py(fake: FakeDiscord, bot: EmuBot) -> None:
    # Without X-RateLimit headers discord.py cannot pace itself, so it runs into the 429 and must retry it.
    fake.limits.advertise_rate_limit_headers = False
    fake.limits.webhook_rate_window = 0.5
    bot.scenario = progress_edits
    handle = await fake.slash("imagine", {"prompt": "x"})
    assert await bot.next_outcome() is None
    limited = fake.find("PATCH", "*/@original", where=lambda r: r.status == 429)
    assert limited and limited[0].response["retry_after"] > 0
    original = handle.original
    assert original is not None and original["content"] == "step 6"


async def test_rate_limit_headers_let_discord_py_avoid_429(fake: FakeDiscord, bot: EmuBot) -> None:
    fake.limits.webhook_rate_window = 0.5
    bot.scenario = progress_edits
    await fake.slash("imagine", {"prompt": "x"})
    assert await bot.next_outcome() is None
    statuses = [r.status for r in fake.find("PATCH", "*/@original")]
    assert statuses == [200] * 7


async def test_injected_500_is_retried(fake: FakeDiscord, bot: EmuBot) -> None:
    injection = fake.inject("PATCH", "/webhooks/*/messages/@original", 500)

    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="landed")

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"})
    assert await bot.next_outcome() is None  # discord.py slept ~1 s and retried
    assert injection.hits == 1
    assert [r.status for r in fake.find("PATCH", "*/@original")] == [500, 200]
    original = handle.original
    assert original is not None and original["content"] == "landed"


async def test_injected_429_on_callback_is_retried(fake: FakeDiscord, bot: EmuBot) -> None:
    fake.inject("POST", "/interactions/*/callback", 429)  # default body/headers make it retryable
    handle = await fake.slash("imagine", {"prompt": "x"})
    assert await handle.wait_acked() == 4
    assert [c.status for c in handle.callbacks] == [429, 200]


# ----------------------------------------------------------------------------------------------------------------
# Channels and DMs
# ----------------------------------------------------------------------------------------------------------------


async def test_posting_where_the_bot_may_not_gets_50013(fake: FakeDiscord, redirect: None) -> None:
    locked = fake.add_channel(fake.default_guild, "announcements", bot_can_post=False)
    async with run_client(EmuBot(fake.default_guild.id)) as client:
        channel = client.get_channel(locked.id)
        assert isinstance(channel, discord.TextChannel)
        assert not channel.permissions_for(channel.guild.me).send_messages
        with pytest.raises(discord.Forbidden) as info:
            await channel.send("hello")
    assert info.value.code == 50013


async def test_channel_message_is_stored_and_fetchable(fake: FakeDiscord, bot: EmuBot) -> None:
    channel = bot.get_channel(fake.default_channel.id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hello", file=discord.File(io.BytesIO(tiny_png()), filename="a.png"))
    fetched = await channel.fetch_message(sent.id)
    assert fetched.content == "hello" and fetched.attachments[0].filename == "a.png"
    stored = fake.channel_messages(fake.default_channel.id)
    assert [m["content"] for m in stored] == ["hello"]
    assert stored[0]["author"]["id"] == str(fake.bot_user.id)


async def test_dm_to_a_user_who_refuses_dms_gets_50007(fake: FakeDiscord, bot: EmuBot) -> None:
    shy = fake.add_user("shy", accepts_dms=False)

    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.user.send("your image")

    bot.scenario = scenario
    await fake.slash("imagine", {"prompt": "x"}, user=shy)
    error = await bot.next_outcome()
    assert isinstance(error, discord.Forbidden) and error.code == 50007
    dm = fake.find("POST", "/users/@me/channels")[0]
    assert dm.json == {"recipient_id": shy.id} and dm.response["type"] == 1


async def test_member_permissions_reach_the_bot(fake: FakeDiscord, bot: EmuBot) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> bool:
        assert isinstance(interaction.user, discord.Member)
        await interaction.response.send_message("ok")
        return interaction.permissions.manage_messages

    bot.scenario = scenario
    await fake.slash("imagine", {"prompt": "x"})
    assert await bot.next_outcome() is False
    await fake.slash("imagine", {"prompt": "x"}, permissions=MANAGE_MESSAGES)
    assert await bot.next_outcome() is True
    await fake.slash("imagine", {"prompt": "x"}, permissions=ADMINISTRATOR)  # expanded to every permission
    assert await bot.next_outcome() is True


# ----------------------------------------------------------------------------------------------------------------
# Components, modals and restarts
# ----------------------------------------------------------------------------------------------------------------


async def test_dynamic_button_click_reaches_a_brand_new_client(fake: FakeDiscord, redirect: None) -> None:
    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(Reroll(7))
        await interaction.response.send_message("here is your image", view=view)

    async with run_client(EmuBot(fake.default_guild.id)) as first:
        first.scenario = scenario
        handle = await fake.slash("imagine", {"prompt": "x"})
        await first.next_outcome()
    original = handle.original
    assert original is not None

    async with run_client(EmuBot(fake.default_guild.id)):
        click = await fake.click("emu:reroll:7", int(original["id"]))
        assert await click.wait_acked() == 4
        reply = await click.wait_original()
    assert reply["content"] == "rerolling job 7"
    assert click.payload["message"]["components"] == original["components"]
    assert fake.identify_count == 2


async def test_update_message_callback_edits_the_clicked_message(fake: FakeDiscord, bot: EmuBot) -> None:
    class Counter(discord.ui.View):
        @discord.ui.button(label="+1", custom_id="emu:count")
        async def bump(self, interaction: discord.Interaction, button: discord.ui.Button[Counter]) -> None:
            await interaction.response.edit_message(content="clicked", view=None)

    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.send_message("click me", view=Counter())

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"})
    await bot.next_outcome()
    assert handle.original is not None
    click = await fake.click("emu:count", int(handle.original["id"]))
    assert await click.wait_acked() == 7
    assert handle.original["content"] == "clicked" and handle.original["components"] == []


async def test_modal_round_trip(fake: FakeDiscord, bot: EmuBot) -> None:
    submitted: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    class Feedback(discord.ui.Modal, title="Feedback"):
        text: discord.ui.TextInput[Feedback] = discord.ui.TextInput(label="Text", custom_id="emu:text")

        async def on_submit(self, interaction: discord.Interaction) -> None:
            submitted.set_result(self.text.value)
            await interaction.response.send_message("thanks", ephemeral=True)

    async def scenario(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.send_modal(Feedback(custom_id="emu:feedback"))

    bot.scenario = scenario
    handle = await fake.slash("imagine", {"prompt": "x"})
    assert await handle.wait_acked() == 9
    assert handle.modal is not None and handle.modal["custom_id"] == "emu:feedback"
    submit = await fake.submit_modal("emu:feedback", {"emu:text": "nice"})
    assert await asyncio.wait_for(submitted, 5) == "nice"
    assert await submit.wait_acked() == 4


# ----------------------------------------------------------------------------------------------------------------
# Gateway resilience
# ----------------------------------------------------------------------------------------------------------------


async def test_abrupt_gateway_drop_is_resumed(fake: FakeDiscord, bot: EmuBot) -> None:
    await fake.drop_gateway()
    await fake.wait_until(lambda: fake.resumed_count == 1, what="RESUMED")
    assert (fake.identify_count, fake.resume_count) == (1, 1)
    handle = await fake.slash("imagine", {"prompt": "after resume"})
    assert await handle.wait_acked() == 4


async def test_gateway_close_code_is_resumed(fake: FakeDiscord, bot: EmuBot) -> None:
    await fake.drop_gateway(code=4000)
    await fake.wait_until(lambda: fake.resumed_count == 1, what="RESUMED")
    assert fake.identify_count == 1


async def skip_identify_delay(self: discord.Client, shard_id: int | None, *, initial: bool = False) -> None:
    """Replacement for discord.py's before_identify_hook, which sleeps 5 s before every non-initial IDENTIFY."""


async def test_invalidated_session_leads_to_a_second_identify(
    fake: FakeDiscord, bot: EmuBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.Client, "before_identify_hook", skip_identify_delay)
    fake.invalidate_sessions()
    await fake.drop_gateway()
    await fake.wait_until(lambda: fake.identify_count == 2, what="second IDENTIFY")
    assert (fake.invalid_session_count, fake.resumed_count) == (1, 0)
    await fake.wait_until(lambda: fake.connected, what="new session")
    handle = await fake.slash("imagine", {"prompt": "after re-identify"})
    assert await handle.wait_acked() == 4


# ----------------------------------------------------------------------------------------------------------------
# Recording API (no bot needed)
# ----------------------------------------------------------------------------------------------------------------


async def test_wait_for_returns_past_and_future_requests(fake: FakeDiscord) -> None:
    headers = {"Authorization": "Bot any"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.api_base}/users/@me", headers=headers) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        past = await fake.wait_for("GET", "/users/@me", timeout=1)
        assert past.index == 0 and past.status == 200

        since = fake.mark()
        waiter = asyncio.ensure_future(fake.wait_for("GET", "/users/@me", since=since, timeout=2))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        async with http.get(f"{fake.api_base}/users/@me", headers=headers):
            pass
        assert (await waiter).index == since


async def test_wait_for_times_out(fake: FakeDiscord) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await fake.wait_for("GET", "/nothing", timeout=0.1)


async def test_slash_without_a_connected_bot_raises(fake: FakeDiscord) -> None:
    fake.register_commands([{"name": "imagine", "description": "d"}])
    with pytest.raises(RuntimeError):
        await fake.slash("imagine", {"prompt": "x"})


# ----------------------------------------------------------------------------------------------------------------
# Gateway protocol details (raw websocket, no discord.py)
# ----------------------------------------------------------------------------------------------------------------


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    return await ws.receive_json(timeout=2)


async def test_resume_replays_dispatches_missed_while_disconnected(fake: FakeDiscord) -> None:
    fake.register_commands([{"name": "imagine", "description": "d"}])
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(fake.gateway_url) as ws:
            assert (await receive_json(ws))["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": "t", "intents": 1, "properties": {}}})
            ready = await receive_json(ws)
            guild_create = await receive_json(ws)
            assert (ready["t"], ready["s"], guild_create["t"], guild_create["s"]) == ("READY", 1, "GUILD_CREATE", 2)
            await fake.drop_gateway()
        handle = await fake.slash("imagine", {"prompt": "while away"})  # buffered: nobody is connected
        async with http.ws_connect(fake.gateway_url) as ws:
            await receive_json(ws)  # HELLO
            await ws.send_json({"op": 6, "d": {"token": "t", "session_id": ready["d"]["session_id"], "seq": 2}})
            replayed = await receive_json(ws)
            resumed = await receive_json(ws)
    assert (replayed["t"], replayed["s"], replayed["d"]["id"]) == ("INTERACTION_CREATE", 3, str(handle.id))
    assert (resumed["t"], resumed["s"]) == ("RESUMED", 4)
    assert (fake.resume_count, fake.resumed_count) == (1, 1)


async def test_resume_of_an_unknown_session_gets_op_9_false(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(fake.gateway_url) as ws:
            await receive_json(ws)  # HELLO
            await ws.send_json({"op": 1, "d": None})
            assert (await receive_json(ws))["op"] == 11
            await ws.send_json({"op": 6, "d": {"token": "t", "session_id": "nope", "seq": 5}})
            assert await receive_json(ws) == {"op": 9, "d": False, "s": None, "t": None}
    assert fake.invalid_session_count == 1


async def identify_raw(http: aiohttp.ClientSession, fake: FakeDiscord) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(fake.gateway_url)
    await receive_json(ws)  # HELLO
    await ws.send_json({"op": 2, "d": {"token": "t", "intents": 1, "properties": {}}})
    ready = await receive_json(ws)
    await receive_json(ws)  # GUILD_CREATE
    return ws, ready["d"]["session_id"]


async def test_close_code_1000_ends_the_session(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        ws, session_id = await identify_raw(http, fake)
        await ws.close(code=1000)
        await fake.wait_until(lambda: not fake.connected, what="disconnect")
        async with http.ws_connect(fake.gateway_url) as again:
            await receive_json(again)  # HELLO
            await again.send_json({"op": 6, "d": {"token": "t", "session_id": session_id, "seq": 2}})
            assert (await receive_json(again))["op"] == 9


async def test_close_code_4000_keeps_the_session_resumable(fake: FakeDiscord) -> None:
    # discord.py's Client.close() actually sends 4000 (its poll task wins the race against close(1000)),
    # so a stopped bot leaves a resumable session behind, as on real Discord.
    async with aiohttp.ClientSession() as http:
        ws, session_id = await identify_raw(http, fake)
        await ws.close(code=4000)
        await fake.wait_until(lambda: not fake.connected, what="disconnect")
        async with http.ws_connect(fake.gateway_url) as again:
            await receive_json(again)  # HELLO
            await again.send_json({"op": 6, "d": {"token": "t", "session_id": session_id, "seq": 2}})
            assert (await receive_json(again))["t"] == "RESUMED"


async def test_one_connection_over_the_guild_limit_is_closed_with_4011(fake: FakeDiscord, redirect: None) -> None:
    """Like Discord past 2 500 servers (here 1): an unsharded connection is closed with "Sharding required"."""
    fake.max_guilds_per_shard = 1
    fake.add_guild("a second server")
    with pytest.raises(discord.ConnectionClosed) as info:
        async with run_client(EmuBot(fake.default_guild.id)):
            pass
    assert info.value.code == 4011
