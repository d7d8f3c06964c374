"""Login, the file route's limits, the bind rule and the generated password, against the real server."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import stat

import httpx
import pytest
from gradio_client import Client

from admin_ui.admin_settings import AdminSettings
from admin_ui.auth import PASSWORD_FILE, SESSION_COOKIE, AdminConfigError, prepare_password
from admin_ui.server import AdminServer, AdminStartError
from admin_ui.theme import BACKGROUND_FILE
from tests.admin_ui.support import PASSWORD, USER, admin_settings, run_job

PROTECTED = [
    ("GET", "/"),
    ("GET", "/config"),
    ("GET", "/gradio_api/info"),
    ("GET", "/gradio_api/openapi.json"),
    ("GET", "/theme.css"),
    ("POST", "/gradio_api/queue/join"),
    ("GET", "/gradio_api/queue/data?session_hash=x"),
    ("POST", "/gradio_api/call/generate"),
    ("POST", "/gradio_api/run/generate"),
    ("POST", "/gradio_api/upload"),
    ("POST", "/gradio_api/cancel"),
    ("GET", "/gradio_api/heartbeat/x"),
    ("GET", "/gradio_api/startup-events"),
    ("GET", f"/gradio_api/file={BACKGROUND_FILE}"),
    ("GET", "/gradio_api/file=/etc/hostname"),
    ("GET", f"/file={BACKGROUND_FILE}"),
]


async def test_unauthenticated_requests_are_refused(http):
    """Without the session cookie, the page, config, API and file routes answer 401 or 403."""
    answers = {f"{method} {path}": (await http.request(method, path)).status_code for method, path in PROTECTED}
    assert {route: code for route, code in answers.items() if code not in (401, 403)} == {}


async def test_unauthenticated_page_shows_the_login_form(http):
    """A browser asking for the page gets the branded login form with the 401."""
    response = await http.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert '<form method="post" action="login">' in response.text and "Imagine" in response.text
    assert "brand/background.png" in response.text
    background = await http.get("/brand/background.png")
    assert background.status_code == 200 and background.headers["content-type"] == "image/png"
    assert background.content == BACKGROUND_FILE.read_bytes()


async def test_browser_form_login_sets_a_session_and_redirects(http):
    """Posting the form logs in: a session cookie and a redirect to the panel, which then loads."""
    response = await http.post("/login", data={"username": USER, "password": PASSWORD},
                               headers={"Accept": "text/html"})
    assert response.status_code == 303 and response.headers["location"] == "./"
    cookie = response.headers["set-cookie"].lower()
    assert SESSION_COOKIE in cookie and "httponly" in cookie and "samesite=lax" in cookie
    page = await http.get("/")
    assert page.status_code == 200 and "gradio" in page.text.lower()


async def test_wrong_password_is_refused(http, panel):
    """A wrong password gets 401 and no cookie, for browsers and for gradio_client alike."""
    response = await http.post("/login", data={"username": USER, "password": "nope"})
    assert response.status_code == 401 and SESSION_COOKIE not in response.cookies
    with pytest.raises(Exception, match="Invalid credentials"):
        await asyncio.to_thread(Client, panel.url, auth=(USER, "nope"), verbose=False, analytics_enabled=False)


async def test_logout_ends_the_session(logged_in):
    """After POST /logout the same cookie no longer opens the config."""
    assert (await logged_in.get("/config")).status_code == 200
    response = await logged_in.post("/logout")
    assert response.status_code == 303
    assert (await logged_in.get("/config")).status_code == 401


async def test_file_route_serves_only_assets_and_results(logged_in, engine):
    """Logged in, the file route serves the shipped assets and result images and refuses the rest."""
    job = await run_job(engine, "a small fox")
    data_dir = engine.settings.data_dir
    allowed = [BACKGROUND_FILE, job.results[0], job.delivery_paths[0]]
    refused = ["/etc/passwd", engine.settings.db_path, data_dir / PASSWORD_FILE, BACKGROUND_FILE.parent.parent /
               "server.py"]
    (data_dir / PASSWORD_FILE).write_text("not served\n")
    for path in allowed:
        assert (await logged_in.get(f"/gradio_api/file={path}")).status_code == 200, path
    for path in refused:
        assert (await logged_in.get(f"/gradio_api/file={path}")).status_code == 403, path


async def test_non_loopback_bind_without_explicit_password_refuses_to_start(engine, tmp_path):
    """Binding beyond loopback needs ADMIN_PASSWORD; the error says what to set and nothing is written."""
    server = AdminServer(engine, admin_settings(ADMIN_HOST="0.0.0.0"), tmp_path / "panel-data")
    with pytest.raises(AdminConfigError, match="ADMIN_PASSWORD is not set") as caught:
        await server.start()
    assert "ADMIN_HOST=0.0.0.0" in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert not (tmp_path / "panel-data" / PASSWORD_FILE).exists()


async def test_non_loopback_bind_with_explicit_password_starts(engine):
    """With ADMIN_PASSWORD set, a public bind is allowed."""
    server = AdminServer(engine, admin_settings(ADMIN_HOST="0.0.0.0", ADMIN_PASSWORD=PASSWORD),
                         engine.settings.data_dir)
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.post("login", data={"username": USER, "password": PASSWORD})).status_code == 200
    finally:
        await server.stop()


async def test_generated_password_is_stored_privately_and_never_printed(engine, tmp_path, capsys):
    """Without ADMIN_PASSWORD one is generated and stored 0600; the output says where it is and how to read it,
    never what it is (it used to be printed once, so it stayed in a service's journal), and it works."""
    data_dir = tmp_path / "panel-data"
    first = AdminServer(engine, admin_settings(), data_dir)
    await first.start()
    await first.stop()
    printed = capsys.readouterr().out
    stored = (data_dir / PASSWORD_FILE).read_text().strip()
    assert stat.S_IMODE((data_dir / PASSWORD_FILE).stat().st_mode) == 0o600
    assert len(stored) >= 20 and stored not in printed
    assert f"cat {data_dir / PASSWORD_FILE}" in printed

    second = AdminServer(engine, admin_settings(), data_dir)
    await second.start()
    try:
        later = capsys.readouterr().out
        assert stored not in later and str(data_dir / PASSWORD_FILE) in later
        async with httpx.AsyncClient(base_url=second.url) as c:
            assert (await c.post("login", data={"username": "admin", "password": stored})).status_code == 200
    finally:
        await second.stop()


async def test_the_password_never_reaches_the_log(engine, tmp_path, caplog):
    """Neither a generated password nor failed guesses' passwords are logged."""
    server = AdminServer(engine, admin_settings(), tmp_path / "panel-data")
    with caplog.at_level("DEBUG"):
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url) as c:
                await c.post("login", data={"username": "admin", "password": "guess-123"})
        finally:
            await server.stop()
    stored = (tmp_path / "panel-data" / PASSWORD_FILE).read_text().strip()
    assert stored not in caplog.text and "guess-123" not in caplog.text


async def test_busy_port_gives_a_clear_error(engine):
    """A port in use is reported with the variable to change, and does not stop the event loop."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = AdminServer(engine, admin_settings(ADMIN_PORT=port, ADMIN_PASSWORD=PASSWORD),
                             engine.settings.data_dir)
        with pytest.raises(AdminStartError, match="Set ADMIN_PORT"):
            await server.start()


def test_generated_password_file_is_private_whatever_the_umask(tmp_path):
    """The generated password file is 0600 even under a umask that would share it, and stands alone."""
    old = os.umask(0o000)
    try:
        password = prepare_password(admin_settings(), tmp_path, out=io.StringIO())
    finally:
        os.umask(old)
    path = tmp_path / PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == password.get_secret_value() + "\n"
    assert [p.name for p in tmp_path.iterdir()] == [PASSWORD_FILE]


def test_settings_come_from_the_environment(monkeypatch):
    """ADMIN_* variables fill the settings; an empty ADMIN_PASSWORD counts as unset."""
    monkeypatch.setenv("ADMIN_HOST", "0.0.0.0")
    monkeypatch.setenv("ADMIN_PORT", "8123")
    monkeypatch.setenv("ADMIN_USERNAME", "root")
    monkeypatch.setenv("ADMIN_PASSWORD", "")
    settings = AdminSettings(_env_file=None)
    assert (settings.host, settings.port, settings.username) == ("0.0.0.0", 8123, "root")
    assert settings.password is None and not settings.password_is_explicit
    monkeypatch.setenv("ADMIN_PASSWORD", "s3cret")
    settings = AdminSettings(_env_file=None)
    assert settings.password.get_secret_value() == "s3cret" and "s3cret" not in repr(settings)


async def test_non_loopback_bind_with_a_short_password_refuses_to_start(engine, tmp_path):
    """Beyond loopback a short ADMIN_PASSWORD is refused; the error says how long it must be, not what it is."""
    server = AdminServer(engine, admin_settings(ADMIN_HOST="0.0.0.0", ADMIN_PASSWORD="abc12345678"),
                         tmp_path / "panel-data")
    with pytest.raises(AdminConfigError, match="at least 12 characters") as caught:
        await server.start()
    assert "ADMIN_PASSWORD" in str(caught.value) and "abc12345678" not in str(caught.value)
