"""The PNG button's answer: a job's lossless PNGs, with their parameters, as files that fit the upload limit.

A result is saved twice (engine/media/saving.py): the PNG original, which carries the parameters in its text
chunks, and a small WebP (or JPEG) copy that the result message shows. An original over the upload
limit of the place where the button was clicked cannot be sent as it is, so its copy goes in its place
and the answer says so. Everything here blocks on the disk: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot import render
from bot.delivery.address import upload_name
from bot.delivery.sender import Upload
from bot.i18n.speech import say, spoken
from engine.gpu.safety import ImageAction
from engine.jobs.records import Job
from engine.media.images import fit_under
from engine.requests.checks import Phrase

# room left under the limit for the multipart envelope around each file
HEADROOM_BYTES = 1024


@dataclass
class Originals:
    """The files to send, and what to tell the clicker about the ones that are not PNGs (or are missing)."""

    uploads: list[Upload] = field(default_factory=list)
    notes: list[Phrase] = field(default_factory=list)


def megabytes(size: int) -> str:
    """``12.3 MB`` (Discord shows sizes in MB of 2**20 bytes)."""
    return f"{size / 2**20:.1f} MB"


def pack_originals(job: Job, limit: int, actions: Sequence[ImageAction]) -> Originals:
    """Each image's PNG when it fits under ``limit`` bytes, else its smaller copy with a note saying why.

    ``actions`` (``engine.gpu.safety.recorded_actions``) are the result message's: spoilered images stay spoilered,
    and withheld ones are not sent here either.
    """
    out = Originals()
    copies = job.delivery_paths
    for index, (result, action) in enumerate(zip(job.results, actions, strict=True)):
        if action == "withhold":
            out.notes.append(Phrase.of("Image {image} is withheld here by this server's NSFW policy.", image=index + 1))
            continue
        name = upload_name(job, index, action)
        # a job is delivered as soon as its copies exist and its results name the PNGs once they are written
        # (engine/media/saving.py), so a result may still be the copy with its PNG beside it, or not there yet
        path = Path(result).with_suffix(".png")
        try:
            size = path.stat().st_size if path.is_file() else None
            if size is not None and size <= limit - HEADROOM_BYTES:
                out.uploads.append(Upload(path.read_bytes(), f"{name}.png", render.alt_text(job, index)))
                continue
            data, suffix = fit_under(copies[index], limit - HEADROOM_BYTES)
        except (OSError, ValueError, IndexError):
            # removed by its owner or the retention policy since the message was posted
            out.notes.append(Phrase.of("Image {image} is no longer stored on the server.", image=index + 1))
            continue
        out.uploads.append(Upload(data, f"{name}{suffix}", render.alt_text(job, index)))
        kind = suffix.lstrip(".").upper()
        out.notes.append(Phrase.of("Image {image}'s PNG is {size}, over the {limit} upload limit here, so this is its "
                                   "smaller {kind} copy (without the parameters).", image=index + 1,
                                   size=megabytes(size), limit=megabytes(limit), kind=kind) if size is not None else
                         Phrase.of("Image {image}'s PNG is not written yet, so this is its {kind} copy; press PNG "
                                   "again in a moment for the original.", image=index + 1, kind=kind))
    return out


def originals_text(job: Job, originals: Originals, locale: str = "") -> str:
    """The message that goes with the files, in ``locale``."""
    pngs = sum(1 for upload in originals.uploads if upload.name.endswith(".png"))
    head = say(locale, "Lossless PNG of job {job}; the parameters are in its text chunks (`parameters`, `imagine`)."
               if pngs == 1 else "Lossless PNGs of job {job}; the parameters are in each file's text chunks "
               "(`parameters`, `imagine`)." if pngs else "The originals of job {job}:", job=job.id)
    return "\n".join([head, *(f"\u2139\ufe0f {spoken(n, locale)}" for n in originals.notes)])[:2000]
