"""Speed and memory switches for a loaded pipeline.

``apply_accelerations(model, settings)`` runs once after the model (and the fast-mode LoRA) is
loaded and returns one human line per switch: what was applied, or why it was skipped. Every
switch is an environment variable in ``EngineSettings``; the measured effect of each one is in
benchmarks/README.md ("Switches"). torch.compile, the one switch with moving parts, lives in
engine/gpu/compiling.py.

Switches whose value is ``auto`` (COMPILE, FUSE_QKV, CHANNELS_LAST, FAST_FUSED_UNET) are on with CUDA
and off elsewhere (``resolve_switches``): they are GPU switches that cost 0.6-5 % on a CPU.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.engine_settings import EngineSettings
from engine.gpu import vae as vae_module
from engine.gpu.compiling import CompileManager, Router, first_line, setup_compile
from engine.gpu.fp8 import apply_fp8
from engine.gpu.lora.slot import LoraSlot
from engine.gpu.model import fast_vae_repo, load_fast_vae
from engine.gpu.steps.cache import StepCache, computed_steps

if TYPE_CHECKING:
    from engine.gpu.model import LoadedModel

log = logging.getLogger(__name__)

# --- bookkeeping ----------------------------------------------------------------------------------


@dataclass
class Acceleration:
    """What ``apply_accelerations`` did to a model; kept on ``LoadedModel.accel``."""

    lines: list[str] = field(default_factory=list)
    compiler: CompileManager | None = None
    fast_unet: Any = None
    routers: list[Router] = field(default_factory=list)
    cfg_cutoff: float = 0.0  # CFG_CUTOFF: the share of the steps that keep classifier-free guidance (0: all)
    unet_qkv_fused: bool = False  # FUSE_QKV fused the quality UNet's q/k/v (a LoRA added later would be lost)
    step_cache: StepCache | None = None  # STEP_CACHE: quality batches skip some UNet calls (armed by run_batch)

    def status_lines(self) -> list[str]:
        """The applied switches plus the live compile state, for status views."""
        lines = list(self.lines)
        if self.compiler is not None:
            lines.append(self.compiler.describe())
        return lines

    def gpu_turn(self) -> AbstractContextManager[Any]:
        """Held around each served batch: with COMPILE_MODE=max-autotune the warm-up's kernel timing and serving
        take turns on the GPU (``CompileManager.turns``); otherwise nothing to wait for."""
        turns = self.compiler.turns if self.compiler is not None else None
        return turns if turns is not None else contextlib.nullcontext()

    def close(self) -> None:
        """Stop the compile warm-up (between two shapes; a running compile finishes first)."""
        if self.compiler is not None:
            self.compiler.stop()


def _note(acc: Acceleration, text: str) -> None:
    acc.lines.append(text)
    log.debug("acceleration: %s", text)


@dataclass(frozen=True)
class Resolved:
    """The switches whose setting may be ``auto``, decided for one device."""

    compile: str
    fuse_qkv: bool
    channels_last: bool
    fast_fused_unet: bool


def resolve_switches(settings: EngineSettings, device: str) -> tuple[Resolved, str | None]:
    """Decide the ``auto`` switches for ``device``: the fast configuration on CUDA, nothing elsewhere.

    On CUDA: COMPILE=unet (warmed in the background; jobs run eagerly until it is ready), fused QKV and
    channels_last (the reference compiled recipe), and FAST_FUSED_UNET (fast mode compiled, and no
    disabled LoRA wrappers left in the quality UNet). CPU_OFFLOAD excludes compile and the second UNet.
    Returns the decisions and one line naming the automatic ones (None when nothing was automatic).
    """
    a = settings.accel
    cuda = device.startswith("cuda")
    auto: list[str] = []

    def pick(name: str, value: bool | None, on: bool) -> bool:
        if value is not None:
            return value
        auto.append(f"{name}={'true' if on else 'false'}")
        return on

    compile_mode = a.compile
    if compile_mode == "auto":
        compile_mode = "unet" if cuda and not a.cpu_offload else "off"
        auto.append(f"COMPILE={compile_mode}")
    resolved = Resolved(compile=compile_mode, fuse_qkv=pick("FUSE_QKV", a.fuse_qkv, cuda),
                        channels_last=pick("CHANNELS_LAST", a.channels_last, cuda),
                        fast_fused_unet=pick("FAST_FUSED_UNET", a.fast_fused_unet, cuda and not a.cpu_offload))
    if not auto:
        return resolved, None
    why = "the defaults for CUDA" if cuda else f"GPU switches stay off on {device}"
    return resolved, f"auto ({why}): {', '.join(auto)}"


# --- the simple switches ----------------------------------------------------------------------------


def _ensure_sdpa(model: LoadedModel, backend: str, acc: Acceleration) -> None:
    """Keep diffusers' default SDPA attention: replace any classic (non-SDPA) processor; ATTENTION_BACKEND."""
    import torch
    import torch.nn.functional as F
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    if not hasattr(F, "scaled_dot_product_attention"):
        _note(acc, "SDPA: not available in this torch; attention runs the classic way")
        return
    replaced = 0
    kinds: dict[str, int] = {}
    for module in (model.pipe.unet, model.pipe.vae):
        procs = module.attn_processors
        if any(type(p) is AttnProcessor for p in procs.values()):
            fixed = {k: (AttnProcessor2_0() if type(p) is AttnProcessor else p) for k, p in procs.items()}
            replaced += sum(1 for p in procs.values() if type(p) is AttnProcessor)
            module.set_attn_processor(fixed)
        for p in module.attn_processors.values():
            kinds[type(p).__name__] = kinds.get(type(p).__name__, 0) + 1
    backends = ""
    if model.choice.device.startswith("cuda"):
        # something (a library, an old snippet) may have switched the fast kernels off
        torch.backends.cuda.enable_flash_sdp(True)
        torch.backends.cuda.enable_mem_efficient_sdp(True)
        backends = "; flash and memory-efficient kernels enabled"
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    _note(acc, f"SDPA: on ({summary}{f'; {replaced} classic processor(s) replaced' if replaced else ''}{backends})")
    line = _sdpa_backend(backend)
    if line:
        _note(acc, line)


# ATTENTION_BACKEND: torch's SDPBackend member of each choice
_SDPA_KERNELS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION",
                 "math": "MATH"}
_torch_sdpa_order: list[int] = []  # torch's own priority order, read before ATTENTION_BACKEND first changes it


def _sdpa_backend(choice: str) -> str:
    """Put ATTENTION_BACKEND's kernel first in torch's SDPA priority order, or torch's own order back for ``auto``
    (process-wide, as the setting is; compiled graphs bake in the kernel chosen when they are traced, after this,
    and compile_config keys its caches on the choice). Every kernel stays enabled, so a call the chosen one cannot
    run (a float32 VAE for flash or cuDNN, a head size) runs torch's next choice; ``math``, the reference kernel for
    checking the others, turns the fused ones off. The line for the status ("" for auto)."""
    import torch
    from torch.nn.attention import SDPBackend

    if not _torch_sdpa_order:
        _torch_sdpa_order.extend(torch._C._get_sdp_priority_order())
    first = int(getattr(SDPBackend, _SDPA_KERNELS.get(choice, "FLASH_ATTENTION")))
    order = _torch_sdpa_order if choice == "auto" else [first, *(b for b in _torch_sdpa_order if b != first)]
    torch._C._set_sdp_priority_order(order)
    fused = choice != "math"
    torch.backends.cuda.enable_flash_sdp(fused)
    torch.backends.cuda.enable_mem_efficient_sdp(fused)
    torch.backends.cuda.enable_cudnn_sdp(fused)  # off in torch's own order (it comes after math), so set it on
    if choice == "auto":
        return ""
    if choice == "math":
        return "ATTENTION_BACKEND=math: only the reference math kernel (slow; for checking the fused kernels)"
    return (f"ATTENTION_BACKEND={choice}: SDPA tries the {choice} kernel first; calls it cannot run (dtype, head "
            f"size, device) take torch's next choice")


def _vae_precision(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    vae = model.pipe.vae
    dtype = model.choice.dtype_name
    if settings.accel.fp16_vae and vae.config.force_upcast and not model.vae_from_id:
        # the model's own VAE says it overflows in fp16 (the stock SDXL one: NaN, black images); a VAE_ID that failed
        # to load leaves it in place, so the switch is refused rather than trusted
        why = "VAE_ID failed to load (see above)" if settings.vae_id else "VAE_ID is not set"
        _note(acc, f"FP16_VAE: refused: the VAE in use is the model's own ({why}) and its config says it overflows "
                   f"in float16 (black images); set VAE_ID=madebyollin/sdxl-vae-fp16-fix instead")
    if settings.accel.fp16_vae and vae.config.force_upcast and model.vae_from_id:
        # the pipeline reads vae.config.force_upcast before each decode
        vae.register_to_config(force_upcast=False)
        extra = "" if dtype == "float16" else f" (no effect at DTYPE {dtype}: only fp16 decodes upcast)"
        _note(acc, f"FP16_VAE: force_upcast off, the VAE_ID VAE decodes in {dtype}{extra}")
    elif vae_module.needs_upcast(vae):
        # a private copy: diffusers' in-place upcast would change the VAE under the compile warm-up's feet
        copy_ = vae_module.upcast_vae(model)
        size = sum(p.numel() * p.element_size() for p in copy_.parameters()) / 2**30
        _note(acc, f"VAE: decodes in a private fp32 copy (stock force_upcast; +{size:.2f} GiB); "
                   "VAE_ID=madebyollin/sdxl-vae-fp16-fix, FP16_VAE=true or DTYPE=bfloat16 avoid it")
    else:
        source = f"VAE_ID={settings.vae_id}" if settings.vae_id else f"DTYPE {dtype}"
        _note(acc, f"VAE: decodes in {vae.dtype} without upcast ({source})".replace("torch.", ""))


def _build_fast_unet(model: LoadedModel, on: bool, acc: Acceleration) -> None:
    """A second UNet with the LCM-LoRA merged into its weights, used for fast batches.

    The quality UNet then needs no LoRA at all: its wrappers are unloaded (each disabled wrapper
    still costs a check per layer, about 3 % per forward at batch 1, and fused QKV skips them).
    """
    if not on:
        return
    if model.fast_adapter is None:
        _note(acc, "FAST_FUSED_UNET: skipped, no fast-mode LoRA is loaded")
        return
    unet = model.pipe.unet
    fast = copy.deepcopy(unet)
    fast.fuse_lora(adapter_names=[model.fast_adapter])
    fast.unload_lora()  # plain layers with merged weights: no per-layer LoRA matmuls
    fast.requires_grad_(False)
    acc.fast_unet = fast
    if model.loras:  # members' LoRAs stay on the quality UNet, and fast batches with them need the LCM-LoRA there
        model.pipe.disable_lora()
    else:
        model.pipe.unload_lora_weights()  # the quality UNet: plain layers again
    model.lora_on, model.adapters_on = False, ()
    model.fast_pipe = type(model.pipe)(**dict(model.pipe.components, unet=fast))
    model.fast_pipe.set_progress_bar_config(disable=True)
    size = sum(p.numel() * p.element_size() for p in fast.parameters()) / 2**30
    kept = ("it stays on the quality UNet for fast batches with LoRAs" if model.loras else
            "the LoRA is unloaded from the quality UNet")
    _note(acc, f"FAST_FUSED_UNET: fast mode runs a copy of the UNet with the LCM-LoRA merged (+{size:.2f} GiB); "
               f"{kept}")


def _fuse_qkv(model: LoadedModel, on: bool, acc: Acceleration) -> None:
    if not on:
        return
    done = []
    if model.loras:  # FusedAttnProcessor2_0 calls to_qkv, so a LoRA on to_q/to_k/to_v would be silently lost
        _note(acc, "FUSE_QKV: UNet skipped, the LoRAs of LORAS sit on to_q/to_k/to_v")
    elif model.fast_adapter is not None and acc.fast_unet is None:
        _note(acc, "FUSE_QKV: UNet skipped, the fast-mode LoRA sits on to_q/to_k/to_v; set FAST_FUSED_UNET=true "
                   "to fuse it as well")
    else:
        model.pipe.unet.fuse_qkv_projections()
        acc.unet_qkv_fused = True
        done.append("UNet")
    if acc.fast_unet is not None:
        acc.fast_unet.fuse_qkv_projections()
        done.append("fast UNet")
    for vae in {id(v): v for v in (model.pipe.vae, model.upcast_vae) if v is not None}.values():
        vae.fuse_qkv_projections()
    done.append("VAE")
    _note(acc, f"FUSE_QKV: fused q/k/v projections in {', '.join(done)} (FusedAttnProcessor2_0)")


def _channels_last(model: LoadedModel, on: bool, acc: Acceleration) -> None:
    import torch

    if not on:
        return
    extra = [m for m in (acc.fast_unet, model.upcast_vae) if m is not None]
    modules = [model.pipe.unet, model.pipe.vae, *extra]
    for module in modules:
        module.to(memory_format=torch.channels_last)
    _note(acc, "CHANNELS_LAST: UNet and VAE convolution weights in channels_last")


def _vae_memory(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    vae = model.pipe.vae
    if settings.accel.vae_tiling:
        vae.enable_tiling()
        _note(acc, "VAE_TILING: on (decodes images larger than the VAE's sample size tile by tile)")
    if settings.accel.vae_slicing:
        vae.enable_slicing()
        _note(acc, "VAE_SLICING: on (decodes a batch one image at a time)")


def _cpu_offload(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    if not settings.accel.cpu_offload:
        return
    device = model.choice.device
    if not device.startswith("cuda"):
        _note(acc, f"CPU_OFFLOAD: skipped, the model already runs on {device}")
        return
    model.pipe.enable_model_cpu_offload(device=device)
    _note(acc, "CPU_OFFLOAD: on (each component moves to the GPU only while it runs)")


def _fast_vae(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    repo = fast_vae_repo(settings.accel.fast_vae_id, model.choice.device.startswith("cuda"))
    if not repo:
        return
    if model.fast_adapter is None:
        _note(acc, "FAST_VAE_ID: skipped, fast mode is off (no fast-mode LoRA is loaded)")
        return
    _note(acc, load_fast_vae(model, repo))


def _compile(model: LoadedModel, settings: EngineSettings, acc: Acceleration, start: bool, mode: str) -> None:
    rank = settings.accel.lora_slot_rank
    if rank and (model.loras or model.fast_adapter is not None):  # before the routers: they key on the adapters
        model.lora_slot = LoraSlot.build(model.pipe.unet, rank)
        if model.lora_slot is not None:
            _note(acc, f"LORA_SLOT_RANK={rank}: LoRA batches of 1-2 images at compiled sizes run compiled through one "
                       f"slot adapter, filled per batch (other shapes, and a set with more rank in a layer, eagerly)")
    acc.compiler, notes = setup_compile(model, settings, acc.routers, acc.fast_unet, start, mode)
    for note in notes:
        _note(acc, note)


def _step_cache(model: LoadedModel, every: int, acc: Acceleration) -> None:
    acc.step_cache = StepCache(model.pipe.unet, every)
    runs = sum(computed_steps(25, every))
    _note(acc, f"STEP_CACHE={every}: quality batches run the UNet on one step in {every} between the first fifth and "
               f"the last tenth of the steps, reusing its last prediction between (25 steps: {runs} UNet calls): "
               f"faster, and it changes the image")


def apply_accelerations(model: LoadedModel, settings: EngineSettings, *, start_warmup: bool = True) -> list[str]:
    """Apply every acceleration switch of ``settings`` to ``model``; return one line per switch.

    Call it once, after ``load_model`` and ``load_fast_lora``. Switches that cannot work here
    (CUDA-only ones on a CPU, for instance) are skipped with the reason in their line.
    ``start_warmup=False`` prepares the compile routers without starting the background
    warm-up (``model.accel.compiler.start()`` starts it).
    """
    if model.accel is not None:
        raise RuntimeError("apply_accelerations was already applied to this model")
    acc = Acceleration()
    model.accel = acc
    _note(acc, f"DTYPE: {model.choice.dtype_name} on {model.choice.device}")
    for line in model.notes:  # what loading fell back on (VAE_ID that could not be loaded...)
        _note(acc, line)
    on, auto = resolve_switches(settings, model.choice.device)
    if auto:
        _note(acc, auto)
    if settings.accel.cuda_graphs and on.compile == "off":
        _note(acc, "CUDA_GRAPHS: skipped, COMPILE is off")
    if settings.accel.cfg_cutoff > 0:
        acc.cfg_cutoff = settings.accel.cfg_cutoff
        _note(acc, f"CFG_CUTOFF: guidance stops after {acc.cfg_cutoff:.0%} of the steps (the UNet then runs half the "
                   f"batch): faster, and it changes the image")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("SDPA", lambda: _ensure_sdpa(model, settings.accel.attention_backend, acc)),
        ("VAE", lambda: _vae_precision(model, settings, acc)),
        # before QKV fusion: the copy merges the LoRA into to_q/to_k/to_v first
        ("FAST_FUSED_UNET", lambda: _build_fast_unet(model, on.fast_fused_unet, acc)),
        ("FAST_VAE_ID", lambda: _fast_vae(model, settings, acc)),
        ("FUSE_QKV", lambda: _fuse_qkv(model, on.fuse_qkv, acc)),
        ("CHANNELS_LAST", lambda: _channels_last(model, on.channels_last, acc)),
        ("FP8_LINEAR", lambda: apply_fp8(model, settings.accel.fp8_linear, acc.fast_unet, acc.lines)),
        ("VAE_TILING/VAE_SLICING", lambda: _vae_memory(model, settings, acc)),
        ("CPU_OFFLOAD", lambda: _cpu_offload(model, settings, acc)),
    ]
    if on.compile != "off":
        steps.append(("COMPILE", lambda: _compile(model, settings, acc, start_warmup, on.compile)))
    if settings.accel.step_cache > 1:  # after COMPILE: it wraps the router
        steps.append(("STEP_CACHE", lambda: _step_cache(model, settings.accel.step_cache, acc)))
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # a speed switch must not take the service down; say what failed
            log.exception("acceleration %s failed", name)
            _note(acc, f"{name}: failed and left off ({type(exc).__name__}: {first_line(exc)})")
    model.lora_fixed = _lora_fixed(model, acc)
    return acc.status_lines()


def _lora_fixed(model: LoadedModel, acc: Acceleration) -> str:
    """The switches (as applied, not as asked) after which a LoRA loaded later would be lost (merged or fused
    layers, float8 ones) or would change what compiled graphs guard on; "" when none did."""
    fp8 = any(line.startswith("FP8_LINEAR: float8") for line in acc.lines)  # applied, not skipped or failed
    fixed = {"FAST_FUSED_UNET": acc.fast_unet is not None and not model.loras, "FUSE_QKV": acc.unet_qkv_fused,
             "FP8_LINEAR": fp8, "COMPILE": acc.compiler is not None}
    return ", ".join(name for name, on_ in fixed.items() if on_)


def padded_batch_size(model: LoadedModel, images: int, *, width: int, height: int, guidance: float,
                      fast: bool, lora: bool = False) -> int:
    """The batch size a call of ``images`` images should run at: the nearest warmed compiled size, else its own.

    The worker asks before each pipeline call and passes the answer to ``run_batch``; each image has
    its own generator, so the real images are the same as without padding. ``lora``: the batch runs the LoRA slot.
    """
    acc = model.accel
    if not isinstance(acc, Acceleration) or acc.compiler is None or images < 1:
        return images
    cfg = guidance > 1  # diffusers: CFG whenever guidance > 1 (the plain UNet has no time_cond_proj_dim)
    return acc.compiler.pad_target(images, width=width, height=height, cfg=cfg, fast=fast, lora=lora)
