"""Running one batched SDXL call on a loaded model: text-to-image or image-to-image, with previews.

The caller decides the batch size (engine/gpu/acceleration.py says which sizes are compiled); this
module only pads to it and drops the extra images.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.gpu.lora.switch import set_adapters
from engine.gpu.model import LoadedModel, scheduler_for
from engine.gpu.steps.cache import armed
from engine.requests.loras import Chosen

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

# Linear latent -> RGB approximation for the SDXL VAE's 4 latent channels: a preview costs one
# small matmul on latents instead of a VAE decode.
_SDXL_LATENT_RGB = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
_SDXL_LATENT_BIAS = [0.1084, -0.0175, -0.0011]


class GenerationInterrupted(RuntimeError):
    """Every job of a running batch was cancelled, so the pipeline call stopped early."""


@dataclass(frozen=True)
class ImageSpec:
    """One image of a batch: its text and seed."""

    prompt: str
    negative_prompt: str
    seed: int


def latents_preview(latents: torch.Tensor, max_side: int = 256) -> list[bytes]:
    """Cheap JPEG previews of SDXL latents (one per image) via a linear latent->RGB map."""
    import torch
    from PIL import Image

    with torch.no_grad():
        lat = latents.detach().float()
        factors = torch.tensor(_SDXL_LATENT_RGB, device=lat.device)
        bias = torch.tensor(_SDXL_LATENT_BIAS, device=lat.device)
        rgb = torch.einsum("bchw,cr->bhwr", lat, factors) + bias
        rgb = ((rgb + 1) / 2).clamp(0, 1).mul(255).byte().cpu().numpy()
    out = []
    for arr in rgb:
        img = Image.fromarray(arr)
        img.thumbnail((max_side, max_side))
        if img.width < 128:  # tiny latents: upscale so Discord shows more than a dot
            scale = 128 // max(1, img.width)
            img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=70)
        out.append(buf.getvalue())
    return out


def run_batch(
    model: LoadedModel,
    specs: Sequence[ImageSpec],
    *,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    scheduler: str,
    fast: bool = False,
    on_step: Callable[[int, int, torch.Tensor | None], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    want_latents: Callable[[int], bool] | None = None,
    init_images: Sequence[Image.Image] | None = None,
    strength: float = 1.0,
    batch_size: int | None = None,
    masks: Sequence[Image.Image] | None = None,
    tile: bool = False,
    loras: Chosen = (),
) -> list[Image.Image]:
    """Run one pipeline call for ``specs`` (one image each, each with its own generator).

    A seed gives the same image alone or in a batch: the generators are per image and on the
    CPU, so the starting noise does not depend on the batch or the device.
    ``on_step(step, total, latents_or_None)`` runs after each denoising step; latents are passed
    only when ``want_latents(step)`` says so, because copying them forces a GPU sync.
    ``should_stop()`` returning True interrupts the call and raises GenerationInterrupted.
    With ``init_images`` (one per spec, ``width`` x ``height``) it runs image-to-image instead:
    each image is re-noised ``strength`` of the way and denoised for ``int(steps * strength)`` steps;
    images that share one source object share one VAE encode. With ``masks`` too (one L image per spec, 255 where
    to paint) it runs inpainting: outside each mask the latents are kept at the source's (engine/media/canvas.py).
    ``batch_size`` (at least ``len(specs)``) pads the call with throw-away copies of the last image,
    so it runs at a shape that was compiled; only the first ``len(specs)`` images are returned.
    The VAE work (encode, decode) is engine/gpu/vae.py's, which never changes the shared VAE's dtype.
    ``tile`` makes seamless tiles (``circular_padding``); ``loras`` are the batch's LoRAs (``set_adapters``).
    """
    import torch

    from engine.gpu import vae

    accel = model.accel  # COMPILE_MODE=max-autotune: not beside the warm-up's kernel timing (gpu_turn)
    with accel.gpu_turn() if accel is not None else contextlib.nullcontext(), circular_padding(model, tile):
        # 1. pick the pipeline (fused fast UNet or not), its sampler and the fast-mode adapter's state
        view = None if init_images is None else "inpaint" if masks is not None else "img2img"
        pipe = _pipeline(model, fast, view, loras)
        pipe.scheduler = scheduler_for(model, "lcm" if fast else scheduler)
        # 2. one CPU generator per image so seeds reproduce across batch sizes and devices
        # padded to a compiled batch size when asked; the extra images are dropped below
        wanted = len(specs)
        if batch_size is not None and batch_size > wanted:
            specs = list(specs) + [specs[-1]] * (batch_size - wanted)
        # the UNet's batch: twice the images with CFG (diffusers: guidance > 1 without a guidance embedding)
        set_adapters(model, fast, loras, (width, height, len(specs) * (2 if guidance > 1 else 1)))
        generators = [torch.Generator("cpu").manual_seed(int(s.seed)) for s in specs]
        total = steps if init_images is None else min(steps, int(steps * strength))  # diffusers' own arithmetic
        stopped = False
        # CFG_CUTOFF: from this step on, no guidance (the conditional half of each guided input); None: all steps
        cutoff = accel.cfg_cutoff if accel is not None else 0.0
        last_guided = max(1, int(total * cutoff)) if cutoff > 0 and guidance > 1 and not fast else None
        guided = _GUIDED_INPUTS + (("mask",) if masks is not None else ())  # inpainting doubles its mask too

        def callback(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            nonlocal stopped
            step = i + 1
            if on_step is not None:
                latents = kwargs.get("latents") if want_latents is not None and want_latents(step) else None
                on_step(step, total, latents)
            if should_stop is not None and should_stop():
                stopped = True
                p._interrupt = True
            # diffusers' documented dynamic-CFG recipe, where the pipeline really guides (not with an LCM UNet)
            if last_guided is not None and step == last_guided and p.do_classifier_free_guidance:
                for name in guided:
                    kwargs[name] = kwargs[name].chunk(2)[-1]
                p._guidance_scale = 0.0  # read by do_classifier_free_guidance; set again by the next call
            return kwargs

        inputs: dict[str, Any] = {"width": width, "height": height}
        if init_images is not None:
            if len(init_images) != wanted:
                raise ValueError(f"{len(init_images)} init images for {wanted} images")
            padded = [img.convert("RGB") if img.mode != "RGB" else img for img in init_images]
            padded += [padded[-1]] * (len(specs) - wanted)
            # encoded here, once per source; the latents set the size (img2img has no width/height)
            latents = vae.encode_sources(model, padded, generators, pipe.unet.dtype)
            inputs = {"image": latents, "strength": strength}
            if masks is not None:  # the inpainting pipeline sizes its masks by width and height
                inputs.update(mask_image=list(masks) + [masks[-1]] * (len(specs) - wanted), width=width, height=height)
        # STEP_CACHE: not in fast mode, whose few LCM steps each predict the image anew
        with torch.inference_mode(), armed(accel.step_cache if accel is not None else None, total, on=not fast):
            out = pipe(
                prompt=[s.prompt for s in specs],
                negative_prompt=[s.negative_prompt for s in specs],
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators,
                callback_on_step_end=callback,
                callback_on_step_end_tensor_inputs=["latents", *(guided if last_guided is not None else ())],
                output_type="latent",
                **inputs,
            )
        if stopped:
            raise GenerationInterrupted("cancelled")
        latents = out.images[:wanted]  # the padding images are not decoded
        images = vae.to_pil(model, vae.decode(model, latents, fast=fast))
        pipe.maybe_free_model_hooks()  # CPU_OFFLOAD: the VAE goes back to the CPU like the rest
        return images


# the guided pipeline's doubled inputs: unconditional half first, conditional second
_GUIDED_INPUTS = ("prompt_embeds", "add_text_embeds", "add_time_ids")


@contextlib.contextmanager
def circular_padding(model: LoadedModel, on: bool) -> Iterator[None]:
    """--tile: while ``on``, every convolution of the UNets and autoencoders pads circularly, so the image wraps
    around (its right edge continues its left, its bottom its top) and repeats without a seam.

    The modules are shared with the compile warm-up, which waits while ``model.tiling`` is set and does not count a
    call the switch overlapped (``model.mode_changes``), as for the fast-mode LoRA; the compiled graphs were traced
    with zero padding, so the routers run tiled calls eagerly (engine/gpu/routing.py).
    """
    if not on:
        yield
        return
    import torch

    from engine.gpu import vae

    if vae.needs_upcast(model.pipe.vae):
        vae.upcast_vae(model)  # made now: a copy made during the call would keep the circular padding for good
    roots = (model.pipe.unet, model.pipe.vae, model.upcast_vae, model.fast_vae,
             model.fast_pipe.unet if model.fast_pipe is not None else None)
    convs = {id(m): m for root in roots if root is not None for m in root.modules() if isinstance(m, torch.nn.Conv2d)}
    saved = [(conv, conv.padding_mode) for conv in convs.values()]
    model.tiling = True
    model.mode_changes += 1
    for conv, _mode in saved:
        conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in saved:
            conv.padding_mode = mode
        model.tiling = False
        model.mode_changes += 1  # a warm-up call that saw both switches within it is not counted either


def _pipeline(model: LoadedModel, fast: bool, view: str | None, loras: Chosen = ()) -> Any:
    """The pipeline for a batch (``view``: None, ``img2img`` or ``inpaint``): fast batches use the fused fast UNet's
    pipeline when there is one, unless they have LoRAs (those sit on ``pipe``'s UNet, beside the LCM-LoRA)."""
    base = model.fast_pipe if fast and model.fast_pipe is not None and not loras else model.pipe
    if view is None:
        return base
    return pipeline_view(model, view, fast=base is not model.pipe)


def pipeline_view(model: LoadedModel, view: str, *, fast: bool = False) -> Any:
    """The image-to-image (``view`` ``img2img``) or inpainting (``inpaint``) pipeline over the same modules as
    ``model.pipe`` (made once, no extra memory).

    It shares the UNet, VAE, text encoders and the fast-mode LoRA, so the accelerations applied to
    them (fused QKV, compile routers, channels_last) apply to variations and canvas edits too. ``fast``
    gives the view of ``model.fast_pipe`` (FAST_FUSED_UNET).
    """
    attr = f"fast_{view}" if fast else view
    if getattr(model, attr) is None:
        from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline

        kind = StableDiffusionXLInpaintPipeline if view == "inpaint" else StableDiffusionXLImg2ImgPipeline
        # from_pipe casts every shared module to float32 unless told the dtype, which would slow every
        # later job and break half-precision compiled shapes
        made = kind.from_pipe(model.fast_pipe if fast else model.pipe, dtype=model.choice.dtype)
        made.set_progress_bar_config(disable=True)
        setattr(model, attr, made)
    return getattr(model, attr)
