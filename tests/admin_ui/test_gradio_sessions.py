"""Per-session state is bounded: API calls, each a new Gradio session, do not pile up memory.

Every call to /gradio_api/call/<name> opens a new session, and Gradio kept up to 10 000 of them
(a copy of the whole panel's config each, ~170 KB), plus an entry per session in its queue's
bookkeeping that was never removed. Measured here on those structures, not on RSS.
"""

from __future__ import annotations

import asyncio

import httpx

from admin_ui.server import PANEL_SESSIONS, AdminServer
from engine.service import Engine
from tests.admin_ui.support import PASSWORD, USER, admin_settings

CALLS = 2 * PANEL_SESSIONS + 20


async def status_call(c: httpx.AsyncClient) -> None:
    """One status API call as a script would make it: join, then read the result stream."""
    joined = await c.post("/gradio_api/call/status", json={"data": []})
    assert joined.status_code == 200, joined.text
    result = await c.get(f"/gradio_api/call/status/{joined.json()['event_id']}")
    assert "event: complete" in result.text, result.text


async def test_many_api_calls_keep_a_bounded_number_of_sessions(engine: Engine) -> None:
    """After more calls than the session cap, Gradio holds at most PANEL_SESSIONS sessions' state."""
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD=PASSWORD), engine.settings.data_dir,
                         housekeeping_seconds=0.05)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=30) as c:
            await c.post("/login", data={"username": USER, "password": PASSWORD})
            for _ in range(CALLS):
                await status_call(c)
        await asyncio.sleep(0.3)  # a housekeeping pass
        counts = server.session_counts()
    finally:
        await server.stop()
    assert counts["sessions"] <= PANEL_SESSIONS, counts
    assert counts["queued_event_ids"] <= PANEL_SESSIONS and counts["message_queues"] <= PANEL_SESSIONS, counts
