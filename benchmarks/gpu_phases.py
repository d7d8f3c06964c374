"""bench_gpu.py's phases: plain diffusers, pipeline-only batches, and the real Engine under a queue.

Every image of every phase is made from the same prompts and seeds (gpu_model.prompt_for/seed_for)
on the same random weights, so each configuration's images can be compared with plain diffusers'
(PSNR: >= 30 dB counts as default quality).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchmarks.gpu_model import NEGATIVE, Memory, prompt_for, psnr, seed_for, sync


def baseline(model: Any, cfg: Any, mem: Memory) -> tuple[dict[str, Any], list[Any]]:
    """Plain diffusers, one call per prompt, stock settings; also the reference images for PSNR."""
    import numpy as np
    import torch

    pipe = model.pipe
    kw = dict(negative_prompt=NEGATIVE, width=cfg.size, height=cfg.size, num_inference_steps=cfg.steps,
              guidance_scale=cfg.guidance)
    mem.reset()
    started = time.perf_counter()
    pipe(prompt="warm-up", generator=torch.Generator("cpu").manual_seed(0), **kw)
    sync(cfg.device)
    first = time.perf_counter() - started
    times, reference = [], []
    for i in range(max(cfg.baseline_calls, cfg.psnr_images)):
        started = time.perf_counter()
        image = pipe(prompt=prompt_for(i), generator=torch.Generator("cpu").manual_seed(seed_for(i)), **kw).images[0]
        sync(cfg.device)
        if i < cfg.baseline_calls:
            times.append(time.perf_counter() - started)
        if i < cfg.psnr_images:
            reference.append(np.asarray(image))
    med = statistics.median(times)
    return ({"first_call_s": round(first, 3), "times_s": [round(t, 3) for t in times], "s_per_image": round(med, 4),
             "images_per_s": round(1 / med, 3), "peak_GiB": mem.peak(), "dtype": model.choice.dtype_name,
             "vae_force_upcast": bool(pipe.vae.config.force_upcast)}, reference)


def quality(model: Any, cfg: Any, reference: list[Any], *, fast: bool = False) -> dict[str, Any]:
    """PSNR of this configuration's images against plain diffusers' for the same prompts and seeds.

    One batched call through run_batch (padded as the engine would), so compiled shapes are used.
    Fast mode is compared with itself run eagerly elsewhere; here only quality mode is meaningful.
    """
    import numpy as np

    from engine.gpu.acceleration import padded_batch_size
    from engine.gpu.pipeline import ImageSpec, run_batch

    specs = [ImageSpec(prompt_for(i), NEGATIVE, seed_for(i)) for i in range(len(reference))]
    if not specs:
        return {}
    batch = padded_batch_size(model, len(specs), width=cfg.size, height=cfg.size, guidance=cfg.guidance, fast=fast)
    images = run_batch(model, specs, width=cfg.size, height=cfg.size, steps=cfg.steps, guidance=cfg.guidance,
                       scheduler="euler", fast=fast, batch_size=batch)
    values = [psnr(np.asarray(img), ref) for img, ref in zip(images, reference)]
    return {"psnr_db": values, "psnr_min_db": min(values), "default_quality": min(values) >= 30.0}


def pipeline_only(model: Any, cfg: Any, batch: int, calls: int, fast: bool) -> dict[str, Any]:
    """run_batch without the engine: seconds per image at ``batch``."""
    from engine.gpu.pipeline import ImageSpec, run_batch

    steps, guidance = (cfg.fast_steps, 1.0) if fast else (cfg.steps, cfg.guidance)
    times = []
    for call in range(calls + 1):
        specs = [ImageSpec(prompt_for(i), NEGATIVE, 100 * call + i) for i in range(batch)]
        started = time.perf_counter()
        run_batch(model, specs, width=cfg.size, height=cfg.size, steps=steps, guidance=guidance, scheduler="euler",
                  fast=fast)
        sync(cfg.device)
        if call or not calls:  # the first call warms this shape up, unless it is the only one
            times.append(time.perf_counter() - started)
    med = statistics.median(times)
    return {"batch": batch, "times_s": [round(t, 3) for t in times], "s_per_image": round(med / batch, 4)}


def module_dtypes(model: Any) -> dict[str, str]:
    """The dtype of every model module (a half-precision run must end as it started)."""
    pipe = model.pipe
    out = {name: str(getattr(pipe, name).dtype).replace("torch.", "")
           for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
    fast_unet = getattr(model.accel, "fast_unet", None)
    if fast_unet is not None:
        out["fast_unet"] = str(fast_unet.dtype).replace("torch.", "")
    return out


class Batches:
    """A ``before_batch`` hook that records the size of every pipeline call."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, jobs: list[Any]) -> None:
        self.sizes.append(len(jobs))


class Session:
    """A started Engine on a prebuilt model, with an event stream; ``apply`` runs the accelerations in the
    loader (as default_loader does, so a compile warm-up starts while the engine serves)."""

    def __init__(self, model: Any, settings: Any, *, apply: bool) -> None:
        from engine.service import Engine

        def loader(_settings: Any) -> Any:
            if apply:
                from engine.gpu.acceleration import apply_accelerations

                self.switches = apply_accelerations(model, settings)
            return model

        self.model = model
        self.switches: list[str] = []
        self.engine = Engine(settings, loader=loader)
        self.batches = Batches()
        self.engine.before_batch = self.batches
        self.stream: Any = None

    async def __aenter__(self) -> Session:
        await self.engine.start()
        assert await self.engine.wait_ready(600), self.engine.model_error
        self.stream = self.engine.subscribe()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stream.close()
        await self.engine.stop()

    def params(self, cfg: Any, i: int, *, fast: bool = False) -> Any:
        """Job ``i``'s parameters (its prompt and seed are the same in every phase)."""
        from engine.requests.params import GenerationParams

        steps, guidance = (cfg.fast_steps, 1.0) if fast else (cfg.steps, cfg.guidance)
        return GenerationParams(prompt=prompt_for(i), negative_prompt=NEGATIVE, width=cfg.size, height=cfg.size,
                                steps=steps, guidance=guidance, seed=seed_for(i), fast=fast)

    async def run(self, all_params: list[Any]) -> dict[str, Any]:
        """Submit every job at once (from distinct users: BATCH_WINDOW lets the first batch fill); wait for them."""
        from engine.jobs.records import Requester

        ids: dict[int, float] = {}
        started = time.perf_counter()
        for n, p in enumerate(all_params):
            job = (await self.engine.submit(p, Requester(user_id=f"user{n}"))).job
            ids[job.id] = time.perf_counter()
        latency, failed = {}, []
        while len(latency) + len(failed) < len(ids):
            event = await self.stream.next(900)
            if event.job.id in ids and event.kind in ("done", "failed", "cancelled"):
                if event.kind == "done":
                    latency[event.job.id] = time.perf_counter() - ids[event.job.id]
                else:
                    failed.append((event.job.id, event.kind, event.job.error))
        wall = time.perf_counter() - started
        images = sum(p.count for p in all_params)
        return {"jobs": len(ids), "wall_s": round(wall, 3), "s_per_image": round(wall / images, 4),
                "images_per_s": round(images / wall, 3), "failed": failed, "first_job_id": min(ids),
                "latency_s": {"median": round(statistics.median(latency.values()), 3) if latency else None,
                              "max": round(max(latency.values()), 3) if latency else None}}

    async def lone(self, cfg: Any, n: int = 2, *, fast: bool = False) -> list[float]:
        """Seconds from submit to done for ``n`` lone jobs in a row (an idle engine)."""
        out = []
        for i in range(n):
            result = await self.run([self.params(cfg, 1000 + i, fast=fast)])
            out.append(result["wall_s"])
        return out

    async def variations(self, cfg: Any, jobs: int) -> dict[str, Any]:
        """A source job, then ``jobs`` variations of it (V1..V4 buttons) under one queue."""
        source = await self.run([self.params(cfg, 0)])
        vary = [await self.engine.variation(source["first_job_id"], 0, seed=seed_for(100 + i)) for i in range(jobs)]
        routers = self.model.accel.routers if self.model.accel is not None else []
        before = {r.name: dict(r.calls) for r in routers}
        result = await self.run(vary)
        result["denoise_steps"] = vary[0].denoise_steps
        # image-to-image on the compiled graphs or not (a stride guard once sent every variation to eager)
        result["router_calls"] = {r.name: {k: r.calls[k] - before[r.name][k] for k in r.calls} for r in routers}
        return result


async def queue_phase(model: Any, settings: Any, cfg: Any, mem: Memory, reference: list[Any], *, fast: bool,
                      variations: int = 0) -> dict[str, Any]:
    """The engine on an already accelerated model: a queue of jobs, lone jobs, variations, PSNR."""
    async with Session(model, settings, apply=False) as s:
        mem.reset()
        out = await s.run([s.params(cfg, i, fast=fast) for i in range(cfg.jobs)])
        out["peak_GiB"] = mem.peak()
        out["batches"] = list(s.batches.sizes)
        out["lone_job_latency_s"] = await s.lone(cfg, fast=fast)
        if variations:
            out["variations"] = await s.variations(cfg, variations)
        out["accelerations"] = list(s.engine.status().accelerations)
    if not fast:
        out["quality"] = await asyncio.to_thread(quality, model, cfg, reference)
    out["dtypes_after"] = module_dtypes(model)
    return out


async def compiled_phase(model: Any, settings: Any, cfg: Any, mem: Memory, reference: list[Any],
                         wait_s: float) -> dict[str, Any]:
    """The engine starting with compile on, as in production: it serves (variations and fast mode too)
    while the warm-up compiles in the background, then the queue, lone jobs and PSNR once it is ready."""
    from benchmarks.bench_engine_cpu import LagProbe, percentile

    async with Session(model, settings, apply=True) as s:
        compiler = model.accel.compiler
        started = time.perf_counter()
        probe = LagProbe()
        probe.start()
        during: list[dict[str, Any]] = []
        wave = 0
        while compiler is not None and compiler.state == "warming" and time.perf_counter() - started < wait_s:
            # serve while compiling: quality jobs, a variation of the first, fast jobs
            batch = [s.params(cfg, 200 + 4 * wave + i) for i in range(cfg.max_batch)]
            if model.fast_adapter is not None:
                batch.append(s.params(cfg, 300 + wave, fast=True))
            during.append(await s.run(batch))
            if wave == 0:
                during.append(await s.variations(cfg, 2))
            wave += 1
        ready = await asyncio.to_thread(compiler.wait, max(1.0, wait_s - (time.perf_counter() - started))) \
            if compiler is not None else False
        await probe.stop()
        lags = [x * 1000 for x in probe.lags] or [0.0]
        warm = {"warm_up_s": round(time.perf_counter() - started, 1), "ready": ready,
                "describe": compiler.describe() if compiler is not None else "compile off",
                "per_shape_s": {k: round(v, 1) for k, v in (compiler.seconds if compiler else {}).items()},
                "served_while_warming": {
                    "calls": len(during), "images": sum(d["jobs"] for d in during),
                    "failed": [f for d in during for f in d["failed"]],
                    "s_per_image": [d["s_per_image"] for d in during]},
                "loop_lag_ms": {"p50": round(percentile(lags, 50), 2), "p99": round(percentile(lags, 99), 2),
                                "max": round(max(lags), 2)}}
        if not ready and compiler is not None:
            compiler.stop()
            warm["note"] = "warm-up unfinished within the budget: the queue below was served eagerly"
        mem.reset()
        out = await s.run([s.params(cfg, i) for i in range(cfg.jobs)])
        out["peak_GiB"] = mem.peak()
        out["batches"] = list(s.batches.sizes)
        out["lone_job_latency_s"] = await s.lone(cfg)
        if model.fast_adapter is not None:
            out["fast"] = await s.run([s.params(cfg, 400 + i, fast=True) for i in range(cfg.jobs)])
        if cfg.variations:
            out["variations"] = await s.variations(cfg, cfg.variations)
        out["compile"] = warm
        out["switches"] = s.switches
        out["router_calls"] = {r.name: dict(r.calls) for r in model.accel.routers}
    out["quality"] = await asyncio.to_thread(quality, model, cfg, reference)
    out["dtypes_after"] = module_dtypes(model)
    return out


async def restart_phase(model: Any, settings: Any, cfg: Any, wait_s: float) -> dict[str, Any]:
    """A restart on the compile cache the previous phase left (the second half of a cold + warm compile in one
    command): the warm-up alone, dynamo tracing again and inductor's kernels read from the cache, then lone jobs."""
    async with Session(model, settings, apply=True) as s:
        compiler = model.accel.compiler
        started = time.perf_counter()
        ready = await asyncio.to_thread(compiler.wait, wait_s)
        out: dict[str, Any] = {
            "warm_up_s": round(time.perf_counter() - started, 1), "ready": ready, "describe": compiler.describe(),
            "per_shape_s": {k: round(v, 1) for k, v in compiler.seconds.items()},
            "inductor_cache": {"hits": compiler.cache_hits, "misses": compiler.cache_misses}}
        if not ready:
            compiler.stop()
            out["note"] = "warm-up unfinished within the budget"
        out["lone_job_latency_s"] = await s.lone(cfg)
        out["router_calls"] = {r.name: dict(r.calls) for r in model.accel.routers}
    return out
