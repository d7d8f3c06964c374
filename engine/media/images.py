"""Writing results: a PNG original with its parameters, and a small delivery copy.

Everything here blocks on encoding and the disk, so it runs off the event loop: on the engine's
saver threads or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from engine.jobs.records import Job
from engine.media.files import atomic_write
from engine.requests.params import GenerationParams

# DELIVERY_FORMAT -> the suffix of the copy written next to the PNG; "png" writes no copy
DELIVERY_SUFFIX = {"webp": ".webp", "jpeg": ".jpg"}
# the names delivery copies had before the store kept their paths (rows from before migration 0002)
_UNRECORDED_COPY_SUFFIXES = (".webp", ".jpg")


@dataclass(frozen=True)
class SavedImage:
    """The files of one saved result: the PNG original and the copy to deliver (the PNG itself
    when DELIVERY_FORMAT=png)."""

    png: Path
    delivery: Path


def result_files(job: Job) -> list[Path]:
    """Every file a job's results occupy, each once, from the paths stored on the job.

    Rows saved before the store kept delivery paths (``job.deliveries`` empty) may still have a
    copy next to each PNG under a name the older code gave it, so those names are included. A
    job whose results are still its delivery copies (the PNG originals are written just after
    "done", engine/media/saving.py) may already have a PNG beside each copy, so that name is included
    too (nothing looks at the disk: removing or sizing a missing file is harmless).
    """
    paths = [Path(p) for p in (*job.results, *job.deliveries)]
    if not job.deliveries:
        paths += [Path(png).with_suffix(suffix) for png in job.results for suffix in _UNRECORDED_COPY_SUFFIXES]
    paths += [Path(p).with_suffix(".png") for p in job.results if Path(p).suffix != ".png"]
    return list(dict.fromkeys(paths))


def png_metadata(params: GenerationParams, seed: int, job_id: int | None) -> PngImagePlugin.PngInfo:
    """PNG text chunks: A1111-style ``parameters`` plus our JSON."""
    info = PngImagePlugin.PngInfo()
    one = params.with_seed(seed)
    info.add_text("parameters", one.describe())
    data: dict[str, Any] = dict(one.to_dict(), count=1)
    if job_id is not None:
        data["job_id"] = job_id
    info.add_text("imagine", json.dumps(data))
    return info


def encode(image: Image.Image, fmt: str, quality: int = 90, pnginfo: PngImagePlugin.PngInfo | None = None) -> bytes:
    """Encode an image as ``png``, ``webp`` or ``jpeg``."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, "PNG", pnginfo=pnginfo, compress_level=4)
    elif fmt == "webp":
        # method 0, the fastest: 27 ms instead of 86 ms (method 4) for a photo-like 1024² image on one core, 9 %
        # smaller, 0.08 dB lower PSNR (bench_saving_cpu, benchmarks/README.md); the copy is on a lone job's path
        image.save(buf, "WEBP", quality=quality, method=0)
    elif fmt == "jpeg":
        image.convert("RGB").save(buf, "JPEG", quality=quality, optimize=False)
    else:
        raise ValueError(f"unknown image format {fmt}")
    return buf.getvalue()


def result_path(out_dir: Path, job_id: int, index: int, fmt: str = "png") -> Path:
    """Where image ``index`` of a job is written: the PNG original, or its delivery copy in ``fmt``."""
    png = Path(out_dir) / f"job{job_id:08d}-{index}.png"
    return png if fmt == "png" else png.with_suffix(DELIVERY_SUFFIX[fmt])


def write_png(image: Image.Image, out_dir: Path, job_id: int, index: int, params: GenerationParams,
              seed: int) -> Path:
    """Encode and write one result's PNG original (with its parameters); atomic, returns the path."""
    path = result_path(out_dir, job_id, index)
    atomic_write(path, encode(image, "png", pnginfo=png_metadata(params, seed, job_id)))
    return path


def write_delivery_copy(image: Image.Image, out_dir: Path, job_id: int, index: int, fmt: str,
                        quality: int = 90) -> Path:
    """Encode and write one result's delivery copy (``fmt`` webp or jpeg); atomic, returns the path."""
    path = result_path(out_dir, job_id, index, fmt)
    atomic_write(path, encode(image, fmt, quality))
    return path


def save_png_result(png_data: bytes, out_dir: Path, job_id: int, index: int, delivery_format: str = "webp",
                    quality: int = 90) -> SavedImage:
    """Save a PNG a remote worker encoded (parameters included) plus its delivery copy; return both paths."""
    with Image.open(io.BytesIO(png_data)) as image:
        image.load()
        return _write_pair(png_data, image, Path(out_dir) / f"job{job_id:08d}-{index}.png", delivery_format,
                           quality)


def write_result_files(png_data: bytes, copy_data: bytes | None, out_dir: Path, job_id: int, index: int,
                       delivery_format: str) -> SavedImage:
    """Write a result as a GPU worker sent it: the PNG original and its delivery copy (none when the format is
    png), already encoded, so nothing is decoded here; both files or neither."""
    png = result_path(out_dir, job_id, index)
    if copy_data is None or delivery_format == "png":
        atomic_write(png, png_data)
        return SavedImage(png=png, delivery=png)
    copy = result_path(out_dir, job_id, index, delivery_format)
    atomic_write(png, png_data)
    try:
        atomic_write(copy, copy_data)
    except BaseException:
        png.unlink(missing_ok=True)  # a result is both files or neither
        raise
    return SavedImage(png=png, delivery=copy)


def _write_pair(png_data: bytes, image: Image.Image, png: Path, delivery_format: str, quality: int) -> SavedImage:
    atomic_write(png, png_data)
    if delivery_format == "png":
        return SavedImage(png=png, delivery=png)
    copy = png.with_suffix(DELIVERY_SUFFIX[delivery_format])
    try:
        atomic_write(copy, encode(image, delivery_format, quality))
    except BaseException:
        png.unlink(missing_ok=True)  # a result is both files or neither
        raise
    return SavedImage(png=png, delivery=copy)


def fit_under(path: str | Path, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes if small enough, else a re-encoded JPEG (lower quality, then smaller).

    Returns (data, suffix). Used for Discord's per-file limit, which varies by guild.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) <= max_bytes:
        return data, path.suffix
    with Image.open(path) as src:
        image = src.convert("RGB")
    scale = 1.0
    while scale > 0.05:
        frame = image if scale == 1.0 else image.resize((max(8, int(image.width * scale)),
                                                         max(8, int(image.height * scale))))
        for quality in (90, 80, 70, 55, 40):
            data = encode(frame, "jpeg", quality)
            if len(data) <= max_bytes:
                return data, ".jpg"
        scale *= 0.7
    raise ValueError(f"cannot fit {path.name} under {max_bytes} bytes")


def tile_preview(path: str | Path, max_side: int = 1024) -> bytes:
    """A JPEG of a --tile image repeated 2x2 (at most ``max_side`` pixels on its longer side), so the member sees it
    join itself without a seam."""
    with Image.open(path) as src:
        tile = src.convert("RGB")
    scale = min(1.0, max_side / (2 * max(tile.size)))
    if scale < 1.0:
        tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))),
                           Image.Resampling.LANCZOS)
    sheet = Image.new("RGB", (tile.width * 2, tile.height * 2))
    for x in (0, tile.width):
        for y in (0, tile.height):
            sheet.paste(tile, (x, y))
    return encode(sheet, "jpeg", 88)
