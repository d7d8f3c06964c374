"""Canvas edits (Zoom Out, Pan, Vary (Region)) as jobs: through the queue and the inpainting pipeline on the tiny
model, in float32 and in bfloat16 (the half-precision path), keeping the source's pixels outside what they paint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.jobs.records import Requester
from engine.media.canvas import build_canvas
from engine.requests.canvas_edits import CanvasEdit
from engine.requests.params import ParamError, ParamRequest
from engine.requests.sizes import Size
from engine.service import Engine
from tests.engine.helpers import wait_final, who


async def _finished(engine: Engine, **request):
    submission = await engine.submit(engine.resolve(ParamRequest(prompt="a fox", seed=1, **request)), who())
    done = await wait_final(engine, submission.job.id)
    assert done.state == "done", done.error
    return done


def _pixels(engine: Engine, job, index: int = 0) -> np.ndarray:
    with Image.open(Path(engine.settings.data_dir) / job.results[index]) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


async def _run_edit(engine: Engine, source, edit: CanvasEdit):
    params = await engine.remix.canvas(source.id, 0, edit)
    done = await wait_final(engine, (await engine.submit(params, Requester(user_id="u2"))).job.id)
    assert done.state == "done", done.error
    return done


async def test_zoom_out_keeps_the_image_shrunk_in_the_middle(engine: Engine) -> None:
    """Zoom Out 2x: a 64x64 result of the same size, whose middle is the source shrunk to half, pixel for pixel
    inside the seam band; the border is new."""
    source = await _finished(engine)
    done = await _run_edit(engine, source, CanvasEdit("zoom", zoom=2.0))
    p = done.params
    assert (p.width, p.height, p.canvas, p.zoom, p.source_job, p.strength) == (64, 64, "zoom", 2.0, source.id, 1.0)
    with Image.open(Path(engine.settings.data_dir) / source.results[0]) as image:
        canvas = build_canvas(p.edit, image, Size(64, 64))
    out = _pixels(engine, done)
    kept = np.asarray(canvas.keep) == 255
    assert kept.sum() > 0 and np.array_equal(out[kept], np.asarray(canvas.image).astype(np.int16)[kept])
    assert np.abs(out[:6] - np.asarray(canvas.image).astype(np.int16)[:6]).mean() > 1  # the border is painted


async def test_pan_left_grows_the_canvas_and_keeps_the_image_on_the_right(engine: Engine) -> None:
    """Pan left of a 64x64 image: a 96x64 canvas (the allowed size nearest 1.5 times as wide), the source on its right
    third-by-two-thirds untouched beyond the seam, the left strip new."""
    source = await _finished(engine)
    done = await _run_edit(engine, source, CanvasEdit("left"))
    assert (done.params.width, done.params.height, done.params.canvas) == (96, 64, "left")
    out, before = _pixels(engine, done), _pixels(engine, source)
    assert out.shape == (64, 96, 3)
    assert np.array_equal(out[:, 32 + 16:], before[:, 16:])  # beyond the 8-pixel seam and its fade, the source
    assert np.abs(out[:, :24] - before[:, :24]).mean() > 1  # the left part is painted


async def test_region_repaints_only_the_chosen_cells(engine: Engine) -> None:
    """Vary (Region) of cell A1: every pixel a seam away from it is the source's; A1 itself is painted again."""
    source = await _finished(engine)
    done = await _run_edit(engine, source, CanvasEdit("region", cells=1))
    out, before = _pixels(engine, done), _pixels(engine, source)
    far = np.ones((64, 64), dtype=bool)
    far[:13 + 12, :13 + 12] = False  # cell A1 is 13x13 pixels; the seam is 8 and its fade reaches a band further
    assert np.array_equal(out[far], before[far])
    assert np.abs(out[:8, :8] - before[:8, :8]).mean() > 1
    assert "Vary (Region) A1 of: job 1 image 1" in done.params.describe()


async def test_pan_beyond_the_widest_allowed_size_is_refused(engine: Engine) -> None:
    """A 96x64 image (the widest size offered) cannot pan left: the refusal names the size and what works instead."""
    source = await _finished(engine, size="96x64")
    with pytest.raises(ParamError, match="no size this server offers is wider than 96x64.*pan it up or down"):
        await engine.remix.canvas(source.id, 0, CanvasEdit("right"))


async def test_an_upscale_is_not_edited_on_its_canvas(engine: Engine) -> None:
    """Zoom Out of an upscaled image is refused, pointing at the image it was made from."""
    source = await _finished(engine)
    up = await engine.remix.upscale(source.id, 0)
    done = await wait_final(engine, (await engine.submit(up, who())).job.id)
    with pytest.raises(ParamError, match="is an upscale .*use Zoom Out 2x on the image it was made from"):
        await engine.remix.canvas(done.id, 0, CanvasEdit("zoom", zoom=2.0))


async def test_a_variation_of_an_edit_is_a_plain_variation(engine: Engine) -> None:
    """Vary a zoomed-out image: a variation of it, not another zoom; a reroll of the zoom stays a zoom."""
    source = await _finished(engine)
    zoomed = await _run_edit(engine, source, CanvasEdit("zoom", zoom=1.5))
    varied = await engine.variation(zoomed.id, 0, seed=5)
    assert (varied.canvas, varied.zoom, varied.source_job) == ("", 1.0, zoomed.id)
    assert zoomed.params.with_seed(9).edit == CanvasEdit("zoom", zoom=1.5)


async def test_a_custom_zoom_with_new_words_resolves_them(engine: Engine) -> None:
    """Custom Zoom's form: the new words and an inline setting apply, on the zoom's canvas."""
    source = await _finished(engine)
    params = await engine.remix.canvas(source.id, 0, CanvasEdit.zoom_out("1.3x"),
                                       ParamRequest(prompt="a fox in a meadow", steps=3), None)
    assert (params.prompt, params.steps, params.zoom, params.canvas) == ("a fox in a meadow", 3, 1.3, "zoom")


async def test_zoom_out_runs_in_bfloat16(make_engine) -> None:
    """The half-precision path: a zoom and a pan batch in bfloat16 on the CPU finish, at their sizes."""
    engine = await make_engine(dtype="bfloat16")
    source = await _finished(engine, count=2)
    zoomed = await _run_edit(engine, source, CanvasEdit("zoom", zoom=2.0))
    panned = await _run_edit(engine, source, CanvasEdit("down"))
    assert len(zoomed.results) == 2 and _pixels(engine, panned).shape == (96, 64, 3)
