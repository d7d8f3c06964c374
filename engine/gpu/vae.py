"""VAE encode and decode for the engine, without ever changing the shared VAE's dtype.

diffusers upcasts a ``force_upcast`` VAE (the stock SDXL one) to float32 *in place* around each
decode (fp16 only) and each image-to-image encode (any dtype), then casts it back. The compile
warm-up thread uses the same VAE, so an in-place flip on one thread broke the other's calls and
could leave the VAE in fp32 for good. Here the pipeline only produces latents
(``output_type="latent"``), and this module decodes them, and encodes variation sources:

* with the shared VAE as it is, in the serving dtype, whenever it is safe: bfloat16 has float32's
  range, so only float16 with ``force_upcast`` needs float32;
* otherwise with a private float32 copy made once (``upcast_vae``), which nobody else touches;
* fast-mode batches with the tiny autoencoder (``FAST_VAE_ID``) when one is loaded.

Each variation source is encoded once, however many images are made from it; each image then
draws its own latent sample with its own generator, as diffusers does, so seeds reproduce.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from engine.gpu.model import LoadedModel

_upcast_lock = threading.Lock()


def needs_upcast(vae: Any) -> bool:
    """True when ``vae`` must run in float32: float16 weights and a config that says it overflows."""
    import torch

    return vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


def upcast_vae(model: LoadedModel) -> Any:
    """The private float32 copy of the model's VAE (made on first use; the shared one is never cast)."""
    import torch

    if model.upcast_vae is None:
        with _upcast_lock:
            if model.upcast_vae is None:
                vae = copy.deepcopy(model.pipe.vae).to(torch.float32)
                vae.requires_grad_(False)
                model.upcast_vae = vae
    return model.upcast_vae


def decoding_vae(model: LoadedModel, fast: bool = False) -> Any:
    """The autoencoder that decodes a batch: the tiny one for fast mode, the fp32 copy, or the shared VAE."""
    if fast and model.fast_vae is not None:
        return model.fast_vae
    vae = model.pipe.vae
    return upcast_vae(model) if needs_upcast(vae) else vae


def decode(model: LoadedModel, latents: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
    """Pipeline latents -> images in [-1, 1] (what diffusers' own decode step returns)."""
    import torch

    vae = decoding_vae(model, fast)
    config = vae.config
    latents = latents.to(dtype=vae.dtype)
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    with torch.inference_mode():
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        return vae.decode(latents, return_dict=False)[0]


def to_pil(model: LoadedModel, images: torch.Tensor) -> list[Image.Image]:
    """Decoded images -> PIL, through the pipeline's own watermark and post-processing."""
    pipe = model.pipe
    if getattr(pipe, "watermark", None) is not None:
        images = pipe.watermark.apply_watermark(images)
    return list(pipe.image_processor.postprocess(images, output_type="pil"))


def encode_sources(model: LoadedModel, sources: Sequence[Image.Image], generators: Sequence[torch.Generator],
                   dtype: torch.dtype) -> torch.Tensor:
    """Initial latents for image-to-image: one per image, from ``sources[i]`` with ``generators[i]``.

    Sources that are the same object are encoded once (one VAE call for all distinct sources);
    each image then samples the encoder's distribution with its own generator, consuming it as
    diffusers' ``prepare_latents`` would, so a seed gives the same image as before.
    """
    import torch
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    shared = model.pipe.vae
    # bfloat16 cannot overflow, so only float16 + force_upcast needs the fp32 copy (diffusers upcasts always)
    vae = upcast_vae(model) if needs_upcast(shared) else shared
    device = model.pipe._execution_device
    index: dict[int, int] = {}
    distinct: list[Image.Image] = []
    for image in sources:
        if id(image) not in index:
            index[id(image)] = len(distinct)
            distinct.append(image)
    pixels = torch.cat([model.pipe.image_processor.preprocess(image) for image in distinct])
    with torch.inference_mode():
        moments = vae.encode(pixels.to(device=device, dtype=vae.dtype)).latent_dist.parameters
        latents = torch.cat([
            DiagonalGaussianDistribution(moments[index[id(image)]:index[id(image)] + 1]).sample(generator=generator)
            for image, generator in zip(sources, generators)
        ]).to(dtype)
        config = vae.config
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, dtype)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, dtype)
            latents = (latents - mean) * config.scaling_factor / std
        else:
            latents = config.scaling_factor * latents
        # a channels_last VAE (CHANNELS_LAST) encodes into channels_last latents; the UNet's compiled graphs were
        # traced on contiguous ones, and a stride guard miss sends every image-to-image call to eager
        return latents.contiguous()
