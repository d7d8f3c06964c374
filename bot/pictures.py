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

from engine.requests.checks import ParamError, Phrase

# a bigger file is refused before it is downloaded (a phone photo is 2-8 MB; the engine shrinks it anyway)
MAX_PICTURE_BYTES = 20 * 2**20
PICTURE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"})
DOWNLOAD_TIMEOUT_S = 20.0
_CHUNK = 64 * 1024
_JOB_FOOTER_RE = re.compile(r"^Job (\d+) ")


class PictureError(ParamError):
    """A picture that could not be fetched; the message (a Phrase) is for the user."""


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


def refusal(picture: Picture) -> Phrase | None:
    """Why a picture is refused before downloading it (not a picture, too big), else None."""
    if not picture.is_picture:
        if not picture.content_type:
            return Phrase.of("{file} is a file of unknown type, not a picture; attach a PNG, JPEG, WebP, GIF or BMP "
                             "image.", file=picture.filename)
        return Phrase.of("{file} is {kind}, not a picture; attach a PNG, JPEG, WebP, GIF or BMP image.",
                         file=picture.filename, kind=picture.content_type)
    if picture.size > MAX_PICTURE_BYTES:
        return Phrase.of("{file} is {size} MB; pictures may be at most {limit} MB. Send a smaller one.",
                         file=picture.filename, size=f"{picture.size / 2**20:.1f}", limit=MAX_PICTURE_BYTES // 2**20)
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
        raise PictureError("{file} is not on Discord's CDN ({host}), so I will not fetch it; attach the picture to "
                           "your message instead.", file=picture.filename, host=where.netloc or "-")
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(picture.url, allow_redirects=False) as response:
            if response.status != 200:
                raise PictureError("Discord answered {status} when I fetched {file}; send it again in a moment.",
                                   status=response.status, file=picture.filename)
            data = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > MAX_PICTURE_BYTES:  # the size Discord gave was wrong; never hold more than this
                    raise PictureError("{file} is over {limit} MB; send a smaller picture.", file=picture.filename,
                                       limit=MAX_PICTURE_BYTES // 2**20)
            return bytes(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PictureError("I could not fetch {file} from Discord ({why}); send it again in a moment.",
                           file=picture.filename, why=type(exc).__name__) from None
