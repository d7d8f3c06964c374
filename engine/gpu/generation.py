"""One batch of compatible jobs through the pipeline: the part an in-process worker and a remote
GPU worker (engine/remote/gpu_worker.py) share.

No store, queue or network here: the caller supplies the variation sources, says which jobs
were cancelled, and receives progress and the images of each job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.gpu.acceleration import padded_batch_size
from engine.gpu.lora.switch import in_slot, wanted
from engine.gpu.model import LoadedModel
from engine.gpu.pipeline import ImageSpec, latents_preview, run_batch
from engine.jobs.records import Job
from engine.media.canvas import Canvas, build_canvas, finish
from engine.requests.params import GenerationParams
from engine.requests.sizes import Size

# (job, step, total, small JPEG preview or None)
ProgressHook = Callable[[Job, int, int, "bytes | None"], None]


@dataclass(frozen=True)
class BatchResult:
    """The images of each job of a batch (cancelled jobs have none), the time per image, and each job's NSFW
    scores, one per image (engine/gpu/safety.py; none without a classifier)."""

    images: dict[int, list[Any]]
    seconds_per_image: float
    scores: dict[int, tuple[float, ...]] = field(default_factory=dict)


def generate(model: LoadedModel, jobs: list[Job], *, preview_interval: float, on_progress: ProgressHook,
             is_cancelled: Callable[[int], bool], stopping: Callable[[], bool],
             sources: dict[int, Any] | None = None) -> BatchResult:
    """Run ``jobs`` (same batch key) in one pipeline call, each image with its own seed.

    ``sources`` maps an image-to-image job's id to what ``prepare_source`` made of its source.
    Raises GenerationInterrupted when every job was cancelled or ``stopping()`` turned True.
    """
    first = jobs[0].params
    specs = [ImageSpec(job.params.prompt, job.params.negative_prompt, seed) for job in jobs for seed in job.params.seeds]
    first_index = {job.id: sum(j.params.count for j in jobs[:i]) for i, job in enumerate(jobs)}
    starts = [sources[job.id] for job in jobs for _ in job.params.seeds] if first.is_image_to_image and sources \
        else None
    canvases = [c for c in starts if isinstance(c, Canvas)] if starts else []  # a batch's jobs are all, or none
    init_images = [c.image for c in canvases] if canvases else starts
    last_preview = [0.0]

    def want_latents(step: int) -> bool:
        now = time.monotonic()
        if preview_interval > 0 and now - last_preview[0] >= preview_interval and step < first.denoise_steps:
            last_preview[0] = now
            return True
        return False

    def on_step(step: int, total: int, latents: Any) -> None:
        previews = latents_preview(latents) if latents is not None else None
        for job in jobs:
            if not is_cancelled(job.id):
                on_progress(job, step, total, previews[first_index[job.id]] if previews else None)

    def should_stop() -> bool:
        # on shutdown the batch stops at its next step; its jobs stay "running" and rerun on restart
        return stopping() or all(is_cancelled(j.id) for j in jobs)

    # --tile batches and LoRA sets the slot cannot hold run eagerly (routing.py, engine/gpu/lora/slot.py), so
    # padding them to a compiled size would only add work
    want = wanted(model, first.fast, first.loras)
    eager = first.tile or (bool(first.loras) and not in_slot(model, want))
    batch_size = None if eager else padded_batch_size(model, len(specs), width=first.width, height=first.height,
                                                      guidance=first.guidance, fast=first.fast, lora=bool(want))
    started = time.perf_counter()
    images = run_batch(model, specs, width=first.width, height=first.height, steps=first.steps,
                       guidance=first.guidance, scheduler=first.scheduler, fast=first.fast,
                       on_step=on_step, should_stop=should_stop, want_latents=want_latents,
                       init_images=init_images, strength=first.strength if init_images else 1.0,
                       batch_size=batch_size, masks=[c.mask for c in canvases] if canvases else None,
                       tile=first.tile, loras=first.loras)
    if canvases:
        images = [finish(image, canvas) for image, canvas in zip(images, canvases, strict=True)]
    per_image = (time.perf_counter() - started) / max(1, len(images))
    by_job = {job.id: images[first_index[job.id]:first_index[job.id] + job.params.count]
              for job in jobs if not is_cancelled(job.id)}
    return BatchResult(by_job, per_image)


def prepare_source(params: GenerationParams, image: Any) -> Any:
    """What an image-to-image job starts from: for a canvas edit its Canvas (engine/media/canvas.py), else its source
    image as RGB at the job's size. CanvasError (a ValueError) for a stored edit that cannot be made."""
    from PIL import Image

    edit = params.edit
    if edit is not None:
        return build_canvas(edit, image, Size(params.width, params.height))
    source = image.convert("RGB")
    if source.size != (params.width, params.height):
        source = source.resize((params.width, params.height), Image.Resampling.LANCZOS)
    return source
