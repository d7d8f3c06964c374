"""Slowing down password guessing at the login, against the real server over HTTP.

Each client is a real TCP source address: Linux answers for all of 127.0.0.0/8, so a client bound to
127.0.0.2 is a different address from the panel's point of view than one on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx

from admin_ui.auth import DEVICE_COOKIE, SESSION_COOKIE
from admin_ui.server import AdminServer
from admin_ui.throttle import CLIENT_FAILURES, USER_FAILURES
from tests.admin_ui.support import PASSWORD, USER


@asynccontextmanager
async def client_from(panel: AdminServer, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the panel whose connections come from ``address`` (a loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=panel.url.rstrip("/"), transport=transport, timeout=60) as c:
        yield c


async def wrong(c: httpx.AsyncClient, username: str = USER) -> httpx.Response:
    """One login with a wrong password."""
    return await c.post("/login", data={"username": username, "password": "wrong-guess"})


async def wrong_times(c: httpx.AsyncClient, times: int) -> list[int]:
    """``times`` wrong logins at once (each is answered after its own delay); their status codes."""
    return [r.status_code for r in await asyncio.gather(*(wrong(c) for _ in range(times)))]


async def test_a_flood_of_wrong_logins_does_not_delay_another_client(panel):
    """60 concurrent wrong attempts from one address leave the right login from another one fast."""
    async with client_from(panel, "127.0.0.2") as attacker, client_from(panel, "127.0.0.1") as operator:
        flood = [asyncio.create_task(wrong(attacker)) for _ in range(60)]
        await asyncio.sleep(0.2)  # the flood is in flight (failed attempts are sleeping)
        started = time.perf_counter()
        response = await operator.post("/login", data={"username": USER, "password": PASSWORD})
        elapsed = time.perf_counter() - started
        answers = await asyncio.gather(*flood)
    assert response.status_code == 200 and SESSION_COOKIE in response.cookies
    assert elapsed < 2.0, f"the right login waited {elapsed:.1f} s behind another client's wrong ones"
    assert {r.status_code for r in answers} == {401, 429}


async def test_too_many_failures_refuse_that_client_and_say_when_to_retry(panel):
    """Past the cap an address is refused, even with the right password, with the time to wait."""
    async with client_from(panel, "127.0.0.3") as c:
        assert await wrong_times(c, CLIENT_FAILURES) == [401] * CLIENT_FAILURES
        refused = await c.post("/login", data={"username": USER, "password": PASSWORD},
                               headers={"Accept": "text/html"})
    assert refused.status_code == 429 and SESSION_COOKIE not in refused.cookies
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert "Too many failed logins" in refused.text and "Try again in" in refused.text


async def test_failures_on_one_user_name_from_many_clients_refuse_that_name(panel):
    """Guessing one user's password from many addresses is capped too, and says so."""
    per_client = CLIENT_FAILURES - 1  # each address stays under its own cap
    shares = [min(per_client, USER_FAILURES - i) for i in range(0, USER_FAILURES, per_client)]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client_from(panel, f"127.0.1.{i + 1}")) for i in range(len(shares))]
        answers = await asyncio.gather(*(wrong_times(c, share) for c, share in zip(clients, shares, strict=True)))
    assert [code for codes in answers for code in codes] == [401] * USER_FAILURES
    async with client_from(panel, "127.0.2.1") as fresh:
        refused = await fresh.post("/login", data={"username": USER, "password": PASSWORD})
        other_user = await wrong(fresh, username="someone-else")
    assert refused.status_code == 429 and "this user" in refused.json()["detail"]
    assert other_user.status_code == 401


async def test_a_browser_that_logged_in_before_is_not_locked_out_by_its_address(panel):
    """The operator's browser (its device cookie) still logs in while guessing has its address refused."""
    async with client_from(panel, "127.0.0.4") as operator:
        first = await operator.post("/login", data={"username": USER, "password": PASSWORD})
        assert first.status_code == 200 and DEVICE_COOKIE in first.cookies
        async with client_from(panel, "127.0.0.4") as attacker:
            await wrong_times(attacker, CLIENT_FAILURES)
            assert (await attacker.post("/login", data={"username": USER, "password": PASSWORD})).status_code == 429
        again = await operator.post("/login", data={"username": USER, "password": PASSWORD})
    assert again.status_code == 200 and SESSION_COOKIE in again.cookies


async def test_repeated_failures_from_one_client_get_slower(panel):
    """Each failed attempt of the same client is answered later than the one before."""
    timings = []
    async with client_from(panel, "127.0.0.5") as c:
        for _ in range(3):
            started = time.perf_counter()
            assert (await wrong(c)).status_code == 401
            timings.append(time.perf_counter() - started)
    assert timings[0] >= 0.4 and timings[1] > timings[0] + 0.3 and timings[2] > timings[1] + 0.6, timings
