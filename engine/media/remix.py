"""Parameters for new jobs made from earlier ones or from a user's picture: variations (V buttons),
upscales (U buttons), Edit (new words, the same settings and seed), ``/imagine image:``.

Everything here ends in ``Engine.resolve`` (engine/service.py), the path every /imagine takes, so a
job made from another one is validated against today's defaults, limits and styles like any request.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from PIL import Image

from engine.engine_settings import EngineSettings
from engine.jobs.records import Job
from engine.jobs.store import JobStore
from engine.media.canvas import grid_picture
from engine.media.decoding import PictureDecoder
from engine.media.saving import source_image_path
from engine.media.sources import forget_upload, store_upload, with_upload
from engine.requests.canvas_edits import CanvasEdit, canvas_size
from engine.requests.checks import Phrase
from engine.requests.loras import spec_of
from engine.requests.params import MAX_SEED, GenerationParams, ParamError, ParamRequest
from engine.requests.sizes import Size
from engine.requests.styles import NO_STYLE

Resolve = Callable[[ParamRequest, "str | None"], GenerationParams]


def edit_request(source: GenerationParams, changes: ParamRequest) -> ParamRequest:
    """An /imagine request for ``source``'s settings with what the Edit form changed.

    ``changes`` holds the form's prompt and negative prompt and any inline parameters typed into it
    (``--steps 30``); everything it leaves unset keeps the source job's value, the seed and the style
    included (the style wraps the new words again), so an edit shows what the new words do to the same
    picture.
    """
    base: dict[str, Any] = {"size": str(source.size), "steps": source.steps, "guidance": source.guidance,
                            "seed": source.seed, "count": source.count, "scheduler": source.scheduler,
                            "fast": source.fast, "style": source.style or NO_STYLE, "tile": source.tile,
                            "loras": spec_of(source.loras), "model": source.model, "translate": source.translate}
    given = {f.name: getattr(changes, f.name) for f in fields(changes) if getattr(changes, f.name) is not None}
    if source.is_image_to_image and "size" in given:
        raise ParamError("the size of an image made from another image is that image's size; "
                         "use /imagine for another size")
    if source.is_image_to_image:
        base["size"] = None  # not necessarily one of SIZES (see below); checked against the source instead
    return ParamRequest(**{**base, **given})


def keep_source(edited: GenerationParams, source: GenerationParams) -> GenerationParams:
    """An edited job keeps the image it was made from (a variation's source, or the user's picture) and its size."""
    if not source.is_image_to_image:
        return edited
    return replace(edited, width=source.width, height=source.height, source_job=source.source_job,
                   source_image=source.source_image, strength=source.strength, init_image=source.init_image,
                   upscale=source.upscale, count=source.count, canvas=source.canvas, zoom=source.zoom,
                   region=source.region)


class Remix:
    """New parameters from stored jobs, for the front doors (reached as ``engine.media.remix``)."""

    def __init__(self, settings: EngineSettings, resolve: Resolve, store: Callable[[], JobStore]) -> None:
        self.settings = settings
        self._resolve = resolve
        self._store = store
        self.decoder = PictureDecoder()  # members' pictures, decoded in processes of their own under limits

    async def _finished_image(self, job_id: int, image: int) -> Job:
        """The finished job whose image ``image`` is still on disk; ParamError says why not."""
        store = self._store()

        def finished_source() -> Job:
            found = store.get(job_id)
            source_image_path(found, job_id, image)  # raises unless the image is there
            assert found is not None
            return found

        return await asyncio.to_thread(finished_source)  # one hop for the row and the file check

    async def variation(self, job_id: int, image: int, seed: int | None = None,
                        subtle: bool = False) -> GenerationParams:
        """Parameters for variations of image ``image`` (0-based) of finished job ``job_id``.

        Same prompt, size, steps and count as the source, a new seed (random unless given) and
        VARY_STRENGTH (``subtle``: VARY_SUBTLE_STRENGTH). Raises ParamError, saying why, when the source image is
        not there.
        """
        source = await self._finished_image(job_id, image)
        seed = random.SystemRandom().randint(0, MAX_SEED) if seed is None else seed
        strength = self.settings.vary_subtle_strength if subtle else self.settings.vary_strength
        return source.params.variation(job_id, image, strength, seed)

    async def _edited(self, job_id: int) -> Job:
        """Job ``job_id``, which an Edit starts from; ParamError when it is gone."""
        job = await asyncio.to_thread(self._store().get, job_id)
        if job is None:
            raise ParamError("Job {job} no longer exists, so it cannot be edited.", job=job_id)
        return job

    async def upscale(self, job_id: int, image: int, creative: bool = False) -> GenerationParams:
        """Parameters for a 2x upscale of image ``image`` (0-based) of finished job ``job_id`` at UPSCALE_STRENGTH
        (``creative``: UPSCALE_CREATIVE_STRENGTH).

        Raises ParamError, saying why, when the image is not there or is an upscale already.
        """
        source = await self._finished_image(job_id, image)
        if source.params.upscale > 1:
            raise ParamError("Image {image} of job {job} is already upscaled ({size}); upscale the image it was made "
                             "from instead.", image=image + 1, job=job_id, size=source.params.size)
        strength = self.settings.upscale_creative_strength if creative else self.settings.upscale_strength
        return source.params.upscaled(job_id, image, strength)

    async def canvas(self, job_id: int, image: int, edit: CanvasEdit, changes: ParamRequest | None = None,
                     guild_id: str | None = None) -> GenerationParams:
        """Parameters for ``edit`` (Zoom Out, Pan, Vary (Region)) of image ``image`` (0-based) of finished job
        ``job_id``: its settings and count, or with ``changes`` (a form's new words) resolved as ``edit`` does, on the
        edit's canvas with a new random seed. ParamError says why not (the image is gone or upscaled, no size this
        server offers fits a pan).
        """
        source = (await self.editable(job_id, image, edit.label)).params
        size = canvas_size(source.size, edit, self.settings.sizes)  # a CanvasError is a ParamError
        base = source if changes is None else await self.edit(job_id, changes, guild_id)
        return base.on_canvas(job_id, image, edit, size, random.SystemRandom().randint(0, MAX_SEED))

    async def editable(self, job_id: int, image: int, what: str) -> Job:
        """The finished job whose image ``image`` a canvas edit (``what``) may start from; ParamError says why not."""
        job = await self._finished_image(job_id, image)
        if job.params.upscale > 1:
            raise ParamError("Image {image} of job {job} is an upscale ({size}); use {what} on the image it was made "
                             "from instead.", image=image + 1, job=job_id, size=job.params.size, what=Phrase(what))
        return job

    async def region_grid(self, job_id: int, image: int) -> bytes:
        """A PNG of image ``image`` of finished job ``job_id`` with the Vary (Region) grid drawn over it, to choose
        cells from; ParamError says why not (gone, or an upscale)."""
        job = await self.editable(job_id, image, "Vary (Region)")

        def draw() -> bytes:
            with Image.open(source_image_path(job, job_id, image)) as picture:
                return grid_picture(picture)

        return await asyncio.to_thread(draw)

    async def from_picture(self, params: GenerationParams, picture: bytes, *, keep_size: bool) -> GenerationParams:
        """``params`` made image-to-image from a user's picture (the bytes of the file they sent).

        The picture is checked, cropped to the job's size (``keep_size``: the user chose it) or to the
        allowed size nearest its shape, and stored under DATA_DIR; strength is the request's, else
        VARY_STRENGTH. Raises ParamError saying what is wrong with the file.
        """
        size = Size(params.width, params.height) if keep_size else None
        png, size = await self.decoder.prepare(picture, self.settings.sizes, size)
        upload = await asyncio.to_thread(store_upload, self.settings.data_dir, png)
        return with_upload(params, upload, size, params.strength or self.settings.vary_strength)

    async def forget_picture(self, params: GenerationParams) -> None:
        """The member's picture of a request that was not queued after all, unless a job needs it."""
        if params.init_image:
            await asyncio.to_thread(forget_upload, self._store(), self.settings.data_dir, params.init_image)

    async def remixed(self, job_id: int, image: int | None, changes: ParamRequest,
                      guild_id: str | None, *, subtle: bool = False) -> GenerationParams:
        """Remix mode: job ``job_id`` rerolled (``image`` None: a new seed) or its image ``image`` (0-based) varied
        at VARY_STRENGTH (``subtle``: VARY_SUBTLE_STRENGTH), with new words (``changes``) resolved as ``edit``
        does. ParamError says why not."""
        edited = await self.edit(job_id, changes, guild_id)
        seed = random.SystemRandom().randint(0, MAX_SEED)
        if image is None:
            return edited.with_seed(seed)
        await self._finished_image(job_id, image)
        strength = self.settings.vary_subtle_strength if subtle else self.settings.vary_strength
        return edited.variation(job_id, image, strength, seed)

    async def edit(self, job_id: int, changes: ParamRequest, guild_id: str | None) -> GenerationParams:
        """Job ``job_id``'s parameters with new words (``changes``), resolved like an /imagine in ``guild_id``.

        Raises ParamError (saying why) for a job that is gone or a change that is not allowed.
        """
        source = (await self._edited(job_id)).params
        return keep_source(self._resolve(edit_request(source, changes), guild_id), source)
