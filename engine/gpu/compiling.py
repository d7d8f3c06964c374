"""torch.compile for the UNet (and VAE decoder): routing calls, the background warm-up, the cache.

* The UNet (and with ``COMPILE=unet+vae`` the VAE decoder) gets a *router* (routing.py) installed as the
  module's ``_compiled_call_impl``, so the pipeline and its components stay the same objects.
* A background thread compiles with ``dynamic=False`` for a fixed set of shapes: each batch size of
  ``COMPILE_BATCH_SIZES`` at each size of ``COMPILE_SIZES`` (default: DEFAULT_SIZE). It drives a private shallow
  copy of the pipeline with zero prompt embeddings up to latents (no scheduler or tokenizer shared with the worker),
  then decodes them through engine/gpu/vae.py exactly as a served batch is decoded (in the serving dtype, never
  changing the shared VAE's). Meanwhile the worker serves eagerly; the router sends a call to compiled code only for
  a shape that was warmed, from the moment it is, so a cold deploy serves its first shape compiled after one compile.
  The shape the worker served most while waiting is compiled next; one that fails to compile stays eager and the
  others go on. With CUDA_GRAPHS=auto a lone image's shapes are warmed once more at the end on the graph-replaying
  function, whose graphs the worker records and serves once the warm-up is over (the plain code serves them until
  then). The warm-up compiles with its own intended mode (the LoRA off), never the worker's, and a shape counts as
  warm only when the compiled code really ran for it. Each module is compiled through a function of its own, so
  each has its own dynamo cache (``own_entry``).
* torch's dynamo/inductor settings are per thread: the warm-up thread sets its own (compile_config.py).
* After the warm-up the dynamo stance is set to ``eager_on_recompile``: an unexpected guard miss
  runs eagerly instead of stalling a user's job for minutes of recompilation.
* The worker may pad a batch up to a warmed batch size with throw-away images
  (``CompileManager.pad_target``), but only when the compiled speed-up at that size is larger
  than the extra work (``COMPILED_SPEEDUP``): on an H200 a batch of 3 runs eagerly rather than as
  a compiled batch of 4.
* Inductor's caches live under ``DATA_DIR/compile-cache`` (or ``COMPILE_CACHE_DIR``): a restart reuses the
  generated kernels instead of paying the minutes again (dynamo still re-traces, in seconds).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engine.engine_settings import EngineSettings
from engine.gpu import vae
from engine.gpu.compile_config import (
    COMPILED_SPEEDUP,
    GRAPH_ROWS,
    compile_cache_dir,
    compile_kwargs,
    compiled_speedup,
    configure_thread,
    graph_kwargs,
    inductor_cache_counts,
    point_caches_at,
)
from engine.gpu.lora.slot import SLOT
from engine.gpu.model import scheduler_for
from engine.gpu.routing import Router, own_entry, router_for
from engine.ops.heap import freeze_long_lived

if TYPE_CHECKING:
    from engine.gpu.model import LoadedModel

log = logging.getLogger(__name__)

# steps per warm-up call: shapes, not step counts, decide what is compiled
_WARMUP_STEPS = 2
# tries per shape when the worker switched the adapters during a warm-up call
_WARMUP_TRIES = 3
# LoRA slot shapes are compiled up to this batch size: compiled code gains 2.17x at batch 1 on an H200 but 1.086x at
# batch 4, about what the slot's rank-128 matmuls cost over a LoRA's own; and while one compiles, plain batches run
# the pinned slot eagerly (engine/gpu/lora/slot.py)
LORA_MAX_BATCH = 2


@dataclass(frozen=True)
class WarmProfile:
    """One shape family the warm-up compiles: image size, batch size, CFG on/off, fast mode, the LoRA slot on."""

    width: int
    height: int
    batch: int
    cfg: bool
    fast: bool
    lora: bool = False
    graphs: bool = False  # CUDA_GRAPHS=auto: a lone image's shape again, on the UNets' graph-replaying function


# --- torch.compile warm-up --------------------------------------------------------------------------


class CompileManager:
    """Compiles the routed modules on a background thread and tracks which shapes are warm."""

    def __init__(self, model: LoadedModel, settings: EngineSettings, routers: list[Router],
                 profiles: list[WarmProfile], fast_unet: Any = None) -> None:
        self.model = model
        self.settings = settings
        self.routers = routers
        self.profiles = profiles
        self.fast_unet = fast_unet  # the fused fast-mode UNet (FAST_FUSED_UNET), compiled for fast profiles
        self.state = "pending"  # pending | warming | ready | failed | stopped
        self.error: str | None = None
        self.warmed: set[WarmProfile] = set()
        self.failures: dict[str, str] = {}  # profile label -> why it could not be compiled (it runs eagerly)
        self.seconds: dict[str, float] = {}
        self.cache_hits = 0
        self.cache_misses = 0
        self.speedup: dict[int, float] = dict(COMPILED_SPEEDUP)  # what pad_target assumes compiled code gains
        self.turns: threading.Lock | None = None  # set by start() under max-autotune (Acceleration.gpu_turn)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # public ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the warm-up thread (the worker keeps serving eagerly meanwhile)."""
        # max-autotune times kernels on the GPU: serving beside it would skew both, so they take turns (a profile's
        # whole compile: a batch waits for it, minutes on a cold cache, instead of being served eagerly meanwhile)
        self.turns = threading.Lock() if self.settings.accel.compile_mode == "max-autotune" else None
        self.state = "warming"
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
        failed = "".join(f"; {label} failed ({why}), runs eagerly" for label, why in self.failures.items())
        if self.state == "ready":
            took = sum(self.seconds.values())
            return (f"compile: ready, {len(self.warmed)}/{total} shape(s) warm in {took:.0f}s "
                    f"(inductor cache {self.cache_hits} hit(s), {self.cache_misses} miss(es)){failed}")
        if self.state == "warming":
            serving = "the warm ones compiled, the rest eagerly" if self.warmed else "serving eagerly"
            return f"compile: warming up in the background ({len(self.warmed)}/{total} shapes), {serving}{failed}"
        if self.state == "failed":
            return f"compile: failed, serving eagerly ({self.error})"
        return f"compile: {self.state}"

    def pad_target(self, n: int, *, width: int, height: int, cfg: bool, fast: bool, lora: bool = False) -> int:
        """The batch size ``n`` images should run at: ``n`` itself, or a larger warmed size when that is faster.

        The estimated time of a call is its images divided by its compiled speed-up (1 when eager):
        padding ``n`` to a warmed ``b`` wins only when ``speedup(b) > b / n`` (``self.speedup``, by
        default COMPILED_SPEEDUP); the cheapest estimate is chosen.
        """
        if self.state != "ready":
            return n
        warm = {p.batch for p in self.warmed if (p.width, p.height, p.cfg, p.fast, p.lora) == (width, height, cfg,
                                                                                               fast, lora)}
        best, cost = n, n / (compiled_speedup(n, self.speedup) if n in warm else 1.0)
        for b in sorted(b for b in warm if b > n):
            estimate = b / compiled_speedup(b, self.speedup)
            if estimate < cost:
                best, cost = b, estimate
        return best

    def slot_warm(self, width: int, height: int, unet_batch: int) -> bool:
        """Whether the LoRA slot's graphs are served for a UNet batch of ``unet_batch`` at ``width`` x ``height``."""
        return any(r.serving() for r in self.routers if r.module is self.model.pipe.unet) and any(
            p.lora and (p.width, p.height) == (width, height) and p.batch * (2 if p.cfg else 1) == unet_batch
            for p in self.warmed)

    # the warm-up thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        import torch

        try:
            # torch's compile settings are per thread: this is the thread that compiles
            configure_thread(self.settings, self.model.choice.device.startswith("cuda"), warm_up=True)
            remaining = list(self.profiles)
            while remaining:
                if self._stop.is_set():
                    self.state = "stopped"
                    return
                profile = self._most_used(remaining)
                remaining.remove(profile)
                self._warm_one(profile)
            if not self.warmed:
                raise RuntimeError(next(iter(self.failures.values()), "no shape could be warmed"))
            # from now on a guard miss runs eagerly rather than recompiling in a user's job
            torch.compiler.set_stance("eager_on_recompile")
            for router in self.routers:
                router.ready = router.graphs_ready = True
            self.state = "ready"
            freeze_long_lived("compile warm-up")  # dynamo and inductor leave many long-lived objects
            log.info("compile warm-up done: %s", self.describe())
        except Exception as exc:  # the service goes on eagerly; the reason is in the status
            self.error = f"{type(exc).__name__}: {first_line(exc)}" if not self.failures else str(exc)
            self.state = "failed"
            for router in self.routers:
                router.compiled = None
            log.exception("compile warm-up failed; serving eagerly")
        finally:
            self._done.set()

    def _warm_one(self, profile: WarmProfile) -> None:
        """Compile one profile; its shapes are served compiled at once (a failure leaves this profile eager only)."""
        started = time.perf_counter()
        before = inductor_cache_counts()
        label = f"{profile.width}x{profile.height} batch {profile.batch}" + (" fast" if profile.fast else "") + (
            "" if profile.cfg else " no-CFG") + (" LoRA slot" if profile.lora else "") + (
            " CUDA graphs" if profile.graphs else "")
        try:
            warm = self._warm_until_recorded(profile)
        except Exception as exc:  # this shape runs eagerly; the others still compile
            self.failures[label] = f"{type(exc).__name__}: {first_line(exc)}"
            log.warning("compile warm-up: %s failed (%s); it runs eagerly", label, self.failures[label])
            return
        finally:
            after = inductor_cache_counts()
            self.cache_hits += after[0] - before[0]
            self.cache_misses += after[1] - before[1]
            self.seconds[label] = time.perf_counter() - started
        if not warm:  # its calls run eagerly and no batch is padded to it
            log.warning("compile warm-up: %s left cold: the adapters kept being switched during it", label)
            return
        self.warmed.add(profile)
        for router in self.routers:
            router.commit_warm()
        log.info("compile warm-up: %s took %.1fs", label, self.seconds[label])
        # served compiled now, while the others compile; keys match exactly (shape, dtype, memory format), so no guard
        # miss compiles in a user's job. Calls that replay CUDA graphs wait for the end (Router.graphs_ready)
        for router in self.routers:
            router.ready = True

    def _most_used(self, remaining: list[WarmProfile]) -> WarmProfile:
        """The profile whose UNet shape the worker served most while this warm-up ran (the declared order first:
        batch 1, for lone jobs, before larger batches); graph profiles last, the plain code serves their shapes."""
        def served(profile: WarmProfile) -> int:
            unet = self.fast_unet if profile.fast and self.fast_unet is not None else self.model.pipe.unet
            router = next((r for r in self.routers if r.module is unet), None)
            if router is None:
                return 0
            factor = getattr(self.model.pipe, "vae_scale_factor", 8)
            shape = (profile.batch * (2 if profile.cfg else 1), unet.config.in_channels, profile.height // factor,
                     profile.width // factor)
            return router.eager_shapes.get((profile.lora, shape), 0)

        return min(remaining, key=lambda p: (p.graphs, -served(p), self.profiles.index(p)))

    def _warm_until_recorded(self, profile: WarmProfile) -> bool:
        """Warm ``profile`` up, again when the worker switched a mode meanwhile; True once it is warm.

        The warm-up compiles with its own intended mode (adapters off, or the LoRA slot pinned on for a LoRA
        profile; zero padding) and never follows the shared state otherwise: it waits while a batch runs other
        adapters or a --tile batch pads circularly, and a call during which either was switched is not counted,
        because it was traced that way. The slot's weights may change meanwhile: graphs do not depend on them.
        """
        slot = self.model.lora_slot if profile.lora else None

        def busy() -> bool:
            return (self.model.lora_on and not (slot is not None and slot.on)) or self.model.tiling

        for _ in range(_WARMUP_TRIES):
            while busy() and not self._stop.is_set():
                time.sleep(0.05)
            if self._stop.is_set():
                return False
            with self.turns or contextlib.nullcontext():  # taken after the wait: the worker switches the modes back
                if busy():  # switched on while the turn was awaited: wait again, without the turn
                    continue
                changes = self.model.mode_changes
                with slot.pinned() if slot is not None else contextlib.nullcontext():
                    warmed = self._warm(profile)
            if warmed and changes == self.model.mode_changes:
                return True
        return False

    def _warm(self, profile: WarmProfile) -> bool:
        """Run one call of ``profile``'s shape through the compiled modules, as the worker would.

        The UNet runs in a private pipeline (own scheduler, zero prompt embeddings) up to latents;
        then engine.gpu.vae decodes them exactly as a served batch is decoded, in the serving dtype and
        without changing the shared VAE's dtype. True when every compiled module it reached
        recorded the shape as warm (and the profile's UNet was reached).
        """
        import torch

        base = self.model.pipe
        unet = self.fast_unet if profile.fast and self.fast_unet is not None else base.unet
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
        # the pipeline pads every prompt to the text encoders' length (77 positions for CLIP)
        tokens = (base.tokenizer_2 or base.tokenizer).model_max_length

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        kwargs: dict[str, Any] = dict(
            prompt_embeds=zeros(b, tokens, cfg_dim), pooled_prompt_embeds=zeros(b, pooled_dim),
            width=profile.width, height=profile.height, num_inference_steps=_WARMUP_STEPS,
            guidance_scale=self.settings.default_guidance if profile.cfg else 1.0,
            generator=[torch.Generator("cpu").manual_seed(i) for i in range(b)], output_type="latent",
        )
        if profile.cfg:
            kwargs.update(negative_prompt_embeds=zeros(b, tokens, cfg_dim),
                          negative_pooled_prompt_embeds=zeros(b, pooled_dim))
        intended = (SLOT,) if profile.lora else ()
        for router in self.routers:
            router.begin_warm(intended if router.module is base.unet else (), graphs=profile.graphs)
        try:
            # the worker runs under inference_mode; dynamo guards on it, so warm up the same way
            with torch.inference_mode():
                latents = pipe(**kwargs).images
                vae.decode(self.model, latents, fast=profile.fast)
        finally:
            counts = {router.module: router.end_warm() for router in self.routers}
        reached = counts.get(unet, (0, 0))[0] > 0
        return reached and all(calls == recorded for calls, recorded in counts.values())


def _warm_profiles(settings: EngineSettings, with_fast: bool, with_lora: bool) -> list[WarmProfile]:
    sizes = settings.accel.compile_sizes or (settings.default_size,)
    cfg = settings.default_guidance > 1
    profiles = []
    for size in sizes:
        for batch in settings.accel.compile_batch_sizes:
            profiles.append(WarmProfile(size.width, size.height, batch, cfg, False))
        if cfg and settings.accel.cfg_cutoff > 0:  # the steps after CFG_CUTOFF run without guidance
            profiles += [WarmProfile(size.width, size.height, batch, False, False)
                         for batch in settings.accel.compile_batch_sizes]
        if with_fast:
            # fast mode runs without CFG (guidance 1), per the LCM-LoRA model card
            for batch in settings.accel.compile_batch_sizes:
                profiles.append(WarmProfile(size.width, size.height, batch, False, True))
    if with_lora:  # declared after the plain shapes (LoRA batches are the fewer), at the sizes where compiling pays
        profiles += [WarmProfile(p.width, p.height, p.batch, p.cfg, False, lora=True) for p in list(profiles)
                     if not p.fast and p.batch <= LORA_MAX_BATCH]
    return profiles


def setup_compile(model: LoadedModel, settings: EngineSettings, routers: list[Router], fast_unet: Any,
                  start: bool, mode: str) -> tuple[CompileManager, list[str]]:
    """Compile the UNet (the fast UNet, the VAE decoder: ``mode`` unet or unet+vae) behind routers;
    returns the manager and one line per decision. With ``start`` the background warm-up begins at once."""
    import torch

    cuda = model.choice.device.startswith("cuda")
    notes = [point_caches_at(compile_cache_dir(settings))]
    kwargs = compile_kwargs(settings, cuda, notes)
    configure_thread(settings, cuda)

    targets: list[tuple[Any, str]] = [(model.pipe.unet, "unet")]
    if fast_unet is not None:
        targets.append((fast_unet, "fast-unet"))
    if mode == "unet+vae":
        # the decoder that serves quality batches: the shared VAE's, or its float32 copy (engine/gpu/vae.py)
        targets.append((vae.decoding_vae(model).decoder, "vae-decoder"))
    graphs = graph_kwargs(settings, cuda, notes)  # CUDA_GRAPHS=auto: the UNets' lone-image calls replay graphs
    compiled: list[Router] = []
    for module, name in targets:
        router = router_for(routers, module, name)
        router.tiling = lambda: model.tiling  # a --tile batch's circular padding was not traced: it runs eagerly
        router.compiled = torch.compile(own_entry(module, name), **kwargs)
        router.mark_step = kwargs.get("mode") in ("reduce-overhead", "max-autotune")
        if graphs is not None and "unet" in name:
            router.graphed = torch.compile(own_entry(module, f"{name} graphs"), **graphs)
            router.graph_rows = GRAPH_ROWS
        compiled.append(router)
    profiles = _warm_profiles(settings, with_fast=fast_unet is not None, with_lora=model.lora_slot is not None)
    if graphs is not None:  # after the plain code of every shape, which serves lone images meanwhile
        profiles += [replace(p, graphs=True) for p in profiles if p.batch * (2 if p.cfg else 1) <= GRAPH_ROWS]
    compiler = CompileManager(model, settings, compiled, profiles, fast_unet)
    shapes = ", ".join(sorted({f"{p.width}x{p.height}" for p in profiles}))
    notes.append(f"COMPILE={mode}: {', '.join(n for _, n in targets)} with mode "
                 f"{kwargs.get('mode', '-')}, backend {kwargs['backend']}, dynamic=False; warm-up in the background "
                 f"for batch sizes {','.join(map(str, settings.accel.compile_batch_sizes))} at {shapes}"
                 f"{' (fast mode too)' if fast_unet is not None else ''}; batches are padded to those sizes only "
                 f"when the compiled speed-up pays for the padding")
    if model.fast_adapter is not None and fast_unet is None and model.lora_slot is None:
        notes.append("COMPILE: fast mode runs eagerly (its LoRA toggles the UNet); set FAST_FUSED_UNET=true to "
                     "compile it as a separate fused UNet, or LORA_SLOT_RANK to run it through the LoRA slot")
    if settings.max_batch > max(settings.accel.compile_batch_sizes):
        notes.append(f"COMPILE: MAX_BATCH={settings.max_batch} is above the largest compiled batch "
                     f"({max(settings.accel.compile_batch_sizes)}); larger batches run eagerly")
    if start:
        compiler.start()
    return compiler, notes


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line status notes."""
    return (str(exc).strip().splitlines() or [""])[0][:200]
