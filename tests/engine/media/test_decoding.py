"""Members' pictures decode in processes of their own, under CPU-time and memory limits."""

from __future__ import annotations

import asyncio
import io
import re
import time

import numpy as np
import pytest
from PIL import Image

from engine.media.decoding import PictureDecoder
from engine.requests.params import ParamError
from engine.requests.sizes import parse_size_list

SIZES = parse_size_list("64x64,96x64")


def progressive_bomb(repeats: int, width: int = 3000, height: int = 2000) -> bytes:
    """A small progressive JPEG whose one small scan is repeated ``repeats`` times: cheap to send, slow to decode."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    buf = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint8)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    starts = [m.start() for m in re.finditer(b"\xff\xda", data)]
    end = data.rfind(b"\xff\xd9")
    first, last = min(zip(starts, [*starts[1:], end]), key=lambda b: b[1] - b[0])
    return data[:end] + data[first:last] * repeats + data[end:]


def photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (150, 100), (200, 40, 40)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
async def decoder():
    made = PictureDecoder(processes=1, cpu_seconds=1)
    yield made
    made.close()


async def test_a_decoder_bomb_is_stopped_and_the_next_picture_decodes(decoder: PictureDecoder) -> None:
    """A progressive JPEG that would take many seconds is stopped at the CPU limit with a clear message; the
    event loop stays responsive meanwhile, and the next member's picture decodes as usual."""
    bomb = progressive_bomb(60_000)
    lags: list[float] = []

    async def tick() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.02)
            lags.append(time.perf_counter() - started - 0.02)

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(ParamError, match="could not be decoded within 1 s of CPU"):
            await decoder.prepare(bomb, SIZES, None)
    finally:
        ticker.cancel()
    assert max(lags) < 0.2
    png, size = await decoder.prepare(photo(), SIZES, None)
    assert png.startswith(b"\x89PNG") and (size.width, size.height) == (96, 64)


async def test_a_canvas_larger_than_needed_is_refused_before_decoding(decoder: PictureDecoder) -> None:
    """A PNG declaring far more pixels than any allowed size (a few hundred bytes, then truncated) is refused
    from its header alone."""
    buf = io.BytesIO()
    Image.new("L", (6300, 6300)).save(buf, "PNG")
    with pytest.raises(ParamError, match="6300x6300 pixels"):
        await decoder.prepare(buf.getvalue()[:263], SIZES, None)
