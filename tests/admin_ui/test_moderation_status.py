"""Moderation and Status tabs through gradio_client, and the panel while the model is loading."""

from __future__ import annotations

import asyncio
import threading

from gradio_client import Client

from admin_ui.server import AdminServer
from engine.gpu.model import ModelLoadError
from engine.requests.params import NSFW_POLICIES
from engine.service import GLOBAL, Engine, default_loader
from tests.admin_ui.support import PASSWORD, USER, admin_settings


async def test_blocklist_save_for_global_and_a_guild(call, engine):
    """Comma and newline separated words are stored per scope and block prompts at once."""
    words, message, _scope = await call("/save_blocklist", GLOBAL, "Gore, spider\nclown")
    assert "Saved 3 blocked word(s)" in message
    assert words.split("\n") == ["clown", "gore", "spider"]
    await call("/save_blocklist", "222", "cake")
    assert engine.policy.blocklist(GLOBAL) == ["clown", "gore", "spider"]
    assert engine.policy.blocklist("222") == ["cake"]
    assert engine.policy.blocked_words("a CLOWN eating cake", "222") == ["clown", "cake"]
    assert engine.policy.blocked_words("a cake", "111") == []


async def test_nsfw_policy_is_stored_as_the_guild_override(call, engine):
    """The per-server NSFW policy lands in the server's overrides as nsfw_policy."""
    default = engine.policy.defaults().nsfw_policy
    chosen = next(p for p in NSFW_POLICIES if p != default)
    message = await call("/save_nsfw_policy", "111", chosen, engine.policy.defaults().nsfw_threshold)
    assert f"'{chosen}'" in message
    assert engine.policy.overrides("111") == {"nsfw_policy": chosen}
    assert engine.policy.defaults("111").nsfw_policy == chosen
    assert engine.policy.defaults("222").nsfw_policy == default
    words, _note, policy, _threshold, _message = await call("/load_moderation", "111")
    assert policy == chosen and words == ""


async def test_status_reports_model_device_and_throughput(call, engine, tiny_model_dir):
    """The status table names the model, device, state, queue and timing figures."""
    table, banner = await call("/status")
    assert str(tiny_model_dir) in table
    assert "loaded" in table and '<th>Device</th><td class="device">cpu</td>' in table
    assert '<th>Jobs in the last hour</th><td class="jobs-in-the-last-hour">0</td>' in table and "Uptime" in table
    assert banner == ""


async def test_panel_works_while_the_model_loads(make_settings):
    """While loading, the page says so and a playground job queues, then runs once the model is ready."""
    release = threading.Event()

    def slow_loader(settings):  # the engine's loader seam: hold loading until the test says so
        release.wait(60)
        return default_loader(settings)

    engine = Engine(make_settings(), loader=slow_loader)
    await engine.start()
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD),
                         engine.settings.data_dir)
    try:
        await server.start()
        client = await asyncio.to_thread(Client, server.url, auth=(USER, PASSWORD), verbose=False,
                                         analytics_enabled=False)
        table, banner = await asyncio.to_thread(client.predict, api_name="/status")
        assert "loading" in table and "still loading" in banner
        job = client.submit("a patient fox", "", "64x64", 2, 5.0, 7, 1, "euler", False, api_name="/generate")
        while not engine.queue_snapshot():
            await asyncio.sleep(0.02)
        assert engine.queue_snapshot()[0].job.params.prompt == "a patient fox"
        release.set()
        status, *_rest = await asyncio.to_thread(job.result, 60)
        assert "Done" in status
        await server.stop()
        await asyncio.to_thread(client.close)
    finally:
        release.set()
        await server.stop()
        await engine.stop()


async def test_failed_model_is_reported_and_generation_explains_why(make_settings):
    """A model that failed to load shows its error on the status tab and in the playground."""

    def broken_loader(settings):  # the engine's loader seam
        raise ModelLoadError("MODEL_ID points to a folder without model_index.json")

    engine = Engine(make_settings(), loader=broken_loader)
    await engine.start()
    server = AdminServer(engine, admin_settings(ADMIN_USERNAME=USER, ADMIN_PASSWORD=PASSWORD),
                         engine.settings.data_dir)
    try:
        assert not await engine.wait_ready(30)
        await server.start()
        client = await asyncio.to_thread(Client, server.url, auth=(USER, PASSWORD), verbose=False,
                                         analytics_enabled=False)
        table, banner = await asyncio.to_thread(client.predict, api_name="/status")
        assert "failed: MODEL_ID points to a folder without model_index.json" in table
        assert "failed to load" in banner and "restart" in banner
        status, *_rest = await asyncio.to_thread(client.predict, "a fox", "", "64x64", 2, 5.0, 7, 1, "euler", False,
                                                 api_name="/generate")
        assert "Image generation is unavailable" in status
        await server.stop()
        await asyncio.to_thread(client.close)
    finally:
        await server.stop()
        await engine.stop()


async def test_status_shows_the_discord_connection_state(engine):
    """The Status tab shows what the entry point says about Discord, as it changes."""
    state = {"now": "reconnecting (ClientConnectorError: Cannot connect to host discord.com:443)"}
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD=PASSWORD), engine.settings.data_dir,
                         discord_state=lambda: state["now"])
    await server.start()
    try:
        client = await asyncio.to_thread(Client, server.url, auth=(USER, PASSWORD), verbose=False,
                                         analytics_enabled=False)
        before, _banner = await asyncio.to_thread(client.predict, api_name="/status")
        state["now"] = "connected"
        after, _banner = await asyncio.to_thread(client.predict, api_name="/status")
    finally:
        await server.stop()
        await asyncio.to_thread(client.close)
    assert "<th>Discord</th>" in before and "reconnecting (ClientConnectorError: Cannot connect" in before
    assert "<th>Discord</th>" in after and ">connected<" in after


async def test_the_operator_sets_a_policy_for_outside_servers(call, engine):
    """The Moderation tab's scope "Outside servers" stores the policy that applies in DMs and user installs."""
    from admin_ui.context import ELSEWHERE_LABEL
    from engine.jobs.records import Place
    from engine.rules.policy import ELSEWHERE

    message = await call("/save_nsfw_policy", ELSEWHERE_LABEL, "block", engine.policy.defaults().nsfw_threshold)
    assert "outside servers" in message
    assert engine.policy.overrides(ELSEWHERE).get("nsfw_policy") == "block"
    assert engine.policy.nsfw_rule(None, Place())[0] == "block"
    assert engine.policy.nsfw_rule("123", Place(guild_installed=True))[0] == "allow"


async def test_the_operator_denies_a_member_everywhere_and_sees_it_logged(call, engine):
    """The Moderation tab's Deny (global scope) refuses the member anywhere; the log shows who did it."""
    import pytest

    from engine.jobs.records import Refused, Requester
    from tests.engine.helpers import params

    message, log = await call("/deny_member", "global", "4242", 0, "abuse")
    assert "Member 4242 may not make images in the global defaults until lifted" in message
    assert "abuse" in log and "the operator (panel)" in log
    with pytest.raises(Refused):
        await engine.submit(params(), Requester("4242", guild_id="777"))
    message, _log = await call("/undeny_member", "global", "4242")
    assert "may make images" in message
    await engine.submit(params(), Requester("4242", guild_id="777"))


async def test_a_refused_prompt_is_escaped_in_the_log(call, engine):
    """A member's words are shown as text, never as the panel's HTML."""
    from engine.jobs.records import Refused, Requester
    from tests.engine.helpers import params

    await engine.policy.set_blocklist("global", ["dragon"])
    try:
        await engine.submit(params("<img src=x onerror=alert(1)> dragon"), Requester("u1", guild_id="777"))
    except Refused:
        pass
    import asyncio
    for _ in range(50):
        log = await call("/moderation_log", "global")
        if "refused" in log:
            break
        await asyncio.sleep(0.02)
    assert "&lt;img src=x" in log and "<img src=x" not in log
