"""Speed and memory switches for a loaded pipeline (the GPU path of issue 5).

``apply_accelerations(model, settings)`` runs once after the model (and the fast-mode LoRA) is
loaded and returns one human line per switch: what was applied, or why it was skipped. Every
switch is an environment variable in ``EngineSettings``; the measured effect of each one is in
benchmarks/README.md ("Switches").

torch.compile is the one switch with moving parts:

* The UNet (and with ``COMPILE=unet+vae`` the VAE decoder) gets a *router* installed as the
  module's ``_compiled_call_impl`` (the hook ``nn.Module.compile()`` itself uses), so the
  pipeline object and its components stay the same objects and LoRA toggling, status views and
  the worker keep working unchanged.
* A background thread compiles with ``dynamic=False`` for a fixed set of shapes: each batch size
  of ``COMPILE_BATCH_SIZES`` at each size of ``COMPILE_SIZES`` (default: DEFAULT_SIZE). It drives
  a private shallow copy of the pipeline with precomputed (zero) prompt embeddings, so it never
  shares a scheduler or a tokenizer with the worker. Meanwhile the worker keeps serving with the
  eager modules; the router sends its calls to the compiled code only once the warm-up is
  complete and only for shapes that were warmed.
* After the warm-up the dynamo stance is set to ``eager_on_recompile``: an unexpected guard miss
  runs eagerly instead of stalling a user's job for minutes of recompilation.
* ``run_batch`` pads a batch up to the nearest warmed batch size with throw-away images
  (``pad_batch``), so 3 queued images run as a compiled batch of 4 instead of a fourth compile.
* Inductor's FX-graph and autotune caches live under ``DATA_DIR/compile-cache`` (or
  ``COMPILE_CACHE_DIR``), so a restart reuses the generated kernels instead of paying the
  minutes again (dynamo still re-traces, which takes seconds).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.heap import freeze_long_lived
from engine.settings import EngineSettings

if TYPE_CHECKING:
    from engine.pipeline import ImageSpec, LoadedModel

log = logging.getLogger(__name__)

COMPILE_CACHE_SUBDIR = "compile-cache"
# the CLIP text encoders always produce 77 positions in the SDXL pipeline
_TOKENS = 77
# steps per warm-up call: shapes, not step counts, decide what is compiled
_WARMUP_STEPS = 2
# dynamo keeps one cache entry per (module, shape); the default limit of 8 is too small for
# UNet + fast UNet + VAE decoder x batch sizes x image sizes
_RECOMPILE_LIMIT = 256
# the operator's own inductor cache directory, read before torch can set a default into the
# environment (torch._inductor's cache_dir() writes its default back to os.environ)
_OPERATOR_CACHE_DIR = os.environ.get("TORCHINDUCTOR_CACHE_DIR")


# --- bookkeeping ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmProfile:
    """One shape family the warm-up compiles: image size, batch size, CFG on/off, fast mode."""

    width: int
    height: int
    batch: int
    cfg: bool
    fast: bool


@dataclass
class Acceleration:
    """What ``apply_accelerations`` did to a model; kept on ``LoadedModel.accel``."""

    lines: list[str] = field(default_factory=list)
    compiler: CompileManager | None = None
    fast_unet: Any = None
    routers: list[_Router] = field(default_factory=list)

    def status_lines(self) -> list[str]:
        """The applied switches plus the live compile state, for status views."""
        lines = list(self.lines)
        if self.compiler is not None:
            lines.append(self.compiler.describe())
        return lines

    def close(self) -> None:
        """Stop the compile warm-up (between two shapes; a running compile finishes first)."""
        if self.compiler is not None:
            self.compiler.stop()


def _note(acc: Acceleration, text: str) -> None:
    acc.lines.append(text)
    log.debug("acceleration: %s", text)


# --- routing calls between eager, compiled and the fast UNet ---------------------------------------


def _first_tuner_layer(module: Any) -> Any:
    """The first PEFT LoRA layer inside ``module`` (None without LoRA)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # peft is a dependency, but routing must not need it
        return None
    for sub in module.modules():
        if isinstance(sub, BaseTunerLayer):
            return sub
    return None


def _value_key(value: Any) -> Hashable:
    import torch

    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), str(value.dtype), value.device.type, value.is_inference())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return tuple(sorted((k, _value_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_value_key(v) for v in value)
    return type(value).__name__


def call_key(args: Sequence[Any], kwargs: dict[str, Any]) -> Hashable:
    """What a compiled graph was specialised on: shapes, dtypes and scalar arguments of one call."""
    return (tuple(_value_key(a) for a in args), tuple(sorted((k, _value_key(v)) for k, v in kwargs.items())))


class _Router:
    """Installed as ``module._compiled_call_impl``: decides per call which code runs.

    * The base UNet with its LCM-LoRA switched on goes to the fused fast UNet when there is one
      (``FAST_FUSED_UNET``), so fast mode pays no LoRA overhead and fused QKV stays correct.
    * The warm-up thread always runs the compiled function (that is what compiles it) and
      records the call keys it saw.
    * The worker runs the compiled function only when the warm-up is over and the call's key
      was warmed; everything else runs the eager ``_call_impl``.
    """

    def __init__(self, module: Any, name: str) -> None:
        self.module = module
        self.name = name
        self.compiled: Callable[..., Any] | None = None
        self.keys: set[Hashable] = set()
        self.ready = False
        self.mark_step = False  # CUDA graphs: tell cudagraph trees a new step begins
        self.fast_target: Any = None
        # the LCM-LoRA's on/off state is part of what a compiled graph was specialised on
        self._lora_layer: Any = _first_tuner_layer(module)
        self.local = threading.local()
        self.calls = {"compiled": 0, "eager": 0, "fast": 0}

    def install(self) -> None:
        """Take over the module's calls."""
        self.module._compiled_call_impl = self

    def route_fast_to(self, target: Any) -> None:
        """Send calls made while the module's LoRA is active to ``target`` instead."""
        self.fast_target = target

    def _lora_active(self) -> bool:
        layer = self._lora_layer
        return layer is not None and not layer.disable_adapters and bool(layer.active_adapters)

    @property
    def warming(self) -> bool:
        """True on the warm-up thread while it drives a compile."""
        return bool(getattr(self.local, "warming", False))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fast_target is not None and self._lora_active():
            self.calls["fast"] += 1
            return self.fast_target(*args, **kwargs)
        compiled = self.compiled
        if compiled is not None:
            if self.warming:
                key = (self._lora_active(), call_key(args, kwargs))
                self._mark_step()
                out = compiled(*args, **kwargs)
                if key[0] == self._lora_active():  # the worker did not toggle the LoRA meanwhile
                    self.keys.add(key)
                return out
            if self.ready and (self._lora_active(), call_key(args, kwargs)) in self.keys:
                self.calls["compiled"] += 1
                self._mark_step()
                return compiled(*args, **kwargs)
        self.calls["eager"] += 1
        return self.module._call_impl(*args, **kwargs)

    def _mark_step(self) -> None:
        # CUDA graph trees reuse output buffers; each UNet/VAE call starts a new "step", and the
        # pipeline never keeps a raw output past the next call (schedulers derive new tensors)
        if self.mark_step:
            import torch

            torch.compiler.cudagraph_mark_step_begin()


def _router_for(acc: Acceleration, module: Any, name: str) -> _Router:
    for router in acc.routers:
        if router.module is module:
            return router
    router = _Router(module, name)
    router.install()
    acc.routers.append(router)
    return router


# --- torch.compile warm-up --------------------------------------------------------------------------


class CompileManager:
    """Compiles the routed modules on a background thread and tracks which shapes are warm."""

    def __init__(self, model: LoadedModel, settings: EngineSettings, routers: list[_Router],
                 profiles: list[WarmProfile], compile_kwargs: dict[str, Any], cache_dir: Path | None) -> None:
        self.model = model
        self.settings = settings
        self.routers = routers
        self.profiles = profiles
        self.compile_kwargs = compile_kwargs
        self.cache_dir = cache_dir
        self.state = "pending"  # pending | warming | ready | failed | stopped
        self.error: str | None = None
        self.warmed: set[WarmProfile] = set()
        self.seconds: dict[str, float] = {}
        self.cache_hits = 0
        self.cache_misses = 0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    # public ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the warm-up thread (the worker keeps serving eagerly meanwhile)."""
        self.state = "warming"
        self.started_at = time.perf_counter()
        self._thread = threading.Thread(target=self._main, name="compile-warmup", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the warm-up to end; True when compiled code is in use."""
        self._done.wait(timeout)
        return self.state == "ready"

    def stop(self) -> None:
        """Ask the warm-up to stop after the shape it is compiling."""
        self._stop.set()

    def describe(self) -> str:
        """One line for status views."""
        total = len(self.profiles)
        if self.state == "ready":
            took = sum(self.seconds.values())
            return (f"compile: ready, {len(self.warmed)}/{total} shape(s) warm in {took:.0f}s "
                    f"(inductor cache {self.cache_hits} hit(s), {self.cache_misses} miss(es))")
        if self.state == "warming":
            return f"compile: warming up in the background ({len(self.warmed)}/{total} shapes), serving eagerly"
        if self.state == "failed":
            return f"compile: failed, serving eagerly ({self.error})"
        return f"compile: {self.state}"

    def pad_target(self, n: int, *, width: int, height: int, cfg: bool, fast: bool) -> int:
        """The batch size ``n`` images should run at: the nearest warmed size >= n, else n.

        Padding more than doubles the work is not worth it (compiled code is 1.1-2x faster than
        eager, reference README §5), so such a batch runs eagerly at its own size instead.
        """
        if self.state != "ready":
            return n
        sizes = sorted(p.batch for p in self.warmed
                       if (p.width, p.height, p.cfg, p.fast) == (width, height, cfg, fast) and p.batch >= n)
        return sizes[0] if sizes and sizes[0] <= 2 * n else n

    # the warm-up thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        import torch

        try:
            for profile in self.profiles:
                if self._stop.is_set():
                    self.state = "stopped"
                    return
                started = time.perf_counter()
                before = _inductor_cache_counts()
                self._warm(profile)
                after = _inductor_cache_counts()
                self.cache_hits += after[0] - before[0]
                self.cache_misses += after[1] - before[1]
                self.warmed.add(profile)
                label = f"{profile.width}x{profile.height} batch {profile.batch}" + (
                    " fast" if profile.fast else "") + ("" if profile.cfg else " no-CFG")
                self.seconds[label] = time.perf_counter() - started
                log.info("compile warm-up: %s took %.1fs", label, self.seconds[label])
            # from now on a guard miss runs eagerly rather than recompiling in a user's job
            torch.compiler.set_stance("eager_on_recompile")
            for router in self.routers:
                router.ready = True
            self.state = "ready"
            freeze_long_lived("compile warm-up")  # dynamo and inductor leave many long-lived objects
            log.info("compile warm-up done: %s", self.describe())
        except Exception as exc:  # the service goes on eagerly; the reason is in the status
            self.error = f"{type(exc).__name__}: {_first_line(exc)}"
            self.state = "failed"
            for router in self.routers:
                router.compiled = None
            log.exception("compile warm-up failed; serving eagerly")
        finally:
            self._done.set()

    def _warm(self, profile: WarmProfile) -> None:
        """Run one pipeline call of ``profile``'s shape through the compiled modules."""
        import torch

        from engine.pipeline import scheduler_for

        base = self.model.pipe
        acc = self.model.accel
        unet = acc.fast_unet if profile.fast and acc is not None and acc.fast_unet is not None else base.unet
        name = "lcm" if profile.fast else self.settings.default_scheduler
        components = dict(base.components)
        components["unet"] = unet
        # a private scheduler: the worker's instances keep per-call state
        components["scheduler"] = copy.deepcopy(scheduler_for(self.model, name))
        pipe = type(base)(**components)
        pipe.set_progress_bar_config(disable=True)
        dtype = base.text_encoder_2.dtype if getattr(base, "text_encoder_2", None) is not None else unet.dtype
        device = base._execution_device
        cfg_dim = unet.config.cross_attention_dim
        pooled_dim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        b = profile.batch

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        kwargs: dict[str, Any] = dict(
            prompt_embeds=zeros(b, _TOKENS, cfg_dim), pooled_prompt_embeds=zeros(b, pooled_dim),
            width=profile.width, height=profile.height, num_inference_steps=_WARMUP_STEPS,
            guidance_scale=self.settings.default_guidance if profile.cfg else 1.0,
            generator=[torch.Generator("cpu").manual_seed(i) for i in range(b)], output_type="np",
        )
        if profile.cfg:
            kwargs.update(negative_prompt_embeds=zeros(b, _TOKENS, cfg_dim),
                          negative_pooled_prompt_embeds=zeros(b, pooled_dim))
        for router in self.routers:
            router.local.warming = True
        try:
            # the worker runs under inference_mode; dynamo guards on it, so warm up the same way
            with torch.inference_mode():
                pipe(**kwargs)
        finally:
            for router in self.routers:
                router.local.warming = False


def _inductor_cache_counts() -> tuple[int, int]:
    """(FX graph cache hits, misses) so far in this process."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["fxgraph_cache_hit"]), int(counters["inductor"]["fxgraph_cache_miss"])
    except Exception:  # counters are internal; missing ones only cost the report
        return 0, 0


def compile_cache_dir(settings: EngineSettings) -> Path:
    """Where inductor keeps generated kernels across restarts."""
    return Path(settings.compile_cache_dir or settings.data_dir / COMPILE_CACHE_SUBDIR)


def _point_caches_at(directory: Path) -> str:
    """Make inductor (FX graph, AOT autograd, autotune and Triton caches) use ``directory``.

    An operator's own TORCHINDUCTOR_CACHE_DIR wins. The variable is read on every cache
    access (torch/_inductor/runtime/cache_dir_utils.py), so setting it before the first
    compile is enough.
    """
    import torch._functorch.config
    import torch._inductor.config

    if _OPERATOR_CACHE_DIR:
        where = _OPERATOR_CACHE_DIR
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = where
        note = f"compile cache: {where} (from TORCHINDUCTOR_CACHE_DIR)"
    else:
        directory.mkdir(parents=True, exist_ok=True)
        where = str(directory.resolve())
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = where
        note = f"compile cache: {where}"
    torch._inductor.config.fx_graph_cache = True
    if hasattr(torch._functorch.config, "enable_autograd_cache"):
        torch._functorch.config.enable_autograd_cache = True
    entries = sum(1 for _ in Path(where).rglob("*") if _.is_file()) if Path(where).is_dir() else 0
    return f"{note} ({entries} file(s) already there)"


def _compile_kwargs(settings: EngineSettings, cuda: bool, acc: Acceleration) -> dict[str, Any]:
    """torch.compile arguments for the chosen COMPILE_MODE / CUDA_GRAPHS / COMPILE_BACKEND."""
    import torch._inductor.config

    kwargs: dict[str, Any] = {"backend": settings.compile_backend, "fullgraph": True, "dynamic": False}
    if settings.compile_backend != "inductor":
        if settings.cuda_graphs:
            _note(acc, f"CUDA_GRAPHS: skipped, COMPILE_BACKEND={settings.compile_backend} does not capture graphs")
        return kwargs
    graphs = settings.cuda_graphs and cuda
    if settings.cuda_graphs and not cuda:
        _note(acc, "CUDA_GRAPHS: skipped, CUDA graphs need a CUDA device")
    if settings.compile_mode == "max-autotune":
        kwargs["mode"] = "max-autotune" if graphs else "max-autotune-no-cudagraphs"
        if cuda:
            # the inductor flags of the diffusion-fast recipe (diffusers docs: fast_diffusion.md)
            cfg = torch._inductor.config
            cfg.conv_1x1_as_mm = True
            cfg.coordinate_descent_tuning = True
            cfg.epilogue_fusion = False
            cfg.coordinate_descent_check_all_directions = True
    else:
        kwargs["mode"] = "reduce-overhead" if graphs else "default"
    return kwargs


def _warm_profiles(settings: EngineSettings, with_fast: bool) -> list[WarmProfile]:
    sizes = settings.compile_sizes or (settings.default_size,)
    cfg = settings.default_guidance > 1
    profiles = []
    for size in sizes:
        for batch in settings.compile_batch_sizes:
            profiles.append(WarmProfile(size.width, size.height, batch, cfg, False))
        if with_fast:
            # fast mode runs without CFG (guidance 1), per the LCM-LoRA model card
            for batch in settings.compile_batch_sizes:
                profiles.append(WarmProfile(size.width, size.height, batch, False, True))
    return profiles


def _setup_compile(model: LoadedModel, settings: EngineSettings, acc: Acceleration, start: bool) -> None:
    import torch
    import torch._dynamo.config

    pipe = model.pipe
    cuda = model.choice.device.startswith("cuda")
    _note(acc, _point_caches_at(compile_cache_dir(settings)))
    kwargs = _compile_kwargs(settings, cuda, acc)
    dyn = torch._dynamo.config
    dyn.recompile_limit = max(dyn.recompile_limit, _RECOMPILE_LIMIT)
    dyn.accumulated_recompile_limit = max(dyn.accumulated_recompile_limit, _RECOMPILE_LIMIT * 4)

    targets: list[tuple[Any, str]] = [(pipe.unet, "unet")]
    if acc.fast_unet is not None:
        targets.append((acc.fast_unet, "fast-unet"))
    if settings.compile == "unet+vae":
        targets.append((pipe.vae.decoder, "vae-decoder"))
    routers = []
    for module, name in targets:
        router = _router_for(acc, module, name)
        # Module.compile() does the same: compile _call_impl, so hooks still run
        router.compiled = torch.compile(module._call_impl, **kwargs)
        router.mark_step = kwargs.get("mode") in ("reduce-overhead", "max-autotune")
        routers.append(router)
    profiles = _warm_profiles(settings, with_fast=acc.fast_unet is not None)
    acc.compiler = CompileManager(model, settings, routers, profiles, kwargs, compile_cache_dir(settings))
    shapes = ", ".join(sorted({f"{p.width}x{p.height}" for p in profiles}))
    _note(acc, f"COMPILE={settings.compile}: {', '.join(n for _, n in targets)} with mode "
               f"{kwargs.get('mode', '-')}, backend {kwargs['backend']}, dynamic=False; warm-up in the background "
               f"for batch sizes {','.join(map(str, settings.compile_batch_sizes))} at {shapes}"
               f"{' (fast mode too)' if acc.fast_unet is not None else ''}; batches are padded to those sizes")
    if model.fast_adapter is not None and acc.fast_unet is None:
        _note(acc, "COMPILE: fast mode runs eagerly (its LoRA toggles the UNet); set FAST_FUSED_UNET=true to "
                   "compile it as a separate fused UNet")
    if settings.max_batch > max(settings.compile_batch_sizes):
        _note(acc, f"COMPILE: MAX_BATCH={settings.max_batch} is above the largest compiled batch "
                   f"({max(settings.compile_batch_sizes)}); larger batches run eagerly")
    if start:
        acc.compiler.start()


# --- the simple switches ----------------------------------------------------------------------------


def _ensure_sdpa(model: LoadedModel, acc: Acceleration) -> None:
    """Keep diffusers' default SDPA attention: replace any classic (non-SDPA) processor."""
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


def _vae_precision(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    vae = model.pipe.vae
    dtype = model.choice.dtype_name
    if settings.fp16_vae and vae.config.force_upcast:
        # the pipeline reads vae.config.force_upcast before each decode
        vae.register_to_config(force_upcast=False)
        extra = "" if dtype == "float16" else f" (no effect at DTYPE {dtype}: only fp16 decodes upcast)"
        risk = "" if settings.vae_id else "; the stock SDXL VAE can overflow to NaN (black images) in fp16 — " \
                                          "prefer VAE_ID=madebyollin/sdxl-vae-fp16-fix"
        _note(acc, f"FP16_VAE: force_upcast off, the VAE decodes in {dtype}{extra}{risk}")
    elif dtype == "float16" and vae.config.force_upcast:
        _note(acc, "VAE: decodes upcast to fp32 (stock force_upcast); VAE_ID=madebyollin/sdxl-vae-fp16-fix, "
                   "FP16_VAE=true or DTYPE=bfloat16 avoid it")
    else:
        source = f"VAE_ID={settings.vae_id}" if settings.vae_id else f"DTYPE {dtype}"
        _note(acc, f"VAE: decodes in {vae.dtype} without upcast ({source})".replace("torch.", ""))


def _build_fast_unet(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    """A second UNet with the LCM-LoRA merged into its weights, used for fast batches."""
    if not settings.fast_fused_unet:
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
    _router_for(acc, unet, "unet").route_fast_to(fast)
    size = sum(p.numel() * p.element_size() for p in fast.parameters()) / 2**30
    _note(acc, f"FAST_FUSED_UNET: fast mode runs a copy of the UNet with the LCM-LoRA merged (+{size:.2f} GiB)")


def _fuse_qkv(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    if not settings.fuse_qkv:
        return
    done = []
    if model.fast_adapter is not None and acc.fast_unet is None:
        # FusedAttnProcessor2_0 calls to_qkv, so the LoRA on to_q/to_k/to_v would be silently lost
        _note(acc, "FUSE_QKV: UNet skipped, the fast-mode LoRA sits on to_q/to_k/to_v; set FAST_FUSED_UNET=true "
                   "to fuse it as well")
    else:
        model.pipe.unet.fuse_qkv_projections()
        done.append("UNet")
    if acc.fast_unet is not None:
        acc.fast_unet.fuse_qkv_projections()
        done.append("fast UNet")
    model.pipe.vae.fuse_qkv_projections()
    done.append("VAE")
    _note(acc, f"FUSE_QKV: fused q/k/v projections in {', '.join(done)} (FusedAttnProcessor2_0)")


def _channels_last(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    import torch

    if not settings.channels_last:
        return
    modules = [model.pipe.unet, model.pipe.vae] + ([acc.fast_unet] if acc.fast_unet is not None else [])
    for module in modules:
        module.to(memory_format=torch.channels_last)
    _note(acc, "CHANNELS_LAST: UNet and VAE convolution weights in channels_last")


def _vae_memory(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    vae = model.pipe.vae
    if settings.vae_tiling:
        vae.enable_tiling()
        _note(acc, "VAE_TILING: on (decodes images larger than the VAE's sample size tile by tile)")
    if settings.vae_slicing:
        vae.enable_slicing()
        _note(acc, "VAE_SLICING: on (decodes a batch one image at a time)")


def _cpu_offload(model: LoadedModel, settings: EngineSettings, acc: Acceleration) -> None:
    if not settings.cpu_offload:
        return
    device = model.choice.device
    if not device.startswith("cuda"):
        _note(acc, f"CPU_OFFLOAD: skipped, the model already runs on {device}")
        return
    model.pipe.enable_model_cpu_offload(device=device)
    _note(acc, "CPU_OFFLOAD: on (each component moves to the GPU only while it runs)")


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
    steps: list[tuple[str, Callable[[], None]]] = [
        ("SDPA", lambda: _ensure_sdpa(model, acc)),
        ("VAE", lambda: _vae_precision(model, settings, acc)),
        # before QKV fusion: the copy merges the LoRA into to_q/to_k/to_v first
        ("FAST_FUSED_UNET", lambda: _build_fast_unet(model, settings, acc)),
        ("FUSE_QKV", lambda: _fuse_qkv(model, settings, acc)),
        ("CHANNELS_LAST", lambda: _channels_last(model, settings, acc)),
        ("VAE_TILING/VAE_SLICING", lambda: _vae_memory(model, settings, acc)),
        ("CPU_OFFLOAD", lambda: _cpu_offload(model, settings, acc)),
    ]
    if settings.compile != "off":
        steps.append(("COMPILE", lambda: _setup_compile(model, settings, acc, start_warmup)))
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # a speed switch must not take the service down; say what failed
            log.exception("acceleration %s failed", name)
            _note(acc, f"{name}: failed and left off ({type(exc).__name__}: {_first_line(exc)})")
    return acc.status_lines()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:200]


def pad_batch(model: LoadedModel, specs: Sequence[ImageSpec], *, width: int, height: int, guidance: float,
              fast: bool) -> list[ImageSpec]:
    """``specs`` padded with throw-away copies of the last one up to the nearest compiled batch size.

    Only while compiled code is in use; the caller keeps the first ``len(specs)`` images. Each
    image has its own generator, so the real images are the same as without padding.
    """
    acc = model.accel
    if acc is None or acc.compiler is None or not specs:
        return list(specs)
    cfg = guidance > 1  # diffusers: CFG whenever guidance > 1 (the plain UNet has no time_cond_proj_dim)
    target = acc.compiler.pad_target(len(specs), width=width, height=height, cfg=cfg, fast=fast)
    return list(specs) + [specs[-1]] * (target - len(specs))
