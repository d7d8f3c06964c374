"""Upscale (engine/gpu/upscale.py): tiles that cover the image, seamless blending, and 2x jobs through the engine."""

from __future__ import annotations

import pytest
from PIL import Image

from engine.gpu.upscale import blend, overlap_for, plan_tiles
from engine.requests.params import ParamError, ParamRequest
from tests.engine.helpers import wait_final, who


def test_a_1024_result_upscaled_is_covered_by_3x3_tiles_of_1024() -> None:
    """2048x2048 in tiles of 1024: a 3x3 grid on the 8-pixel grid, covering every pixel, overlapping."""
    boxes = plan_tiles(2048, 2048, 1024)
    assert len(boxes) == 9 and {b[2] - b[0] for b in boxes} == {1024} and {b[3] - b[1] for b in boxes} == {1024}
    assert all(v % 8 == 0 for b in boxes for v in b)
    xs = sorted({b[0] for b in boxes})
    assert xs[0] == 0 and max(b[2] for b in boxes) == 2048
    assert all(b - a <= 1024 - overlap_for(1024) for a, b in zip(xs, xs[1:]))


def test_an_image_that_fits_a_tile_is_one_tile() -> None:
    """A target no larger than the tile runs in one pass."""
    assert plan_tiles(128, 96, 1024) == [(0, 0, 128, 96)]


def test_landscape_targets_tile_only_the_long_side() -> None:
    """2688x1536 with tiles of 1536: one row of tiles across, tiles as tall as the image."""
    boxes = plan_tiles(2688, 1536, 1536)
    assert {b[1] for b in boxes} == {0} and {b[3] for b in boxes} == {1536} and len(boxes) == 2


def test_blending_identical_tiles_gives_back_the_image() -> None:
    """Where tiles agree, the blend is exactly the image: the weights only decide between disagreeing tiles."""
    image = Image.effect_noise((128, 128), 60).convert("RGB")
    boxes = plan_tiles(128, 128, 64)
    assert list(blend([image.crop(b) for b in boxes], boxes, 128, 128).getdata()) == list(image.getdata())


def test_blending_fades_between_disagreeing_tiles() -> None:
    """A black tile next to a white one meets in a gradient over the overlap, not at a hard seam."""
    boxes = plan_tiles(128, 64, 64)
    tiles = [Image.new("RGB", (64, 64), (0, 0, 0) if b[0] == 0 else (255, 255, 255)) for b in boxes]
    row = [blend(tiles, boxes, 128, 64).getpixel((x, 32))[0] for x in range(128)]
    assert row[0] == 0 and row[-1] == 255 and row == sorted(row)
    assert max(b - a for a, b in zip(row, row[1:])) < 64


async def _finished(engine, **request):
    request.setdefault("seed", 3)
    params = engine.resolve(ParamRequest(prompt="a red fox", **request))
    return await wait_final(engine, (await engine.submit(params, who())).job.id)


async def test_upscale_doubles_the_size_of_one_image(engine) -> None:
    """U2 of a two-image job makes one image at twice the size, with image 2's seed, at UPSCALE_STRENGTH."""
    source = await _finished(engine, count=2)
    params = await engine.remix.upscale(source.id, 1)
    assert (params.width, params.height, params.count, params.seed) == (128, 128, 1, source.params.seeds[1])
    assert (params.source_job, params.source_image, params.strength, params.upscale) == \
        (source.id, 1, engine.settings.upscale_strength, 2)
    job = await wait_final(engine, (await engine.submit(params, who("u2"))).job.id)
    assert job.state == "done" and Image.open(job.results[0]).size == (128, 128)


async def test_upscale_runs_in_tiles_when_the_target_is_over_the_tile(make_settings, monkeypatch) -> None:
    """With UPSCALE_TILE below the target, the 9 tiles run in calls of MAX_BATCH and give one 2x image."""
    from engine.gpu import upscale
    from engine.service import Engine

    calls: list[tuple[int, int, int]] = []
    real = upscale.run_batch

    def counted(model, specs, **kwargs):
        calls.append((len(specs), kwargs["width"], kwargs["height"]))
        return real(model, specs, **kwargs)

    monkeypatch.setattr(upscale, "run_batch", counted)
    async with Engine(make_settings(upscale_tile=64, max_batch=4)) as engine:
        assert await engine.wait_ready(60)
        source = await _finished(engine)
        job = await wait_final(engine, (await engine.submit(await engine.remix.upscale(source.id, 0), who())).job.id)
    assert job.state == "done" and Image.open(job.results[0]).size == (128, 128)
    assert calls == [(4, 64, 64), (4, 64, 64), (1, 64, 64)]


async def test_upscales_of_the_same_size_share_a_batch_key(engine) -> None:
    """Two upscales of same-size images may run together; an upscale never batches with a variation."""
    first, second = await _finished(engine), await _finished(engine, seed=9)
    up1, up2 = await engine.remix.upscale(first.id, 0), await engine.remix.upscale(second.id, 0)
    assert up1.batch_key() == up2.batch_key()
    assert up1.batch_key() != (await engine.variation(first.id, 0)).batch_key()


async def test_an_upscale_is_not_upscaled_again(engine) -> None:
    """U on an upscaled result is refused, saying to upscale the original instead."""
    source = await _finished(engine)
    job = await wait_final(engine, (await engine.submit(await engine.remix.upscale(source.id, 0), who())).job.id)
    with pytest.raises(ParamError, match="already upscaled"):
        await engine.remix.upscale(job.id, 0)


async def test_the_png_says_what_was_upscaled(engine) -> None:
    """The upscaled PNG's parameters name the source job and image."""
    source = await _finished(engine)
    job = await wait_final(engine, (await engine.submit(await engine.remix.upscale(source.id, 0), who())).job.id)
    with Image.open(job.results[0]) as png:
        assert f"Upscale of: job {source.id} image 1, 2x" in png.text["parameters"]
