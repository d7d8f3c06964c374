"""Other origins (another site, or another port on the same host) get nothing from the panel.

A page on http://127.0.0.1:9999 is "same-site" with the panel, so the browser sends the operator's
session cookie with its requests; what keeps it out is the panel refusing foreign origins.
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from admin_ui.auth import SESSION_COOKIE
from admin_ui.server import AdminServer
from tests.admin_ui.support import PASSWORD, USER, admin_settings

FOREIGN = "http://127.0.0.1:9999"


def own_origin(panel) -> str:
    """The origin a browser has on the panel's own pages."""
    return panel.url.rstrip("/")


async def test_another_origin_cannot_read_the_config_with_the_session(logged_in):
    """A cross-origin read of /config is refused and carries no CORS grant."""
    response = await logged_in.get("/config", headers={"Origin": FOREIGN})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_another_origin_gets_no_preflight_grant(logged_in):
    """A preflight from another origin is not answered with CORS headers."""
    response = await logged_in.options("/gradio_api/upload", headers={
        "Origin": FOREIGN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_another_origin_cannot_upload(logged_in, panel):
    """A cross-origin upload (a simple request, no preflight) is refused before anything is written."""
    files = {"files": ("big.bin", b"x" * 1024, "application/octet-stream")}
    response = await logged_in.post("/gradio_api/upload", files=files, headers={"Origin": FOREIGN})
    assert response.status_code == 403
    assert "big.bin" not in response.text


async def test_the_panels_own_origin_is_served(logged_in, panel):
    """Requests from the panel's own pages (same origin) work as before."""
    response = await logged_in.get("/config", headers={"Origin": own_origin(panel)})
    assert response.status_code == 200


async def test_another_origin_cannot_log_in(http):
    """A login form posted from another origin is refused (no login CSRF)."""
    response = await http.post("/login", data={"username": USER, "password": PASSWORD}, headers={"Origin": FOREIGN})
    assert response.status_code == 403 and SESSION_COOKIE not in response.cookies


async def test_pages_refuse_to_be_framed(logged_in, http):
    """The panel and the login page tell browsers never to show them inside a frame."""
    for response in (await logged_in.get("/"), await http.get("/login")):
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_result_files_are_not_embeddable_by_other_origins(logged_in):
    """Served files carry Cross-Origin-Resource-Policy, so another site cannot even <img> them."""
    response = await logged_in.get("/")
    assert response.headers["cross-origin-resource-policy"] == "same-origin"


async def test_logout_by_get_does_not_end_the_session(logged_in):
    """GET /logout (a link or an <img> on any page) leaves the session alone and offers the button."""
    response = await logged_in.get("/logout")
    assert response.status_code == 200 and 'method="post"' in response.text
    assert (await logged_in.get("/config")).status_code == 200


async def test_logout_from_another_origin_is_refused(logged_in):
    """A cross-origin POST /logout does not end the session."""
    response = await logged_in.post("/logout", headers={"Origin": FOREIGN})
    assert response.status_code == 403
    assert (await logged_in.get("/config")).status_code == 200


async def test_the_panels_log_out_button_posts(logged_in, panel):
    """The header's Log out is a form that POSTs to logout, from the panel's own origin."""
    config = (await logged_in.get("/config")).text
    assert '<form method=\\"post\\" action=\\"logout\\"' in config
    response = await logged_in.post("/logout", headers={"Origin": own_origin(panel), "Accept": "text/html"})
    assert response.status_code == 303 and response.headers["location"] == "login"
    assert (await logged_in.get("/config")).status_code == 401


async def test_admin_origin_admits_the_address_behind_a_reverse_proxy(engine):
    """With ADMIN_ORIGIN set, pages served under that public address work although Host names the upstream."""
    server = AdminServer(engine, admin_settings(ADMIN_PASSWORD=PASSWORD, ADMIN_ORIGIN="https://Panel.Example.com/"),
                         engine.settings.data_dir)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/")) as c:
            proxied = await c.post("/login", data={"username": USER, "password": PASSWORD},
                                   headers={"Origin": "https://panel.example.com"})
            other = await c.post("/login", data={"username": USER, "password": PASSWORD},
                                 headers={"Origin": "https://evil.example.com"})
    finally:
        await server.stop()
    assert proxied.status_code == 200 and other.status_code == 403


def test_admin_origin_must_be_an_origin():
    """ADMIN_ORIGIN with a path is refused with an example of what to write."""
    with pytest.raises(ValidationError, match="https://panel.example.com"):
        admin_settings(ADMIN_ORIGIN="https://panel.example.com/admin")
