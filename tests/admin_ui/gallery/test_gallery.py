"""The members' gallery over HTTP: "Log in with Discord" through the emulator's OAuth2 code flow, a member's own
jobs only, search, the PNG, delete; and every refusal (someone else's job, a login not started here, a form from
elsewhere)."""

from __future__ import annotations

import re

import httpx

from engine.service import Engine
from tests.admin_ui.support import run_job
from tests.support.discord_emulator import FakeDiscord


async def test_a_member_logs_in_with_discord_and_sees_only_their_own_jobs(engine: Engine, discord: FakeDiscord,
                                                                          browser: httpx.AsyncClient, log_in) -> None:
    """alice's two jobs are listed (newest first), bob's is not; the token was traded once, used once, revoked."""
    alice = str(discord.default_user.id)
    first = await run_job(engine, "a red fox in the snow", user_id=alice)
    second = await run_job(engine, "a lighthouse at dusk", user_id=alice)
    await run_job(engine, "bob's secret castle", user_id="2002", user_name="bob")
    page = await log_in()
    assert page.status_code == 200 and str(page.url).endswith("/gallery/")
    text = page.text
    assert "alice" in text and "a lighthouse at dusk" in text and "a red fox in the snow" in text
    assert "secret castle" not in text
    assert text.index(f"gallery/job/{second.id}") < text.index(f"gallery/job/{first.id}")
    assert discord.oauth_calls == [("authorize", "code"), ("token", "ok"), ("me", "ok"), ("revoke", "ok")]


async def test_search_finds_the_members_prompts(engine: Engine, discord: FakeDiscord, browser: httpx.AsyncClient,
                                                log_in) -> None:
    """?q= searches the member's prompts only."""
    alice = str(discord.default_user.id)
    await run_job(engine, "a red fox in the snow", user_id=alice)
    await run_job(engine, "a lighthouse at dusk", user_id=alice)
    await run_job(engine, "another lighthouse", user_id="2002", user_name="bob")
    await log_in()
    page = await browser.get("/gallery/", params={"q": "lighthouse"})
    assert "a lighthouse at dusk" in page.text and "red fox" not in page.text and "another" not in page.text
    nothing = await browser.get("/gallery/", params={"q": "submarine"})
    assert "Nothing of yours matches “submarine”" in nothing.text


async def test_a_job_page_shows_its_images_parameters_and_png(engine: Engine, discord: FakeDiscord,
                                                              browser: httpx.AsyncClient, log_in) -> None:
    """The job's page has each image, the parameters the PNG holds, and the PNG itself downloads with them."""
    job = await run_job(engine, "a red fox in the snow", user_id=str(discord.default_user.id))
    await log_in()
    page = await browser.get(f"/gallery/job/{job.id}")
    assert page.status_code == 200 and f"Seed: {job.params.seed}" in page.text
    png = await browser.get(f"/gallery/image/{job.id}/0.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG") and b"a red fox in the snow" in png.content
    copy = await browser.get(f"/gallery/image/{job.id}/0")
    assert copy.status_code == 200 and copy.headers["content-type"].startswith("image/")


async def test_someone_elses_job_answers_as_missing(engine: Engine, discord: FakeDiscord,
                                                    browser: httpx.AsyncClient, log_in) -> None:
    """bob's job: its page, its images and its delete all answer 404 to alice, and the job stays."""
    theirs = await run_job(engine, "bob's secret castle", user_id="2002", user_name="bob")
    page = await log_in()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert (await browser.get(f"/gallery/job/{theirs.id}")).status_code == 404
    assert (await browser.get(f"/gallery/image/{theirs.id}/0.png")).status_code == 404
    refused = await browser.post(f"/gallery/job/{theirs.id}/delete", data={"csrf": csrf})
    assert refused.status_code == 404 and await engine.get_job(theirs.id) is not None


async def test_delete_removes_the_job_and_its_files(engine: Engine, discord: FakeDiscord,
                                                    browser: httpx.AsyncClient, log_in) -> None:
    """Delete (with the page's token) removes the job and its images, then lists the rest with a note."""
    job = await run_job(engine, "a red fox in the snow", user_id=str(discord.default_user.id))
    await log_in()
    page = await browser.get(f"/gallery/job/{job.id}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = await browser.post(f"/gallery/job/{job.id}/delete", data={"csrf": csrf})
    assert done.status_code == 200 and f"Deleted job {job.id}" in done.text
    assert await engine.get_job(job.id) is None
    assert (await browser.get(f"/gallery/image/{job.id}/0.png")).status_code == 404


async def test_a_delete_without_the_pages_token_is_refused(engine: Engine, discord: FakeDiscord,
                                                           browser: httpx.AsyncClient, log_in) -> None:
    """A post that does not carry the session's token (another site's form) deletes nothing."""
    job = await run_job(engine, "a red fox in the snow", user_id=str(discord.default_user.id))
    await log_in()
    refused = await browser.post(f"/gallery/job/{job.id}/delete", data={"csrf": "guess"})
    assert refused.status_code == 403 and await engine.get_job(job.id) is not None


async def test_a_login_not_started_here_is_refused(discord: FakeDiscord, browser: httpx.AsyncClient) -> None:
    """A callback with a code but a state this browser never got (login CSRF) logs nobody in."""
    answer = await browser.get("/gallery/callback", params={"code": "stolen", "state": "forged"})
    assert answer.status_code == 400 and "out of date or was not started here" in answer.text
    assert ("token", "ok") not in discord.oauth_calls
    assert "imagine_gallery" not in browser.cookies


async def test_cancel_on_discords_page_is_said(discord: FakeDiscord, browser: httpx.AsyncClient, log_in) -> None:
    """The member presses Cancel on Discord's page: the gallery says so and offers the button again."""
    discord.oauth_denied = True
    page = await log_in()
    assert page.status_code == 400 and "Discord did not log you in" in page.text and "Log in with Discord" in page.text


async def test_a_code_discord_refuses_is_said(discord: FakeDiscord, browser: httpx.AsyncClient,
                                              gallery_panel) -> None:
    """The application's secret is wrong (Discord answers 401): the member is told to log in again."""
    discord.oauth_secret = "rotated"
    page = await browser.get("/gallery/login")
    assert page.status_code == 502 and "Discord did not accept this login" in page.text


async def test_logout_ends_the_session(discord: FakeDiscord, browser: httpx.AsyncClient, log_in) -> None:
    """Log out (with the page's token): the next visit shows the login page."""
    page = await log_in()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    await browser.post("/gallery/logout", data={"csrf": csrf})
    again = await browser.get("/gallery/")
    assert "Log in with Discord" in again.text and "Log out" not in again.text


async def test_without_an_application_the_gallery_says_what_to_set(http: httpx.AsyncClient) -> None:
    """The panel without DISCORD_CLIENT_ID: /gallery/ tells the member the operator has not set it up, and the
    operator's panel login is not needed to see that."""
    page = await http.get("/gallery/")
    assert page.status_code == 200 and "DISCORD_CLIENT_ID" in page.text
    assert (await http.get("/gallery/login")).status_code == 503
