"""Upscale (U buttons): one image resized 2x and refined image-to-image at a low strength, tile by tile.

Resizing alone (Lanczos, done where the source is read: ``generation.prepare_source``) gives a soft image;
a short image-to-image pass at UPSCALE_STRENGTH puts back the detail a 2x size can hold, keeping the
composition. SDXL models draw well only near their training size, so a target whose side is over
UPSCALE_TILE is refined in overlapping tiles of at most that side, blended with linear ramps across
the overlaps so no seam shows: a 1024x1024 result becomes 2048x2048 from 3x3 tiles of 1024x1024.

All tiles of a batch (several upscale jobs of the same size) share the same size, so they run
through ``pipeline.run_batch`` in chunks of up to MAX_BATCH tiles, each with its own seed.
The in-process worker (engine/gpu/local_worker.py) runs every batch through ``run_jobs`` (upscale jobs here,
all others to ``generation.generate``); a GPU worker (engine/remote/gpu_worker.py) picks between the two itself,
so its tests can still stand in for ``generate``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from engine.engine_settings import EngineSettings
from engine.gpu.acceleration import padded_batch_size
from engine.gpu.generation import BatchResult, ProgressHook, generate
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import ImageSpec, run_batch
from engine.jobs.records import Job
from engine.requests.params import MAX_SEED

Box = tuple[int, int, int, int]  # left, top, right, bottom
ALIGN = 8  # the VAE works in 8-pixel cells: tiles start and end on them
# a seed per tile, so neighbouring tiles do not get the same noise pattern (a prime keeps them apart)
TILE_SEED_STEP = 7919


def overlap_for(tile: int) -> int:
    """How far neighbouring tiles overlap: an eighth of a tile, at least 16 pixels, on the 8-pixel grid."""
    return max(16, tile // 8 // ALIGN * ALIGN)


def _starts(total: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along a side of ``total`` so they cover it, overlapping by at least
    ``overlap``, spread evenly and on the 8-pixel grid."""
    if total <= tile:
        return [0]
    count = math.ceil((total - overlap) / (tile - overlap))
    last = total - tile
    return [min(last, round(i * last / (count - 1) / ALIGN) * ALIGN) for i in range(count)]


def plan_tiles(width: int, height: int, tile: int) -> list[Box]:
    """The tiles that cover a ``width`` x ``height`` image: one box when it fits in ``tile``, else a grid."""
    tile_w, tile_h = min(width, tile), min(height, tile)
    overlap = overlap_for(tile)
    return [(x, y, x + tile_w, y + tile_h) for y in _starts(height, tile_h, overlap)
            for x in _starts(width, tile_w, overlap)]


def blend(tiles: list[Any], boxes: list[Box], width: int, height: int) -> Any:
    """One image from overlapping tiles: each pixel is the weighted mean of the tiles over it, weights
    rising linearly from a tile's inner edges so every seam fades over the whole overlap."""
    import numpy as np
    from PIL import Image

    total = np.zeros((height, width, 3), dtype=np.float32)
    weight = np.zeros((height, width, 1), dtype=np.float32)
    for image, (left, top, right, bottom) in zip(tiles, boxes, strict=True):
        ramp_x = _ramp(right - left, left > 0, right < width)
        ramp_y = _ramp(bottom - top, top > 0, bottom < height)
        mask = np.outer(ramp_y, ramp_x)[:, :, None]
        total[top:bottom, left:right] += np.asarray(image.convert("RGB"), dtype=np.float32) * mask
        weight[top:bottom, left:right] += mask
    return Image.fromarray(np.clip(total / np.maximum(weight, 1e-9) + 0.5, 0, 255).astype(np.uint8))


def _ramp(length: int, fade_start: bool, fade_end: bool) -> Any:
    """Weights along one side of a tile: 1 inside, falling towards a side that borders another tile."""
    import numpy as np

    ramp = np.ones(length)
    steps = (np.arange(length) + 0.5) / max(1, length // 2)  # a tent: the overlap is always in its slopes
    if fade_start:
        ramp = np.minimum(ramp, steps)
    if fade_end:
        ramp = np.minimum(ramp, steps[::-1])
    return np.maximum(ramp, 1e-3)


def upscale_batch(model: LoadedModel, jobs: list[Job], sources: dict[int, Any], *, tile: int, chunk: int,
                  on_progress: ProgressHook, is_cancelled: Callable[[int], bool],
                  stopping: Callable[[], bool]) -> BatchResult:
    """Refine each job's source (already resized to the job's size) tile by tile; one image per job.

    Raises GenerationInterrupted when every job was cancelled or ``stopping()`` turned True.
    """
    first = jobs[0].params
    boxes = plan_tiles(first.width, first.height, tile)
    tile_w, tile_h = boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]
    work = [(job, index, box) for job in jobs for index, box in enumerate(boxes)]
    chunks = [work[i:i + max(1, chunk)] for i in range(0, len(work), max(1, chunk))]
    per_call = min(first.steps, int(first.steps * first.strength))
    done_calls = 0

    def on_step(step: int, _total: int, _latents: Any) -> None:
        # one bar for the whole job, across its tile calls (a preview of one tile would mislead)
        for job in jobs:
            if not is_cancelled(job.id):
                on_progress(job, done_calls * per_call + step, len(chunks) * per_call, None)

    def should_stop() -> bool:
        return stopping() or all(is_cancelled(j.id) for j in jobs)

    started = time.perf_counter()
    refined: dict[int, list[Any]] = {job.id: [None] * len(boxes) for job in jobs}
    for part in chunks:
        specs = [ImageSpec(job.params.prompt, job.params.negative_prompt,
                           (job.params.seed + index * TILE_SEED_STEP) % (MAX_SEED + 1)) for job, index, _box in part]
        crops = [sources[job.id].crop(box) for job, _index, box in part]
        batch_size = padded_batch_size(model, len(specs), width=tile_w, height=tile_h, guidance=first.guidance,
                                       fast=first.fast)
        images = run_batch(model, specs, width=tile_w, height=tile_h, steps=first.steps, guidance=first.guidance,
                           scheduler=first.scheduler, fast=first.fast, on_step=on_step, should_stop=should_stop,
                           init_images=crops, strength=first.strength, batch_size=batch_size)
        for (job, index, _box), image in zip(part, images, strict=True):
            refined[job.id][index] = image
        done_calls += 1
    per_image = (time.perf_counter() - started) / max(1, len(jobs))
    return BatchResult({job.id: [blend(refined[job.id], boxes, first.width, first.height)]
                        for job in jobs if not is_cancelled(job.id)}, per_image)


def run_jobs(model: LoadedModel, jobs: list[Job], settings: EngineSettings, *, on_progress: ProgressHook,
             is_cancelled: Callable[[int], bool], stopping: Callable[[], bool],
             sources: dict[int, Any] | None = None) -> BatchResult:
    """Run one batch of compatible jobs: upscale jobs tile by tile here, all others in one pipeline call."""
    if jobs[0].params.upscale > 1:
        assert sources is not None, "upscale jobs start from their source image"
        return upscale_batch(model, jobs, sources, tile=settings.upscale_tile, chunk=settings.max_batch,
                             on_progress=on_progress, is_cancelled=is_cancelled, stopping=stopping)
    return generate(model, jobs, preview_interval=settings.preview_interval, on_progress=on_progress,
                    is_cancelled=is_cancelled, stopping=stopping, sources=sources)
