"""Routing a module's calls between its eager code, its compiled code and the fused fast-mode UNet.

A Router is installed as ``module._compiled_call_impl`` (the hook ``nn.Module.compile()`` itself
uses), so the pipeline and its components stay the same objects while the router decides, per
call, which code runs.
"""

from __future__ import annotations

import threading
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
        # UNets: one compiled graph serves float and integer timesteps (see float_timestep)
        self.timestep_arg = "unet" in name
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
        if self.timestep_arg:
            args, kwargs = float_timestep(args, kwargs)
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


def router_for(routers: list[Router], module: Any, name: str) -> Router:
    """The router installed on ``module`` (installed now, and added to ``routers``, on first use)."""
    for router in routers:
        if router.module is module:
            return router
    router = Router(module, name)
    router.install()
    routers.append(router)
    return router
