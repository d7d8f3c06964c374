"""The image a job starts from: an earlier result (V and U buttons) or a picture a user gave (``/imagine image:``).

A user's picture is checked, turned upright, cropped to the shape of the size the job runs at and
stored once under ``DATA_DIR/uploads`` as a PNG named by its content, so a Reroll or an Edit of the job
uses the very same pixels and a restart loses nothing. From then on it is used like a variation's
source: the in-process worker reads it from disk, and the dispatcher sends it to GPU workers through
the NATS Object Store (engine/remote/dispatch.py). Everything here blocks: call it off the event loop.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.jobs.store import JobStore
from engine.media.files import atomic_write
from engine.media.saving import source_image_path
from engine.requests.params import GenerationParams, ParamError
from engine.requests.sizes import Size, resolve_size

UPLOADS = "uploads"  # under DATA_DIR
# formats a user's picture may come in (Pillow's names); the first frame of an animation is used
FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP"})
# Pillow reads the header first, so a picture claiming more pixels is refused before it is decoded. A JPEG is
# decoded at a reduced scale (1/2 to 1/8: its "draft" mode) when it is larger than the job needs, so a phone or
# camera photo of up to JPEG_MAX_PIXELS costs little; other formats decode whole, so they may have at most
# PIXELS_PER_OUTPUT times the pixels of the largest allowed size.
JPEG_MAX_PIXELS = 64_000_000
PIXELS_PER_OUTPUT = 16
MAX_RATIO = 8.0  # the most extreme shape resolve_size accepts


def max_pixels(fmt: str, sizes: tuple[Size, ...]) -> int:
    """The most pixels a picture of Pillow format ``fmt`` may declare, for the deployment's ``sizes``."""
    if fmt == "JPEG":
        return JPEG_MAX_PIXELS
    return PIXELS_PER_OUTPUT * max(s.width * s.height for s in sizes)


def nearest_size(width: int, height: int, sizes: tuple[Size, ...]) -> Size:
    """The allowed size whose shape is closest to a ``width`` x ``height`` picture."""
    ratio = min(max(width / height, 1 / MAX_RATIO), MAX_RATIO)
    return resolve_size(f"{ratio:.6f}:1", sizes)


def prepare_upload(data: bytes, sizes: tuple[Size, ...], size: Size | None = None) -> tuple[bytes, Size]:
    """A user's picture as a PNG at ``size`` (else the allowed size nearest its shape), cropped to fit.

    Raises ParamError saying what is wrong: not a picture, a format we do not take, too many pixels. Runs in a
    decoding process with CPU-time and memory limits (engine/media/decoding.py).
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in FORMATS:
                raise ParamError("the file is a {format} image; send a PNG, JPEG, WebP, GIF or BMP picture",
                                 format=img.format)
            top = max_pixels(img.format, sizes)
            if img.width * img.height > top:
                raise ParamError("the picture is {width}x{height} pixels; send one of at most {limit} megapixels",
                                 width=img.width, height=img.height, limit=f"{top / 1_000_000:.0f}")
            if img.format == "JPEG":  # decode no larger than needed: every side at least the job's longest
                longest = max(max(s.width, s.height) for s in ((size,) if size else sizes))
                img.draft("RGB", (longest, longest))
            img.seek(0)
            upright = ImageOps.exif_transpose(img)  # phone photos are stored sideways with a rotation tag
            picture = _on_white(upright)
    except ParamError:  # the format or size refusals above: as they are, not "could not be decoded"
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ParamError("the file is not a picture Pillow can read; send a PNG, JPEG, WebP, GIF or BMP image") \
            from None
    except (OSError, ValueError, SyntaxError) as exc:  # a truncated or corrupt file fails while decoding
        raise ParamError("the picture could not be decoded ({why}); send it again or try another file",
                         why=exc) from None
    target = size or nearest_size(picture.width, picture.height, sizes)
    # cover the target and cut the overhang evenly: the picture keeps its proportions
    fitted = ImageOps.fit(picture, (target.width, target.height), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    fitted.save(buf, "PNG", compress_level=4)
    return buf.getvalue(), target


def _on_white(image: Image.Image) -> Image.Image:
    # transparent parts would turn black in RGB; the model reads white as "empty" far better
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def store_upload(data_dir: Path, png: bytes) -> str:
    """Write a prepared picture under DATA_DIR/uploads (named by its content); returns its path below DATA_DIR."""
    relative = f"{UPLOADS}/{hashlib.sha256(png).hexdigest()[:32]}.png"
    path = Path(data_dir) / relative
    if not path.is_file():  # the same picture sent twice is stored once
        atomic_write(path, png)
    return relative


def with_upload(params: GenerationParams, upload: str, size: Size, strength: float) -> GenerationParams:
    """``params`` made image-to-image from an upload at ``size``, ``strength`` away from it.

    The steps grow if needed so that at least one denoising step runs at ``strength`` (as for variations).
    """
    from dataclasses import replace

    return replace(params, init_image=upload, width=size.width, height=size.height, strength=strength,
                   steps=max(params.steps, math.ceil(1 / strength)))


def source_path(store: JobStore, data_dir: Path, params: GenerationParams) -> Path:
    """The file an image-to-image job starts from; ParamError says why it is not there."""
    if params.init_image is not None:
        path = Path(data_dir) / params.init_image
        if not path.is_file():
            raise ParamError("The picture this job starts from was deleted from the server, so it cannot run; "
                             "send it again with /imagine image:.")
        return path
    assert params.source_job is not None
    return source_image_path(store.get(params.source_job), params.source_job, params.source_image)


def forget_upload(store: JobStore, data_dir: Path, upload: str | None) -> None:
    """Remove an upload no job needs any more: after its last job was deleted, refused, or had its results removed
    by retention."""
    if upload and not store.uses_upload(upload):
        (Path(data_dir) / upload).unlink(missing_ok=True)
