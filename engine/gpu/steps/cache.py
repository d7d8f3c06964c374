"""STEP_CACHE: in the middle of the schedule the UNet runs on every Nth step and the steps between reuse its last
noise prediction. Opt-in, because it changes the image.

Caching across steps is the idea of DeepCache (Ma et al., 2023), which reuses the UNet's deep features between
adjacent steps because they change little there. This keeps the whole prediction instead: a skipped step costs no
UNet call at all, with no new shapes to compile, and the computed steps run the same compiled graphs (CUDA graphs
included) as always. The first fifth of the steps (where the layout forms) and the last tenth (details) always run.
For Euler a reused prediction means the step follows the previous step's direction. The benchmark's PSNR against
plain diffusers (benchmarks/bench_gpu.py ``--extra stepcache``) says how far the image moves.

A StepCache is installed once as the UNet's ``_compiled_call_impl`` (outside the compile router, which it calls),
and does anything only while a batch on the worker's thread has it ``armed``: the compile warm-up, on its own
thread, and every other call pass straight through.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

HEAD = 0.2  # share of the first steps that always run the UNet: the layout forms there
TAIL = 0.1  # share of the last steps that always run it: the details


def computed_steps(total: int, every: int) -> list[bool]:
    """Which of ``total`` steps run the UNet when the middle ones run on every ``every``-th step."""
    if every <= 1:
        return [True] * total
    head, tail = max(1, math.ceil(total * HEAD)), max(1, math.ceil(total * TAIL))
    # the step after the head reuses its last one: the first computed middle step is head + every - 1
    return [i < head or i >= total - tail or (i - head + 1) % every == 0 for i in range(total)]


class StepCache:
    """Installed as ``unet._compiled_call_impl``: while armed, a step the schedule skips returns the last prediction."""

    def __init__(self, module: Any, every: int) -> None:
        self.module = module
        self.every = every
        self.inner: Callable[..., Any] | None = module._compiled_call_impl  # the compile router, when there is one
        self.local = threading.local()  # the armed batch's schedule, step and last prediction, on its thread only
        self.calls = {"computed": 0, "reused": 0}
        module._compiled_call_impl = self

    @contextlib.contextmanager
    def armed(self, steps: int) -> Iterator[None]:
        """Skip steps of the next ``steps`` UNet calls on this thread (one call per step, as diffusers makes them)."""
        self.local.plan, self.local.step, self.local.last = computed_steps(steps, self.every), 0, None
        try:
            yield
        finally:
            self.local.plan, self.local.last = None, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        plan = getattr(self.local, "plan", None)
        if plan is None:
            return self._run(args, kwargs)
        step, last = self.local.step, self.local.last
        self.local.step += 1
        rows = args[0].shape[0] if args else kwargs["sample"].shape[0]
        # a skipped step reuses the last prediction unless the batch changed shape (CFG_CUTOFF halves it)
        if step < len(plan) and not plan[step] and last is not None and last.shape[0] == rows:
            self.calls["reused"] += 1
            if kwargs.get("return_dict", True):
                from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

                return UNet2DConditionOutput(sample=last)
            return (last,)
        out = self._run(args, kwargs)
        self.calls["computed"] += 1
        sample = out[0] if isinstance(out, tuple) else out.sample
        # a copy: a CUDA graph's replay reuses its output buffer
        self.local.last = sample.clone()
        return out

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.inner is not None:
            return self.inner(*args, **kwargs)
        return self.module._call_impl(*args, **kwargs)


def armed(cache: StepCache | None, steps: int, on: bool) -> contextlib.AbstractContextManager[Any]:
    """``cache.armed(steps)`` when there is a cache and ``on``; otherwise nothing."""
    return cache.armed(steps) if cache is not None and on else contextlib.nullcontext()
