"""torch.compile configuration: the kernel cache, compile arguments, and per-thread torch settings.

torch's dynamo and inductor settings are per thread (``torch.utils._config_module`` keeps them in
context variables): a value set on the loading thread is not seen by the compile warm-up thread,
which is where compiling happens. ``configure_thread`` is therefore called on the warm-up thread
itself (and on the loader's, for calls made there).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.engine_settings import EngineSettings

COMPILE_CACHE_SUBDIR = "compile-cache"
# dynamo keeps one cache entry per (code object, shape), and every routed module compiles the same code
# object (nn.Module._call_impl): UNet + fast UNet + VAE decoder x batch sizes x image sizes need more than
# the default 8
RECOMPILE_LIMIT = 256
# the operator's own inductor cache directory, read before torch can set a default into the
# environment (torch._inductor's cache_dir() writes its default back to os.environ)
_OPERATOR_CACHE_DIR = os.environ.get("TORCHINDUCTOR_CACHE_DIR")


def inductor_cache_counts() -> tuple[int, int]:
    """(FX graph cache hits, misses) so far in this process."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["inductor"]["fxgraph_cache_hit"]), int(counters["inductor"]["fxgraph_cache_miss"])
    except Exception:  # counters are internal; missing ones only cost the report
        return 0, 0


def compile_cache_dir(settings: EngineSettings) -> Path:
    """Where inductor keeps generated kernels across restarts."""
    return Path(settings.accel.compile_cache_dir or settings.data_dir / COMPILE_CACHE_SUBDIR)


def point_caches_at(directory: Path) -> str:
    """Make inductor (FX graph, AOT autograd, autotune and Triton caches) use ``directory``.

    An operator's own TORCHINDUCTOR_CACHE_DIR wins. The variable is read on every cache
    access (torch/_inductor/runtime/cache_dir_utils.py), so setting it before the first
    compile is enough; the environment is the process's, unlike torch's config.
    """
    if _OPERATOR_CACHE_DIR:
        where = _OPERATOR_CACHE_DIR
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = where
        note = f"compile cache: {where} (from TORCHINDUCTOR_CACHE_DIR)"
    else:
        directory.mkdir(parents=True, exist_ok=True)
        where = str(directory.resolve())
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = where
        note = f"compile cache: {where}"
    entries = sum(1 for _ in Path(where).rglob("*") if _.is_file()) if Path(where).is_dir() else 0
    return f"{note} ({entries} file(s) already there)"


def configure_thread(settings: EngineSettings, cuda: bool, *, warm_up: bool = False) -> None:
    """Set this thread's dynamo and inductor options: recompile limits, caches, max-autotune flags; ``warm_up``: the
    compile warm-up's thread, which compiles graph-replaying functions without capturing graphs."""
    import torch._dynamo.config
    import torch._functorch.config
    import torch._inductor.config
    import torch.compiler.config

    # the SDPA kernel is chosen while a graph is traced, and the compile caches' keys do not hold that choice: without
    # this a cached graph of another ATTENTION_BACKEND would be served
    torch.compiler.config.cache_key_tag = f"sdpa={settings.accel.attention_backend}"
    # graph trees are per thread: graphs captured here would never serve the worker, and each capture would hold
    # memory and synchronise the GPU beside its batches; the worker captures its own once the warm-up is over
    torch._inductor.config.triton.force_cudagraphs_warmup = warm_up
    dyn = torch._dynamo.config
    dyn.recompile_limit = max(dyn.recompile_limit, RECOMPILE_LIMIT)
    dyn.accumulated_recompile_limit = max(dyn.accumulated_recompile_limit, RECOMPILE_LIMIT * 4)
    torch._inductor.config.fx_graph_cache = True
    if hasattr(torch._functorch.config, "enable_autograd_cache"):
        torch._functorch.config.enable_autograd_cache = True
    if settings.accel.compile_mode == "max-autotune" and cuda:
        # the inductor flags of the diffusion-fast recipe (diffusers docs: fast_diffusion.md)
        cfg = torch._inductor.config
        cfg.conv_1x1_as_mm = True
        cfg.coordinate_descent_tuning = True
        cfg.epilogue_fusion = False
        cfg.coordinate_descent_check_all_directions = True


def compile_kwargs(settings: EngineSettings, cuda: bool, notes: list[str]) -> dict[str, Any]:
    """torch.compile arguments for the chosen COMPILE_MODE / CUDA_GRAPHS / COMPILE_BACKEND."""
    kwargs: dict[str, Any] = {"backend": settings.accel.compile_backend, "fullgraph": True, "dynamic": False}
    if settings.accel.compile_backend != "inductor":
        if settings.accel.cuda_graphs:
            notes.append(f"CUDA_GRAPHS: skipped, COMPILE_BACKEND={settings.accel.compile_backend} does not capture graphs")
        return kwargs
    graphs = settings.accel.cuda_graphs and cuda
    if settings.accel.cuda_graphs and not cuda:
        notes.append("CUDA_GRAPHS: skipped, CUDA graphs need a CUDA device")
    if settings.accel.compile_mode == "max-autotune":
        kwargs["mode"] = "max-autotune" if graphs else "max-autotune-no-cudagraphs"
    else:
        kwargs["mode"] = "reduce-overhead" if graphs else "default"
    return kwargs


# CUDA_GRAPHS=auto: UNet calls of at most this many rows (one image with guidance, two without) replay CUDA graphs. At
# batch 1 the H200 pipeline is launch-bound (compiled 2.17x eager, shared/reference/ssd-1b README §5) and a graph
# replays the step's ~1,500 kernel launches as one; at batch 4 it is compute-bound and graphs would only hold memory
GRAPH_ROWS = 2


def graph_kwargs(settings: EngineSettings, cuda: bool, notes: list[str]) -> dict[str, Any] | None:
    """torch.compile arguments for the UNets' small calls under CUDA_GRAPHS=auto; None where no such graphs are made
    (CUDA_GRAPHS=true graphs every call through ``compile_kwargs``; false none; not without CUDA or inductor)."""
    a = settings.accel
    if a.cuda_graphs is not None or not cuda or a.compile_backend != "inductor":
        return None
    notes.append(f"CUDA_GRAPHS=auto: UNet calls of up to {GRAPH_ROWS} rows (a lone image with guidance, or two "
                 f"without) replay CUDA graphs once the warm-up is done; larger batches run the plain compiled code")
    return {"backend": "inductor", "fullgraph": True, "dynamic": False,
            "mode": "max-autotune" if a.compile_mode == "max-autotune" else "reduce-overhead"}


# Compiled over eager speed-up per image at a batch size (eager s/image / compiled s/image, same batch),
# measured on an H200 at 1024^2, 25 steps, CFG (shared/reference/ssd-1b README §5: 1.399 -> 0.645 s at
# batch 1, launch-bound; 0.707 -> 0.651 s at batch 4, compute-bound). Sizes in between are interpolated
# geometrically, larger ones take the last value. pad_target pads n images to b only when
# speed-up(b) > b / n, so on that GPU it never pads (3 -> 4 is 33 % more work for 8.6 %).
COMPILED_SPEEDUP: dict[int, float] = {1: 2.17, 4: 1.086}


def compiled_speedup(batch: int, table: dict[int, float] | None = None) -> float:
    """The assumed compiled speed-up per image at ``batch`` from ``table`` (default COMPILED_SPEEDUP)."""
    import math
    from itertools import pairwise

    points = sorted((table or COMPILED_SPEEDUP).items())
    if batch <= points[0][0]:
        return points[0][1]
    for (b0, s0), (b1, s1) in pairwise(points):
        if batch <= b1:
            w = (math.log(batch) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return math.exp((1 - w) * math.log(s0) + w * math.log(s1))
    return points[-1][1]
