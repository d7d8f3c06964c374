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


async def test_images_withheld_where_they_were_made_stay_withheld(make_settings, tiny_classifier_dir,
                                                                  discord: FakeDiscord) -> None:
    """A job made under the server's NSFW policy "block" whose image the classifier flagged (Discord got none):
    the gallery serves neither its picture nor its PNG, and says why (it used to serve both)."""
    from admin_ui.gallery.gallery_settings import GallerySettings
    from admin_ui.server import AdminServer
    from tests.admin_ui.support import admin_settings

    engine = Engine(make_settings(safety_model_id=str(tiny_classifier_dir(0.9))))
    await engine.start()
    settings = GallerySettings(_env_file=None, DISCORD_CLIENT_ID=str(discord.application_id),  # type: ignore
                               DISCORD_CLIENT_SECRET=discord.oauth_secret,
                               DISCORD_AUTHORIZE_URL=f"{discord.base_url}/oauth2/authorize")
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD="test-password-123"), engine.settings.data_dir,
                         gallery=settings, discord_api_base=discord.api_base)
    await server.start()
    discord.oauth_redirects.append(f"{server.url}gallery/callback")
    try:
        assert await engine.wait_ready(60), engine.model_error
        await engine.policy.set_defaults("111", {"nsfw_policy": "block"})
        job = await run_job(engine, "a red fox", user_id=str(discord.default_user.id), guild_id="111")
        assert job.safety and job.safety[0] >= 0.5
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), follow_redirects=True) as browser:
            await browser.get("/gallery/login")
            page = await browser.get(f"/gallery/job/{job.id}")
            png = await browser.get(f"/gallery/image/{job.id}/0.png")
            copy = await browser.get(f"/gallery/image/{job.id}/0")
    finally:
        await server.stop()
        await engine.stop()
    assert "withheld: NSFW, where it was made" in page.text and f"gallery/image/{job.id}/0" not in page.text
    assert png.status_code == 404 and copy.status_code == 404


async def test_images_spoilered_where_they_were_made_are_blurred(engine: Engine, discord: FakeDiscord,
                                                                 browser: httpx.AsyncClient, log_in) -> None:
    """Under "spoiler" without a classifier every image counts as flagged: the page blurs it (the PNG is theirs)."""
    await engine.policy.set_defaults("111", {"nsfw_policy": "spoiler"})
    job = await run_job(engine, "a red fox", user_id=str(discord.default_user.id), guild_id="111")
    await log_in()
    page = await browser.get(f"/gallery/job/{job.id}")
    assert '<figure class="nsfw">' in page.text and "Blurred or withheld" in page.text


async def test_odd_addresses_answer_404_not_500(engine: Engine, discord: FakeDiscord, browser: httpx.AsyncClient,
                                                log_in) -> None:
    """A digit that is not ASCII, an id past SQLite's integers, a token that is not ASCII, a path no route has."""
    job = await run_job(engine, "a red fox in the snow", user_id=str(discord.default_user.id))
    await log_in()
    assert (await browser.get(f"/gallery/image/{job.id}/\u00b2")).status_code == 404
    assert (await browser.get("/gallery/job/99999999999999999999")).status_code == 404
    assert (await browser.get("/gallery/", params={"before": "99999999999999999999"})).status_code == 200
    assert (await browser.post(f"/gallery/job/{job.id}/delete", data={"csrf": "\u00e9"})).status_code == 403
    assert (await browser.get("/gallery/config")).status_code == 404
    assert (await browser.put("/gallery/")).status_code in (404, 405)


async def test_a_login_begun_on_another_address_moves_to_the_public_one(engine: Engine) -> None:
    """With GALLERY_URL, "Log in" on the panel's own address goes to the public address first, where the cookies
    Discord's answer needs will be."""
    from admin_ui.gallery.gallery_settings import GallerySettings
    from admin_ui.server import AdminServer
    from tests.admin_ui.support import admin_settings

    settings = GallerySettings(_env_file=None, DISCORD_CLIENT_ID="123", DISCORD_CLIENT_SECRET="s",  # type: ignore
                               GALLERY_URL="https://imagine.example.com/gallery")
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD="test-password-123"), engine.settings.data_dir,
                         gallery=settings)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/")) as client:
            answer = await client.get("/gallery/login")
    finally:
        await server.stop()
    assert answer.status_code == 303 and answer.headers["location"] == "https://imagine.example.com/gallery/login"


def test_a_state_is_signed_and_expires() -> None:
    """Login states are checked by their signature (a flood of logins begun stores nothing and pushes out none);
    a changed or expired one is refused."""
    import time

    from admin_ui.gallery.members import MemberSessions

    members = MemberSessions()
    state = members.begin()
    for _ in range(20_000):
        members.begin()
    assert members.finish(state)
    nonce, expires, mac = state.split(".")
    assert not members.finish(f"{nonce}.{int(expires) + 3600}.{mac}")
    assert not members.finish(MemberSessions().begin())  # another process's key
    past = f"{nonce}.{int(time.time()) - 1}"
    assert not members.finish(f"{past}.{members._sign(past)}")


async def test_without_settings_the_gallery_is_off_whatever_the_environment(engine: Engine,
                                                                             monkeypatch) -> None:
    """AdminServer without gallery settings does not read DISCORD_CLIENT_ID from the environment."""
    from admin_ui.server import AdminServer
    from tests.admin_ui.support import admin_settings

    monkeypatch.setenv("DISCORD_CLIENT_ID", "123")
    monkeypatch.setenv("DISCORD_CLIENT_SECRET", "secret")
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD="test-password-123"), engine.settings.data_dir)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/")) as client:
            assert (await client.get("/gallery/login")).status_code == 503
    finally:
        await server.stop()
