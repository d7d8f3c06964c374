"""The gallery in headless Chromium: "Log in with Discord" through the emulator's consent page and back, the grid,
a job's page, and Delete after the browser's confirm; the pictures for the guides (UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.service import Engine
from tests.admin_ui.support import run_job
from tests.admin_ui.test_browser import CHROMIUM_ARGS, TIMEOUT_MS
from tests.support.discord_emulator import FakeDiscord


def drive(url: str, chromium: str, screenshots: Path, job_id: int) -> dict[str, Any]:
    """Log in, look, open a job, delete it (blocking; the servers live on the test's event loop)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url + "gallery/")
            page.wait_for_function("document.fonts.status === 'loaded'")
            login_text = page.inner_text("main")
            page.get_by_role("link", name="Log in with Discord").click()
            page.wait_for_selector(".grid .tile img")
            page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(screenshots / "gallery.png"), full_page=True)
            grid = {"who": page.inner_text("header .who"), "tiles": page.locator(".tile").count()}
            page.locator(f'a.tile[href="gallery/job/{job_id}"]').click()
            page.wait_for_selector(".images img")
            page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(screenshots / "gallery-job.png"), full_page=True)
            parameters = page.inner_text("pre")
            page.once("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name="Delete job and images").click()
            page.wait_for_selector(f"text=Deleted job {job_id}")
            return {"login": login_text, **grid, "parameters": parameters,
                    "tiles_after": page.locator(".tile").count()}
        finally:
            browser.close()


@pytest.mark.browser
async def test_browser_gallery_login_look_and_delete(engine: Engine, discord: FakeDiscord, gallery_panel,
                                                     chromium, screenshots_dir) -> None:
    """alice logs in with Discord, sees her three jobs (not bob's), opens one with its parameters and deletes it."""
    alice = str(discord.default_user.id)
    jobs = [await run_job(engine, prompt, user_id=alice, count=count) for prompt, count in (
        ("a red fox in the snow, golden hour", 1), ("a lighthouse on a cliff at dusk, oil painting", 2),
        ("a tiny robot watering a bonsai, studio photo", 1))]
    await run_job(engine, "bob's secret castle", user_id="2002", user_name="bob")
    result = await asyncio.to_thread(drive, gallery_panel.url, chromium, screenshots_dir, jobs[1].id)
    assert "Only you see yours" in result["login"]
    assert result["who"] == "alice" and result["tiles"] == 3
    assert f"Seed: {jobs[1].params.seed}" in result["parameters"]
    assert result["tiles_after"] == 2 and await engine.get_job(jobs[1].id) is None
    assert (screenshots_dir / "gallery.png").stat().st_size > 10_000
