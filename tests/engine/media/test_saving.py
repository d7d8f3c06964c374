"""Result saving (engine/media/saving.py): the delivery copy first, the PNG original after, nothing inconsistent.

The PNG encode is gated here, as a 1024^2 PNG is slow on a real host: the job must be done and
delivered from its copy meanwhile, and the store must never name a file that is not on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.media import images, saving
from engine.service import Engine
from tests.engine.helpers import WAIT, params, wait_final, who


class PngGate:
    """Holds every PNG encode until ``open()``; optionally makes them fail instead."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        self.fail: OSError | None = None
        real = images.encode

        def encode(image: Any, fmt: str, *args: Any, **kwargs: Any) -> bytes:
            if fmt == "png":
                assert self.gate.wait(WAIT)
                if self.fail is not None:
                    raise self.fail
            return real(image, fmt, *args, **kwargs)

        monkeypatch.setattr(images, "encode", encode)
        monkeypatch.setattr(saving, "EARLY_DELIVERY_PIXELS", 0)  # the tiny model's 64x64 counts as full size

    def open(self) -> None:
        self.gate.set()


@pytest.fixture
def png_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[PngGate]:
    gate = PngGate(monkeypatch)
    yield gate
    gate.open()


def job_files(engine: Engine, job_id: int) -> list[Path]:
    return sorted(p for p in engine.settings.results_dir.rglob(f"job{job_id:08d}-*") if p.is_file())


async def wait_for(predicate: Any, timeout: float = WAIT) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_result_is_delivered_from_its_copy_before_the_png_is_written(engine: Engine,
                                                                            png_gate: PngGate) -> None:
    with engine.subscribe() as stream:
        job = (await engine.submit(params(count=2), who())).job
        while (event := await stream.next(WAIT)).kind != "done":
            pass
    assert event.job.id == job.id
    done = await engine.get_job(job.id)
    # done and deliverable while the PNGs are still being encoded; every named file exists
    assert done.state == "done" and done.results == done.deliveries and len(done.results) == 2
    assert all(Path(p).is_file() and p.endswith(".webp") for p in done.results)
    assert not any(p.suffix == ".png" for p in job_files(engine, job.id))
    png_gate.open()

    async def swapped() -> bool:
        return all(p.endswith(".png") for p in (await engine.get_job(job.id)).results)

    await wait_for(swapped)
    final = await engine.get_job(job.id)
    assert all(Path(p).is_file() for p in (*final.results, *final.deliveries))
    assert final.deliveries == done.deliveries


async def test_a_png_that_cannot_be_written_leaves_the_copy_as_the_result(engine: Engine, png_gate: PngGate) -> None:
    png_gate.fail = OSError(28, "No space left on device")
    job = (await engine.submit(params(), who())).job
    done = await wait_final(engine, job.id)
    png_gate.open()
    await engine.stop()  # the savers finish everything they were given
    assert done.state == "done" and done.results == done.deliveries
    assert all(Path(p).is_file() for p in done.results)
    assert not any(p.suffix == ".png" for p in job_files(engine, job.id))


async def test_a_job_deleted_before_its_png_is_written_leaves_no_file(engine: Engine, png_gate: PngGate) -> None:
    job = (await engine.submit(params(), who())).job
    assert (await wait_final(engine, job.id)).state == "done"
    await engine.delete_job(job.id)
    png_gate.open()
    await engine.stop()
    assert job_files(engine, job.id) == []


async def test_small_images_are_recorded_with_their_pngs_at_once(engine: Engine) -> None:
    job = await wait_final(engine, (await engine.submit(params(count=3), who())).job.id)
    assert all(p.endswith(".png") for p in job.results) and all(p.endswith(".webp") for p in job.deliveries)


def test_encoder_threads_scale_with_the_cores() -> None:
    """All cores but two encode results (at most 16): four capped fast mode near 0.09 s an image on a GPU host."""
    assert [saving.saver_threads(n) for n in (None, 1, 2, 4, 16, 64)] == [1, 1, 1, 2, 14, 16]
