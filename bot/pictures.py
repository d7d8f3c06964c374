"""Pictures users give the bot (``/imagine image:``, "Vary with Imagine"): which attachments are pictures,
what is refused at once, and the download (aiohttp, bounded in size and time).

The checks here use only what Discord says about an attachment (its type and size), so a refusal is an
instant private answer; decoding and checking the pixels is the engine's (engine/media/sources.py), off the
event loop, after the download.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import discord

# a bigger file is refused before it is downloaded (a phone photo is 2-8 MB; the engine shrinks it anyway)
MAX_PICTURE_BYTES = 20 * 2**20
PICTURE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"})
DOWNLOAD_TIMEOUT_S = 20.0
_CHUNK = 64 * 1024
_JOB_FOOTER_RE = re.compile(r"^Job (\d+) ")


class PictureError(Exception):
    """A picture that could not be fetched; the message is for the user."""


@dataclass(frozen=True)
class Picture:
    """An attachment to start from: where Discord serves it, and what Discord says it is."""

    url: str
    filename: str
    size: int
    content_type: str

    @classmethod
    def of(cls, attachment: discord.Attachment) -> Picture:
        """The picture facts of an attachment (its type guessed from the name when Discord gives none)."""
        kind = (attachment.content_type or mimetypes.guess_type(attachment.filename)[0] or "").split(";")[0]
        return cls(attachment.url, attachment.filename, attachment.size, kind.strip().lower())

    @property
    def is_picture(self) -> bool:
        """Whether it is a kind of picture the engine takes."""
        return self.content_type in PICTURE_TYPES


def refusal(picture: Picture) -> str | None:
    """Why a picture is refused before downloading it (not a picture, too big), else None."""
    if not picture.is_picture:
        shown = picture.content_type or "a file of unknown type"
        return (f"{picture.filename} is {shown}, not a picture; attach a PNG, JPEG, WebP, GIF or BMP image.")
    if picture.size > MAX_PICTURE_BYTES:
        return (f"{picture.filename} is {picture.size / 2**20:.1f} MB; pictures may be at most "
                f"{MAX_PICTURE_BYTES // 2**20} MB. Send a smaller one.")
    return None


def first_picture(message: discord.Message) -> Picture | None:
    """The first attachment of a message that is a picture."""
    for attachment in message.attachments:
        picture = Picture.of(attachment)
        if picture.is_picture:
            return picture
    return None


def job_of_result(message: discord.Message, bot_user_id: int | None) -> int | None:
    """The job id of one of the bot's own result messages (from its embed's footer), else None."""
    if bot_user_id is None or message.author.id != bot_user_id or not message.embeds:
        return None
    match = _JOB_FOOTER_RE.match(message.embeds[0].footer.text or "")
    return int(match.group(1)) if match else None


async def download(picture: Picture, hosts: Collection[str]) -> bytes:
    """The picture's bytes, at most MAX_PICTURE_BYTES, within DOWNLOAD_TIMEOUT_S, from one of ``hosts`` (Discord's
    CDN) and never through a redirect; PictureError says what failed."""
    where = urlsplit(picture.url)
    if where.scheme not in ("https", "http") or where.netloc.lower() not in hosts:
        raise PictureError(f"{picture.filename} is not on Discord's CDN ({where.netloc or 'no host'}), so I will not "
                           f"fetch it; attach the picture to your message instead.")
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(picture.url, allow_redirects=False) as response:
            if response.status != 200:
                raise PictureError(f"Discord answered {response.status} when I fetched {picture.filename}; "
                                   f"send it again in a moment.")
            data = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > MAX_PICTURE_BYTES:  # the size Discord gave was wrong; never hold more than this
                    raise PictureError(f"{picture.filename} is over {MAX_PICTURE_BYTES // 2**20} MB; send a "
                                       f"smaller picture.")
            return bytes(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PictureError(f"I could not fetch {picture.filename} from Discord ({type(exc).__name__}); send it "
                           f"again in a moment.") from None
