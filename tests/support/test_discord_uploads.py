"""The emulator's user uploads, attachment downloads and autocomplete checks (discord_uploads.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from .discord_emulator import FakeDiscord
from .discord_uploads import USER_UPLOAD_LIMIT, choices_errors

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as emulator:
        yield emulator


async def test_an_upload_is_served_from_the_emulators_cdn(fake: FakeDiscord) -> None:
    """An uploaded file's url answers with its bytes and a type from its name."""
    att = fake.upload_attachment("fox.png", b"\x89PNG fake")
    async with aiohttp.ClientSession() as http, http.get(att["url"]) as response:
        assert response.status == 200 and await response.read() == b"\x89PNG fake"
        assert response.content_type == "image/png"
    assert (att["filename"], att["size"], att["content_type"]) == ("fox.png", 9, "image/png")


async def test_a_failed_download_answers_with_its_status(fake: FakeDiscord) -> None:
    """fail_downloads makes one attachment's download fail with the given HTTP status."""
    att = fake.upload_attachment("fox.png", b"data")
    fake.fail_downloads[int(att["id"])] = 503
    async with aiohttp.ClientSession() as http, http.get(att["url"]) as response:
        assert response.status == 503


async def test_an_upload_over_the_user_limit_is_refused(fake: FakeDiscord) -> None:
    """Discord refuses a user's upload over 10 MiB before any bot sees it."""
    with pytest.raises(ValueError, match="refuses uploads over"):
        fake.upload_attachment("huge.png", b"x" * (USER_UPLOAD_LIMIT + 1))


async def test_an_image_upload_has_its_dimensions(fake: FakeDiscord) -> None:
    """An image's attachment object carries its width and height, as Discord's does."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buf, "PNG")
    att = fake.upload_attachment("small.png", buf.getvalue())
    assert (att["width"], att["height"]) == (30, 20)


def test_autocomplete_choices_are_checked() -> None:
    """More than 25 choices, or a name over 100 characters, is a 50035-shaped error."""
    assert choices_errors([{"name": "a", "value": "a"}]) == {}
    assert "choices" in choices_errors([{"name": str(i), "value": str(i)} for i in range(26)])
    assert "choices.0.name" in choices_errors([{"name": "x" * 101, "value": "x"}])
