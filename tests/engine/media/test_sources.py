"""A user's picture as a job's source (engine/media/sources.py): checked, cropped to size, stored once, run like a
variation, and removed with its last job."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from engine.media.sources import prepare_upload, store_upload
from engine.requests.params import ParamError, ParamRequest
from engine.requests.sizes import parse_size_list
from tests.engine.helpers import wait_final, who

SIZES = parse_size_list("64x64,96x64,64x96")


def picture(width: int, height: int, mode: str = "RGB", colour: tuple[int, ...] = (200, 40, 40),
            fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buf, fmt)
    return buf.getvalue()


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img


def test_the_size_nearest_the_pictures_shape_is_chosen() -> None:
    """A landscape picture becomes the landscape size, a portrait one the portrait size."""
    assert prepare_upload(picture(300, 200), SIZES)[1].width == 96
    assert prepare_upload(picture(200, 300), SIZES)[1].height == 96
    assert decoded(prepare_upload(picture(300, 200), SIZES)[0]).size == (96, 64)


def test_a_chosen_size_is_kept_and_the_picture_cropped_to_it() -> None:
    """With the size given, the picture covers it and the overhang is cut (no stretching)."""
    half = Image.new("RGB", (200, 100), (0, 0, 255))
    half.paste((255, 0, 0), (0, 0, 100, 100))  # left half red, right half blue
    buf = io.BytesIO()
    half.save(buf, "PNG")
    data, size = prepare_upload(buf.getvalue(), SIZES, SIZES[0])
    square = decoded(data)
    assert size == SIZES[0] and square.size == (64, 64)
    assert square.getpixel((2, 32))[0] > 200 and square.getpixel((61, 32))[2] > 200  # centre crop keeps both


def test_transparency_becomes_white() -> None:
    """Transparent pixels turn white, not black, before the model sees them."""
    data, _size = prepare_upload(picture(64, 64, "RGBA", (0, 0, 0, 0)), SIZES)
    assert decoded(data).getpixel((10, 10)) == (255, 255, 255)


def test_jpeg_and_webp_are_taken() -> None:
    """JPEG and WebP pictures are read as well as PNG."""
    for fmt in ("JPEG", "WEBP"):
        assert prepare_upload(picture(64, 64, fmt=fmt), SIZES)[1] == SIZES[0]


def test_a_file_that_is_no_picture_is_refused() -> None:
    """Bytes Pillow cannot read are refused with what to send instead."""
    with pytest.raises(ParamError, match="not a picture Pillow can read"):
        prepare_upload(b"%PDF-1.4 not a picture", SIZES)


def test_a_format_not_taken_is_refused_as_such() -> None:
    """A TIFF is a picture, just not one the engine takes: the refusal says so (it was wrapped in "could not be
    decoded", its own words lost, and said half in English in other languages)."""
    with pytest.raises(ParamError) as info:
        prepare_upload(picture(64, 64, fmt="TIFF"), SIZES)
    assert info.value.phrase.template.startswith("the file is a {format} image")
    assert str(info.value) == "the file is a TIFF image; send a PNG, JPEG, WebP, GIF or BMP picture"


def test_a_picture_with_too_many_pixels_is_refused_before_decoding() -> None:
    """A header claiming 8000x8000 pixels is refused from the header alone."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 8, 2, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(ParamError, match="8000x8000 pixels"):
        prepare_upload(bomb, SIZES)


def test_the_same_picture_is_stored_once(tmp_path: Path) -> None:
    """A picture is named by its content: sending it twice stores one file."""
    data, _size = prepare_upload(picture(64, 64), SIZES)
    first, second = store_upload(tmp_path, data), store_upload(tmp_path, data)
    assert first == second and first.startswith("uploads/") and len(list((tmp_path / "uploads").iterdir())) == 1


async def _from_picture(engine, prompt: str = "a red fox", seed: int = 1):
    params = engine.resolve(ParamRequest(prompt=prompt, seed=seed))
    params = await engine.remix.from_picture(params, picture(150, 100), keep_size=False)
    return await wait_final(engine, (await engine.submit(params, who())).job.id)


async def test_a_job_from_a_picture_runs_at_its_size(engine) -> None:
    """The job runs image-to-image from the stored picture and its results have the picture's chosen size."""
    job = await _from_picture(engine)
    assert job.state == "done" and Image.open(job.results[0]).size == (96, 64)
    assert (engine.settings.data_dir / job.params.init_image).is_file()


async def test_a_variation_of_such_a_result_starts_from_the_result(engine) -> None:
    """V on a result made from a picture varies that result, not the picture."""
    job = await _from_picture(engine)
    varied = await engine.variation(job.id, 0, seed=5)
    assert varied.source_job == job.id and varied.init_image is None


async def test_the_picture_goes_with_its_last_job(engine) -> None:
    """Deleting a job removes its picture only once no other job (a reroll) starts from it."""
    first = await _from_picture(engine, seed=1)
    second = await _from_picture(engine, seed=2)
    path = engine.settings.data_dir / first.params.init_image
    assert second.params.init_image == first.params.init_image
    await engine.delete_job(first.id)
    assert path.is_file()
    await engine.delete_job(second.id)
    assert not path.exists()


async def test_a_picture_deleted_before_its_job_ran_fails_the_job(engine) -> None:
    """A job whose picture is gone when it runs fails with a message saying to send it again."""
    params = await engine.remix.from_picture(engine.resolve(ParamRequest(prompt="a fox", seed=1)), picture(64, 64),
                                             keep_size=False)
    (engine.settings.data_dir / params.init_image).unlink()
    job = await wait_final(engine, (await engine.submit(params, who())).job.id)
    assert job.state == "failed" and "send it again" in job.error
