"""Routing a module's calls between its eager code and its compiled code.

A Router is installed as ``module._compiled_call_impl`` (the hook ``nn.Module.compile()`` itself
uses), so the pipeline and its components stay the same objects while the router decides, per
call, which code runs.
"""

from __future__ import annotations

import threading
import types
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any


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
        # the memory format too: dynamo guards on strides, so channels_last latents miss a graph traced on
        # contiguous ones (and ran eagerly while counted as compiled)
        channels_last = value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last)
        layout = "contiguous" if value.is_contiguous() else "channels_last" if channels_last else "strided"
        return ("T", tuple(value.shape), str(value.dtype), value.device.type, value.is_inference(), layout)
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


def float_timestep(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The UNet call with an integer timestep tensor given as float32.

    Euler passes float32 timesteps, dpmpp_2m, ddim and unipc int64 ones; a graph compiled for one dtype
    misses the other. The UNet turns the timestep into float32 first thing (``get_timestep_embedding``:
    ``timesteps[:, None].float()``) and timesteps are integers below 2**24, so the cast changes no value.
    """
    import torch

    def cast(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and not value.is_floating_point() and not value.is_complex():
            return value.to(torch.float32)
        return value

    if len(args) > 1:
        args = (args[0], cast(args[1]), *args[2:])
    elif "timestep" in kwargs:
        kwargs = dict(kwargs, timestep=cast(kwargs["timestep"]))
    return args, kwargs


class Router:
    """Installed as ``module._compiled_call_impl``: decides per call which code runs.

    * The warm-up thread always runs the compiled function (that is what compiles it) and
      records the call keys it saw, under its own intended adapter state (``begin_warm``): none, or the LoRA slot
      (engine/gpu/lora/slot.py), zero padding. (Fast profiles run the fused fast UNet, which has no LoRA layers.)
      The shared adapter and tiling state are only checked, never followed: a call during which the worker had
      another state or a --tile batch's circular padding is not recorded, since it was traced that way.
    * The worker runs compiled code for a call that is not tiled and whose key (the adapters' actual state
      included) was warmed, from the moment its profile is warm; a lone image's call replays CUDA graphs
      (``graphed``) once the whole warm-up is over, the plain compiled code until then. Everything else runs the
      eager ``_call_impl``.
    """

    def __init__(self, module: Any, name: str) -> None:
        self.module = module
        self.name = name
        # UNets: one compiled graph serves float and integer timesteps (see float_timestep)
        self.timestep_arg = "unet" in name
        self.compiled: Callable[..., Any] | None = None
        # CUDA_GRAPHS=auto: the module compiled again to replay CUDA graphs, for calls of at most graph_rows rows; they
        # run ``compiled`` until the warm-up has warmed them here too (graph_keys) and is over (graphs_ready)
        self.graphed: Callable[..., Any] | None = None
        self.graph_rows = 0
        self.keys: set[Hashable] = set()
        self.graph_keys: set[Hashable] = set()
        self.ready = False
        self.mark_step = False  # CUDA_GRAPHS=true: every compiled call replays CUDA graphs
        # the worker records its own graphs (graph trees are per thread) at its first calls: not while the warm-up
        # still compiles beside it, so calls that replay graphs wait for the end (set by the CompileManager)
        self.graphs_ready = False
        # which adapters run (LCM-LoRA, the LoRA slot, none) is part of what a compiled graph was specialised on
        self._lora_layer: Any = _first_tuner_layer(module)
        self.tiling: Callable[[], bool] = lambda: False  # --tile's circular padding on (set by setup_compile)
        self.local = threading.local()  # the warm-up thread's own state (warming, calls, recorded)
        self.calls = {"compiled": 0, "eager": 0, "graphs": 0}  # graphs: the compiled calls that replayed graphs
        # eager calls by adapters on or not and the first argument's shape: the warm-up compiles the shapes served
        # most first
        self.eager_shapes: Counter[tuple[bool, tuple[int, ...]]] = Counter()

    def install(self) -> None:
        """Take over the module's calls."""
        self.module._compiled_call_impl = self

    def begin_warm(self, intended: tuple[str, ...] = (), graphs: bool = False) -> None:
        """Called on the warm-up thread before each warm-up call: count this call's traffic afresh; ``intended`` is
        the adapter state (``adapter_state``) it traces; ``graphs``: warm ``graphed`` for the calls it takes."""
        self.local.warming = True
        self.local.intended = intended
        self.local.graphs = graphs
        self.local.calls = 0
        self.local.recorded = 0
        self.local.pending = set()

    def commit_warm(self) -> None:
        """The profile warmed up: serve the keys its calls recorded (those of a failed one are never served)."""
        for graphed, key in getattr(self.local, "pending", set()):
            (self.graph_keys if graphed else self.keys).add(key)
        self.local.pending = set()

    def end_warm(self) -> tuple[int, int]:
        """(calls, calls recorded as warm) on this thread since ``begin_warm``."""
        self.local.warming = False
        return getattr(self.local, "calls", 0), getattr(self.local, "recorded", 0)

    def adapter_state(self) -> tuple[str, ...]:
        """The adapters the module's LoRA layers run now (empty when off or none)."""
        layer = self._lora_layer
        if layer is None or layer.disable_adapters:
            return ()
        return tuple(layer.active_adapters)

    @property
    def warming(self) -> bool:
        """True on the warm-up thread while it drives a compile."""
        return bool(getattr(self.local, "warming", False))

    def serving(self) -> bool:
        """Whether the worker's warmed calls run compiled code now (with CUDA_GRAPHS=true: once the warm-up is over)."""
        return self.ready and (self.graphs_ready or not self.mark_step)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.timestep_arg:
            args, kwargs = float_timestep(args, kwargs)
        if self.compiled is not None:
            small = self.graphed is not None and _rows(args) <= self.graph_rows
            if self.warming:
                self.local.calls += 1
                intended = getattr(self.local, "intended", ())
                as_intended = self.adapter_state() == intended and not self.tiling()
                graphed = small and getattr(self.local, "graphs", False)
                self._mark_step(graphed or self.mark_step)
                out = (self.graphed if graphed else self.compiled)(*args, **kwargs)  # type: ignore[misc]
                if as_intended and self.adapter_state() == intended and not self.tiling():  # and zero padding
                    self.local.pending.add((graphed, (intended, call_key(args, kwargs))))
                    self.local.recorded += 1
                return out
            if self.ready and not self.tiling():
                key = (self.adapter_state(), call_key(args, kwargs))
                if small and self.graphs_ready and key in self.graph_keys:
                    return self._served(self.graphed, True, args, kwargs)  # type: ignore[arg-type]
                if self.serving() and key in self.keys:
                    return self._served(self.compiled, self.mark_step, args, kwargs)
        self.calls["eager"] += 1
        if args and hasattr(args[0], "shape"):
            self.eager_shapes[bool(self.adapter_state()), tuple(args[0].shape)] += 1
        return self.module._call_impl(*args, **kwargs)

    def _served(self, fn: Callable[..., Any], graphs: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls["compiled"] += 1
        self.calls["graphs"] += graphs
        self._mark_step(graphs)
        return fn(*args, **kwargs)

    @staticmethod
    def _mark_step(graphs: bool) -> None:
        # CUDA graph trees reuse output buffers; each UNet/VAE call starts a new "step", and the
        # pipeline never keeps a raw output past the next call (schedulers derive new tensors)
        if graphs:
            import torch

            torch.compiler.cudagraph_mark_step_begin()


def _rows(args: tuple[Any, ...]) -> int:
    """The batch dimension of a call's first argument (0 when it has none)."""
    shape = getattr(args[0], "shape", None) if args else None
    return int(shape[0]) if shape else 0


def router_for(routers: list[Router], module: Any, name: str) -> Router:
    """The router installed on ``module`` (installed now, and added to ``routers``, on first use)."""
    for router in routers:
        if router.module is module:
            return router
    router = Router(module, name)
    router.install()
    routers.append(router)
    return router


def own_entry(module: Any, name: str) -> Callable[..., Any]:
    """A function that calls ``module._call_impl`` (so hooks still run, as with Module.compile()), with a code object
    of its own.

    Dynamo keeps its graphs, guards and recompile limit per code object. Compiling ``module._call_impl`` itself put
    the UNet's, the fast UNet's and the VAE decoder's graphs all on nn.Module's one ``_call_impl``: every call
    walked the others' guards, they shared one recompile limit, and with CUDA graphs a quality/fast switch could
    re-record. A copy of the wrapper's code object, renamed for the module, gives each its own cache.
    """
    def call(*args: Any, **kwargs: Any) -> Any:
        return module._call_impl(*args, **kwargs)

    label = "compiled_" + "".join(c if c.isalnum() else "_" for c in name)
    code = call.__code__.replace(co_name=label, co_qualname=label)
    return types.FunctionType(code, call.__globals__, label, call.__defaults__, call.__closure__)
