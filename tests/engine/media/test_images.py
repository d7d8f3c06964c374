"""Result files: PNG with parameters, delivery copies, atomic writes, fitting under an upload limit."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.jobs.records import Job, Requester
from engine.media import images
from engine.media.images import SavedImage, encode, fit_under, png_metadata, result_files, save_png_result
from engine.requests.params import GenerationParams
from tests.engine.helpers import params


def noise(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A random RGB image (hard to compress, like the tiny model's output)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def save_result(image: Image.Image, out_dir: Path, job_id: int, index: int, p: GenerationParams, seed: int,
                delivery_format: str = "webp") -> SavedImage:
    """A result saved as the bot host saves a PNG that a GPU worker encoded (the copy made here)."""
    png = encode(image, "png", pnginfo=png_metadata(p, seed, job_id))
    return save_png_result(png, out_dir, job_id, index, delivery_format)


def test_png_holds_parameters_text_and_json(tmp_path: Path) -> None:
    """The PNG has an A1111-style 'parameters' text and an 'imagine' JSON with this image's seed and job."""
    p = params("a red fox", seed=10, count=2, negative="ugly")
    path = save_result(noise(), tmp_path, 7, 1, p, 11).png
    with Image.open(path) as img:
        assert img.format == "PNG"
        text = dict(img.text)
    assert text["parameters"] == p.with_seed(11).describe()
    data = json.loads(text["imagine"])
    assert (data["seed"], data["count"], data["job_id"], data["negative_prompt"]) == (11, 1, 7, "ugly")


def test_png_is_lossless(tmp_path: Path) -> None:
    """The PNG original keeps the exact pixels."""
    image = noise()
    with Image.open(save_result(image, tmp_path, 1, 0, params(), 1).png) as img:
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(image))


@pytest.mark.parametrize(("fmt", "suffix", "pil_format"), [("webp", ".webp", "WEBP"), ("jpeg", ".jpg", "JPEG")])
def test_delivery_copy_next_to_png(tmp_path: Path, fmt: str, suffix: str, pil_format: str) -> None:
    """A delivery copy in the configured format sits next to the PNG, and save_result returns its path."""
    saved = save_result(noise(96, 64), tmp_path, 3, 0, params(), 1, delivery_format=fmt)
    assert saved == SavedImage(png=tmp_path / "job00000003-0.png", delivery=tmp_path / f"job00000003-0{suffix}")
    with Image.open(saved.delivery) as img:
        assert (img.format, img.size) == (pil_format, (96, 64))


def test_png_delivery_means_the_png_itself(tmp_path: Path) -> None:
    """With DELIVERY_FORMAT=png no copy is written and the PNG is delivered."""
    saved = save_result(noise(), tmp_path, 3, 0, params(), 1, delivery_format="png")
    assert saved.delivery == saved.png and [p.name for p in tmp_path.iterdir()] == [saved.png.name]


def test_results_are_named_by_job_and_index(tmp_path: Path) -> None:
    """Files are named after the job id and image index, in the given folder (created if needed)."""
    saved = save_result(noise(), tmp_path / "2026-01-01", 42, 3, params(), 1)
    assert saved.png == tmp_path / "2026-01-01" / "job00000042-3.png"


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    """Atomic writes leave only the final files behind."""
    save_result(noise(), tmp_path, 1, 0, params(), 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job00000001-0.png", "job00000001-0.webp"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the final rename fails, the temporary file is removed and the error propagates."""
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_result(noise(), tmp_path, 1, 0, params(), 1)
    assert list(tmp_path.iterdir()) == []


def test_failed_copy_removes_the_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the delivery copy cannot be encoded, the PNG is removed too: a result is both files or neither."""
    real_encode = images.encode

    def broken_webp(image: Image.Image, fmt: str, *args, **kwargs) -> bytes:
        if fmt == "webp":
            raise OSError(28, "No space left on device")
        return real_encode(image, fmt, *args, **kwargs)

    monkeypatch.setattr(images, "encode", broken_webp)
    with pytest.raises(OSError):
        save_result(noise(), tmp_path, 1, 0, params(), 1)
    assert list(tmp_path.iterdir()) == []


def done_job(results: tuple[str, ...], deliveries: tuple[str, ...] = ()) -> Job:
    """A finished job record with these stored paths."""
    return Job(id=5, state="done", priority=0, requester=Requester("u"), params=params(count=len(results)),
               created_at=0.0, results=results, deliveries=deliveries)


def test_result_files_are_the_stored_pngs_and_copies() -> None:
    """A job's files are its stored PNGs and delivery copies, nothing else."""
    job = done_job(("/r/a.png", "/r/b.png"), ("/r/a.jpg", "/r/b.jpg"))
    assert result_files(job) == [Path("/r/a.png"), Path("/r/b.png"), Path("/r/a.jpg"), Path("/r/b.jpg")]


def test_result_files_list_a_png_delivered_as_itself_once() -> None:
    """With DELIVERY_FORMAT=png the PNG is also the delivery copy; it is listed once."""
    assert result_files(done_job(("/r/a.png",), ("/r/a.png",))) == [Path("/r/a.png")]


def test_result_files_of_an_older_row_include_the_old_copy_names() -> None:
    """A row saved before copies were recorded also lists the names older code gave its copies."""
    assert result_files(done_job(("/r/a.png",))) == [Path("/r/a.png"), Path("/r/a.webp"), Path("/r/a.jpg")]


def test_result_files_of_a_job_delivered_before_its_pngs_include_the_png_beside_each_copy() -> None:
    """Results still standing in as the delivery copies: a PNG written but not yet recorded is included."""
    job = done_job(("/r/a.webp", "/r/b.webp"), ("/r/a.webp", "/r/b.webp"))
    assert result_files(job) == [Path("/r/a.webp"), Path("/r/b.webp"), Path("/r/a.png"), Path("/r/b.png")]


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("webp", b"RIFF"), ("jpeg", b"\xff\xd8")])
def test_encode_formats(fmt: str, magic: bytes) -> None:
    """encode writes PNG, WebP and JPEG bytes."""
    assert encode(noise(), fmt).startswith(magic)


def test_encode_unknown_format_is_refused() -> None:
    """An unknown format raises ValueError naming it."""
    with pytest.raises(ValueError, match="gif"):
        encode(noise(), "gif")


def test_fit_under_keeps_small_files(tmp_path: Path) -> None:
    """A file under the limit is returned as it is."""
    path = save_result(noise(), tmp_path, 1, 0, params(), 1).png
    data, suffix = fit_under(path, 10_000_000)
    assert (data, suffix) == (path.read_bytes(), ".png")


def test_fit_under_reencodes_large_files(tmp_path: Path) -> None:
    """A file over the limit becomes a JPEG under the limit."""
    path = save_result(noise(512, 512), tmp_path, 1, 0, params(), 1, delivery_format="png").png
    limit = path.stat().st_size // 4
    data, suffix = fit_under(path, limit)
    assert suffix == ".jpg" and len(data) <= limit
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"


def test_fit_under_impossible_limit_is_refused(tmp_path: Path) -> None:
    """A limit no JPEG can meet raises ValueError naming the file."""
    path = save_result(noise(), tmp_path, 1, 0, params(), 1).png
    with pytest.raises(ValueError, match="job00000001-0.png"):
        fit_under(path, 10)


def test_png_metadata_without_job_id() -> None:
    """Metadata for a CLI image (no job) carries the seed and no job id."""
    data = encode(noise(), "png", pnginfo=png_metadata(params(seed=3), 3, None))
    with Image.open(io.BytesIO(data)) as img:
        meta = json.loads(img.text["imagine"])
    assert meta["seed"] == 3 and "job_id" not in meta


def test_a_result_as_a_worker_sent_it_is_written_without_decoding(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The PNG and the delivery copy a GPU worker encoded are written byte for byte; nothing is decoded."""
    png, copy = encode(noise(), "png"), encode(noise(), "webp")
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("the bot host decoded an image"))
    saved = images.write_result_files(png, copy, tmp_path, 4, 1, "webp")
    assert (saved.png.read_bytes(), saved.delivery.read_bytes()) == (png, copy)
    assert saved.delivery == tmp_path / "job00000004-1.webp"
