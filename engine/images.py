"""Writing results: a PNG original with its parameters, and a small delivery copy.

All of this runs on the worker thread (or ``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from engine.params import GenerationParams

DELIVERY_SUFFIX = {"webp": ".webp", "jpeg": ".jpg", "png": ".delivery.png"}


def delivery_path(png_path: str | Path) -> Path:
    """Where the delivery copy of a PNG result lives (same stem, format from its suffix on disk)."""
    png = Path(png_path)
    for suffix in DELIVERY_SUFFIX.values():
        candidate = png.with_suffix(suffix) if suffix != ".delivery.png" else png.with_name(png.stem + suffix)
        if candidate.exists():
            return candidate
    return png


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


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, then rename: no half-written file is ever visible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def encode(image: Image.Image, fmt: str, quality: int = 90, pnginfo: PngImagePlugin.PngInfo | None = None) -> bytes:
    """Encode an image as ``png``, ``webp`` or ``jpeg``."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, "PNG", pnginfo=pnginfo, compress_level=4)
    elif fmt == "webp":
        image.save(buf, "WEBP", quality=quality, method=4)
    elif fmt == "jpeg":
        image.convert("RGB").save(buf, "JPEG", quality=quality, optimize=False)
    else:
        raise ValueError(f"unknown image format {fmt}")
    return buf.getvalue()


def save_result(image: Image.Image, out_dir: Path, job_id: int, index: int, params: GenerationParams, seed: int,
                delivery_format: str = "webp", quality: int = 90) -> Path:
    """Save one result as PNG (with parameters) plus its delivery copy; return the PNG path."""
    png = Path(out_dir) / f"job{job_id:08d}-{index}.png"
    _atomic_write(png, encode(image, "png", pnginfo=png_metadata(params, seed, job_id)))
    if delivery_format != "png":
        copy = png.with_suffix(DELIVERY_SUFFIX[delivery_format])
        try:
            _atomic_write(copy, encode(image, delivery_format, quality))
        except BaseException:
            png.unlink(missing_ok=True)  # a result is both files or neither
            raise
    return png


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
