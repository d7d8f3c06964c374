"""Generation parameters, per-deployment defaults and their bounds."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

from engine.engine_settings import SCHEDULERS, EngineSettings
from engine.requests.canvas_edits import ZOOM, CanvasEdit
from engine.requests.checks import ParamError, clean_prompt, float_in, int_in
from engine.requests.loras import Chosen, LoraEntry, choose, with_triggers
from engine.requests.models import ModelEntry, choose_model, offered_models
from engine.requests.sizes import Size, SizeError, resolve_size

MAX_SEED = 2**32 - 1
Entry = TypeVar("Entry", LoraEntry, ModelEntry)
NSFW_POLICIES: tuple[str, ...] = ("allow", "spoiler", "block")
# may members start from their own picture (/imagine image:, Vary with Imagine): never, in channels marked NSFW only,
# or anywhere
PICTURE_RULES: tuple[str, ...] = ("off", "nsfw_only", "on")
PLACEHOLDER = "{prompt}"  # where a style's template puts the user's words
MIN_STRENGTH = 0.05  # image-to-image below this changes nothing one can see (and VARY_STRENGTH's own bound)


_NO_CANVAS: dict[str, Any] = {"canvas": "", "zoom": 1.0, "region": 0}  # what a variation or an upscale resets
# parameter names stored by earlier versions (in SQLite and PNG metadata) -> today's
LEGACY_KEYS = {"vary_job": "source_job", "vary_image": "source_image", "vary_strength": "strength"}


@dataclass(frozen=True)
class GenerationParams:
    """Everything that determines the images of one job. Seeds are always concrete here."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    count: int = 1
    scheduler: str = "euler"
    fast: bool = False
    # image-to-image (a variation, an upscale, a member's picture), ``strength`` away from its source: image
    # ``source_image`` (0-based) of job ``source_job``, or the picture ``init_image``
    source_job: int | None = None
    source_image: int = 0
    strength: float = 0.0
    # or from a picture the user gave (engine/media/sources.py): its PNG below DATA_DIR, at this job's size
    init_image: str | None = None
    # 2 for an upscale (U buttons, engine/gpu/upscale.py): the source_job image resized 2x, refined tile by tile
    upscale: int = 1
    # a canvas edit of that image (engine/requests/canvas_edits.py): its kind ("": none), zoom-out factor, cells
    canvas: str = ""
    zoom: float = 1.0
    region: int = 0
    tile: bool = False  # --tile: a seamless tile (circular padding in the UNet and VAE: engine/gpu/pipeline.py)
    translate: bool = False  # --translate: the words go to the model in English (engine/requests/translation.py)
    translated: bool = False  # they did: ``prompt`` holds the English (a job made from this one keeps it)
    loras: Chosen = ()  # (name, weight) of each LoRA (engine/requests/loras.py), sorted by name
    model: str = ""  # the offered model's name (engine/requests/models.py); "" in jobs from before: the default
    # a named style (engine/requests/styles.py) wrapped the user's words, or LoRAs added their trigger words:
    # ``prompt`` and ``negative_prompt`` are what the model gets, ``user_prompt`` and ``user_negative`` what the
    # user wrote (kept for Edit and the /imagine line)
    style: str = ""
    user_prompt: str = ""
    user_negative: str = ""

    @property
    def size(self) -> Size:
        """The image size."""
        return Size(self.width, self.height)

    @property
    def seeds(self) -> list[int]:
        """One seed per image: consecutive from ``seed``, wrapping at 2**32."""
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.count)]

    @property
    def mode(self) -> str:
        """``fast`` (LCM-LoRA) or ``quality``."""
        return "fast" if self.fast else "quality"

    @property
    def typed_prompt(self) -> str:
        """The prompt as the user wrote it (without a style's or a LoRA's words)."""
        return self.user_prompt or self.prompt

    @property
    def typed_negative(self) -> str:
        """The negative prompt as the user (or the server's default) gave it, without a style's."""
        return self.user_negative if self.style else self.negative_prompt

    @property
    def is_image_to_image(self) -> bool:
        """True for image-to-image: a variation of an earlier image, or a job made from the user's picture."""
        return self.source_job is not None or self.init_image is not None

    @property
    def edit(self) -> CanvasEdit | None:
        """The canvas edit this job makes of its source image (Zoom Out, Pan, Vary (Region)), or None."""
        return CanvasEdit(self.canvas, self.zoom, self.region) if self.canvas else None

    @property
    def denoise_steps(self) -> int:
        """Steps the pipeline actually runs: a variation runs ``strength`` of ``steps`` (as diffusers)."""
        return min(self.steps, int(self.steps * self.strength)) if self.is_image_to_image else self.steps

    def batch_key(self) -> tuple[Any, ...]:
        """Jobs with equal keys can share one pipeline call (scalar arguments of diffusers)."""
        strength = round(self.strength, 4) if self.is_image_to_image else None  # img2img is another pipeline
        return (self.width, self.height, self.steps, round(self.guidance, 4), self.scheduler, self.mode, strength,
                self.upscale, bool(self.canvas), self.tile, self.loras, self.model)  # canvas edits: the inpainting one

    def variation(self, job_id: int, image: int, strength: float, seed: int) -> GenerationParams:
        """Parameters for a variation of image ``image`` of job ``job_id`` (these are that job's params).

        One image per variation job would waste the GPU, so it keeps the source job's count. The
        steps grow if needed so that at least one denoising step runs at ``strength``.
        """
        steps = max(self.steps, math.ceil(1 / strength))
        return replace(self, source_job=job_id, source_image=image, strength=strength, steps=steps,
                       seed=seed % (MAX_SEED + 1), init_image=None, upscale=1, **_NO_CANVAS)

    def on_canvas(self, job_id: int, image: int, edit: CanvasEdit, size: Size, seed: int) -> GenerationParams:
        """Parameters for ``edit`` of image ``image`` of job ``job_id`` (these are that job's params, or its form's):
        the same settings and count on a ``size`` canvas, painted at strength 1 (the new part has nothing to keep); not
        a tile (the edge of a zoomed or panned image cannot wrap around)."""
        return replace(self, source_job=job_id, source_image=image, strength=1.0, init_image=None, upscale=1,
                       canvas=edit.kind, zoom=edit.zoom if edit.kind == ZOOM else 1.0, region=edit.cells,
                       width=size.width, height=size.height, seed=seed % (MAX_SEED + 1), tile=False)

    def upscaled(self, job_id: int, image: int, strength: float) -> GenerationParams:
        """Parameters for a 2x upscale of image ``image`` of job ``job_id`` (these are that job's params).

        One image, at twice the size, with that image's own seed so the refinement agrees with it; the
        steps grow if needed so that at least one denoising step runs at ``strength``. Not a tile: the refinement
        runs in overlapping tiles of its own (engine/gpu/upscale.py), which cannot wrap around.
        """
        steps = max(self.steps, math.ceil(1 / strength))
        return replace(self, source_job=job_id, source_image=image, strength=strength, steps=steps, count=1,
                       seed=self.seeds[image] if image < self.count else self.seed, init_image=None, upscale=2,
                       width=self.width * 2, height=self.height * 2, tile=False, **_NO_CANVAS)

    def with_seed(self, seed: int) -> GenerationParams:
        """The same parameters with another seed (reroll)."""
        return replace(self, seed=seed % (MAX_SEED + 1))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Inverse of ``to_dict`` (unknown keys are ignored; jobs stored before the rename keep their source)."""
        names = {f.name for f in fields(cls)}
        data = {LEGACY_KEYS.get(k, k): v for k, v in data.items()}
        if "loras" in data:  # JSON has lists where the dataclass has (hashable) tuples
            data["loras"] = tuple((str(name), float(weight)) for name, weight in data["loras"])
        return cls(**{k: v for k, v in data.items() if k in names})

    def describe(self) -> str:
        """A one-line, human summary (also written into the PNG metadata)."""
        parts = [
            f"Steps: {self.steps}", f"CFG scale: {self.guidance:g}", f"Seed: {self.seed}",
            f"Size: {self.width}x{self.height}", f"Sampler: {self.scheduler}",
        ]
        if self.model:
            parts.append(f"Model: {self.model}")
        if self.fast:
            parts.append("Mode: fast")
        if self.style:
            parts.append(f"Style: {self.style}")
        if self.tile:
            parts.append("Tile: seamless")
        if self.loras:
            parts.append("LoRAs: " + ", ".join(f"{name} {weight:g}" for name, weight in self.loras))
        if self.edit is not None:
            parts.append(f"{self.edit.label} of: job {self.source_job} image {self.source_image + 1}")
        elif self.upscale > 1:
            parts.append(f"Upscale of: job {self.source_job} image {self.source_image + 1}, {self.upscale}x, "
                         f"strength {self.strength:g}")
        elif self.source_job is not None:
            parts.append(f"Variation of: job {self.source_job} image {self.source_image + 1}, "
                         f"strength {self.strength:g}")
        elif self.init_image is not None:
            parts.append(f"From an uploaded picture, strength {self.strength:g}")
        neg = f"\nNegative prompt: {self.negative_prompt}" if self.negative_prompt else ""
        return f"{self.prompt}{neg}\n" + ", ".join(parts)


@dataclass(frozen=True)
class Defaults:
    """Operator defaults and limits for one scope (the deployment, or a guild's overrides on it)."""

    size: str = "1024x1024"
    steps: int = 25
    guidance: float = 9.0
    negative_prompt: str = ""
    count: int = 1
    scheduler: str = "euler"
    fast: bool = False
    style: str = ""  # a style preset's name (engine/requests/styles.py); "" = none
    model: str = ""  # an offered model's name (engine/requests/models.py); "" = the first offered
    # the offered models and LoRAs members may choose here (a server's list within the operator's); empty: all
    models_allowed: tuple[str, ...] = ()
    loras_allowed: tuple[str, ...] = ()
    max_steps: int = 60
    max_count: int = 4
    per_user_cap: int = 4
    nsfw_policy: str = "allow"
    nsfw_threshold: float = 0.5  # the image safety score from which an image counts as NSFW (engine/gpu/safety.py)
    pictures: str = "on"  # PICTURE_RULES: whether members may start from their own picture
    # images per UTC day / clock hour, per member and server-wide; 0 = no limit (engine/rules/quota.py)
    quota_member_day: int = 0
    quota_member_hour: int = 0
    quota_server_day: int = 0
    quota_server_hour: int = 0
    quota_exempt_roles: tuple[str, ...] = ()  # role ids whose members have no quota

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> Defaults:
        """The deployment defaults from the environment (before any run-time change)."""
        return cls(
            size=str(settings.default_size), steps=settings.default_steps,
            guidance=settings.default_guidance, negative_prompt=settings.default_negative_prompt,
            count=1, scheduler=settings.default_scheduler, fast=False,
            max_steps=settings.max_steps, max_count=settings.max_count,
            per_user_cap=settings.per_user_cap, nsfw_policy=settings.operator_nsfw_policy,
            nsfw_threshold=settings.safety_threshold,
        )

    def merged(self, overrides: dict[str, Any]) -> Defaults:
        """These defaults with ``overrides`` (already validated) applied."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in known})


DEFAULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Defaults))


@dataclass(frozen=True)
class Limits:
    """Hard bounds of the deployment, from the environment; no override can exceed them."""

    sizes: tuple[Size, ...]
    max_steps: int
    max_guidance: float
    max_count: int
    fast_steps: int = 4  # the LCM recipe's step count (FAST_STEPS), used when a fast request names none
    loras: tuple[LoraEntry, ...] = ()  # the LoRAs offered (LORAS)
    max_loras: int = 3
    models: tuple[ModelEntry, ...] = (ModelEntry("ssd-1b", "segmind/SSD-1B"),)  # the models offered (MODELS)

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> Limits:
        """Bounds from the engine settings."""
        return cls(settings.sizes, settings.max_steps, settings.max_guidance, settings.max_count, settings.fast_steps,
                   settings.loras, settings.max_loras, offered_models(settings.models, settings.model_id))


@dataclass(frozen=True)
class ParamRequest:
    """Raw, optional user input for one generation; ``None`` means "use the default"."""

    prompt: str
    negative_prompt: str | None = None
    size: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    count: int | None = None
    scheduler: str | None = None
    fast: bool | None = None
    style: str | None = None  # a style's name, "none" for none; None: the server's default style
    strength: float | None = None  # how far from the user's picture (with /imagine image:); None: VARY_STRENGTH
    tile: bool | None = None  # a seamless tile (--tile)
    translate: bool | None = None  # the words into English first (--translate)
    loras: str | None = None  # LoRAs by name with optional weights (--lora pixel:0.8,ink); None or "none": none
    model: str | None = None  # an offered model's name (--model); None: the server's default


@dataclass(frozen=True)
class Style:
    """A style preset (engine/requests/styles.py checks and keeps them): a template around ``{prompt}``, a negative
    prompt added to the user's, and defaults for guidance and steps that replace the server's."""

    name: str
    template: str
    negative: str = ""
    guidance: float | None = None
    steps: int | None = None

    def apply(self, prompt: str, negative: str) -> tuple[str, str]:
        """The prompt inside the template, and the user's negative prompt followed by the style's."""
        # str.replace, not str.format: braces in a user's prompt are just text
        return (self.template.replace(PLACEHOLDER, prompt),
                ", ".join(part for part in (negative, self.negative) if part))


def build_params(req: ParamRequest, defaults: Defaults, limits: Limits,
                 rng: random.Random | None = None, style: Style | None = None) -> GenerationParams:
    """Resolve raw input against defaults and bounds into concrete parameters.

    Out-of-range values raise ParamError with the allowed range; a missing seed is drawn at random.
    Fast mode is the LCM recipe: FAST_STEPS steps and no CFG unless the request sets steps or guidance.
    ``style`` (the one the request or the server picked) wraps the words and replaces the server's
    default guidance and steps with its own; this is the only place a style is applied.
    """
    prompt = clean_prompt(req.prompt)
    negative = clean_prompt(req.negative_prompt if req.negative_prompt is not None else defaults.negative_prompt,
                            allow_empty=True)
    if style is not None:
        defaults = replace(defaults, guidance=defaults.guidance if style.guidance is None else style.guidance,
                           steps=defaults.steps if style.steps is None else style.steps)
    try:
        size = resolve_size(req.size if req.size is not None else defaults.size, limits.sizes)
    except SizeError as exc:
        raise ParamError("size: {why}", why=exc.phrase) from None
    fast = bool(req.fast) if req.fast is not None else defaults.fast
    if fast:
        req = replace(req, steps=req.steps if req.steps is not None else limits.fast_steps,
                      guidance=req.guidance if req.guidance is not None else 1.0)
    max_steps = min(defaults.max_steps, limits.max_steps)
    max_count = min(defaults.max_count, limits.max_count)
    # a default above a limit (say a guild's steps after the global max_steps was lowered) is capped,
    # not an error: the user asked for nothing out of range
    steps = int_in("steps", req.steps if req.steps is not None else min(defaults.steps, max_steps), 1, max_steps)
    guidance = float_in("guidance", req.guidance if req.guidance is not None else defaults.guidance,
                         0.0, limits.max_guidance)
    count = int_in("count", req.count if req.count is not None else min(defaults.count, max_count), 1, max_count)
    scheduler = req.scheduler if req.scheduler is not None else defaults.scheduler
    if scheduler not in SCHEDULERS:
        raise ParamError("scheduler '{name}' is unknown; use one of {offer}", name=scheduler,
                         offer=", ".join(SCHEDULERS))
    # checked now, before the picture is downloaded; engine/media/sources.py makes the job image-to-image with it
    strength = 0.0 if req.strength is None else float_in("strength", req.strength, MIN_STRENGTH, 1.0)
    if req.seed is not None:
        seed = int_in("seed", req.seed, 0, MAX_SEED)
    else:
        seed = (rng or random.SystemRandom()).randint(0, MAX_SEED)
    loras = choose(req.loras, allowed(limits.loras, defaults.loras_allowed), limits.max_loras) if req.loras else ()
    models = allowed(limits.models, defaults.models_allowed)
    default_model = defaults.model if any(e.name == defaults.model for e in models) else ""  # else the first allowed
    model = choose_model(req.model if req.model is not None else default_model, models)
    styled: dict[str, Any] = {}
    if style is not None:
        words, unwanted = style.apply(prompt, negative)
        try:
            words, unwanted = clean_prompt(words), clean_prompt(unwanted, allow_empty=True)
        except ParamError as exc:
            raise ParamError("with the style '{style}', {why}", style=style.name, why=exc.phrase) from None
        styled = {"prompt": words, "negative_prompt": unwanted, "style": style.name, "user_prompt": prompt,
                  "user_negative": negative}
    triggered = with_triggers(styled.get("prompt", prompt), loras, limits.loras)
    if triggered != styled.get("prompt", prompt):  # what the model gets; the typed words stay the user's
        styled.update(prompt=clean_prompt(triggered), user_prompt=prompt)
    return GenerationParams(**{"prompt": prompt, "negative_prompt": negative, "width": size.width,
                               "height": size.height, "steps": steps, "guidance": guidance, "seed": seed,
                               "count": count, "scheduler": scheduler, "fast": fast, "strength": strength,
                               "tile": bool(req.tile), "loras": loras, "model": model, "translate": bool(req.translate),
                               **styled})


def allowed(offered: tuple[Entry, ...], names: tuple[str, ...]) -> tuple[Entry, ...]:
    """The offered models or LoRAs a place allows (``names``; empty: every one)."""
    return tuple(e for e in offered if e.name in names) if names else offered
