"""Throughput of the engine against plain diffusers, on the SSD-1B architecture with random weights.

One run measures (prints JSON, writes it with --out):

* ``baseline``: plain diffusers, one pipeline call per prompt, stock settings (fp16, VAE upcast);
* ``engine_eager``: the real Engine at default quality (1024^2, 25 steps, CFG 9) with 16 queued
  jobs and the eager switches (FP16_VAE, FUSE_QKV, CHANNELS_LAST, FAST_FUSED_UNET), MAX_BATCH=4,
  plus ``pipeline_only`` (run_batch at batch 4, no engine) and the lone-job latency;
* ``fast``: fast mode (LCM scheduler, 4 steps, guidance 1) with a random LoRA of the
  LCM-LoRA's shapes (rank 64 on the UNet's linear layers), 16 queued jobs and a lone job;
* ``engine_compiled``: the same with COMPILE=unet+vae, the warm-up included in the run's time;
* ``small_gpu``: CPU_OFFLOAD, then VAE_TILING + VAE_SLICING, peak memory of a lone job and a
  batch of 4.

Timing does not depend on weight values, so the architecture is built from benchmarks/configs/
(copied from shared/reference/ssd-1b/) with random weights; tokenizers are byte-level CLIP
tokenizers made offline with the real vocabulary size (49408). A time budget (``--budget``,
default 300 s) skips what would not fit, so a run ends within 6 minutes on one H100/H200
(compile warm-up included; later runs reuse the inductor cache under ``--data-dir``).

``--tiny`` (automatic without CUDA) runs the same code with the tiny model on the CPU, so the
script is always ready: ``python benchmarks/bench_gpu.py --tiny``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = Path(__file__).resolve().parent / "configs"
NEGATIVE = "ugly, blurry, poor quality"
CLIP_VOCAB = 49408


# --- building the model --------------------------------------------------------------------------------


def clip_tokenizer(vocab_size: int) -> Any:
    """A byte-level CLIP tokenizer padded to ``vocab_size`` ids, BOS/EOS at the real ids (49406/7)."""
    from transformers import CLIPTokenizer

    from engine.tiny_model import BOS, EOS, tiny_vocab

    vocab, merges = tiny_vocab()
    vocab.pop(BOS)
    vocab.pop(EOS)
    for i in range(len(vocab), vocab_size - 2):
        vocab[f"<|unused{i}|>"] = i
    vocab[BOS] = vocab_size - 2
    vocab[EOS] = vocab_size - 1
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_ssd1b(device: str, dtype: Any) -> Any:
    """StableDiffusionXLPipeline with SSD-1B's architecture and random weights (reference §2)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def load(name: str) -> dict[str, Any]:
        return json.loads((CONFIGS / f"{name}.json").read_text())

    with torch.device(device):
        unet = UNet2DConditionModel.from_config(load("unet")).to(dtype)
        vae = AutoencoderKL.from_config(load("vae")).to(dtype)
        te1 = CLIPTextModel(CLIPTextConfig(**load("text_encoder"))).to(dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**load("text_encoder_2"))).to(dtype)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=clip_tokenizer(CLIP_VOCAB),
                                     tokenizer_2=clip_tokenizer(CLIP_VOCAB), unet=unet,
                                     scheduler=EulerDiscreteScheduler.from_config(load("scheduler")))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_model(tiny: bool, device: str, dtype_name: str) -> Any:
    """A LoadedModel around a random-weight pipeline (what engine.pipeline.load_model returns)."""
    import torch

    from engine.model import DeviceChoice, LoadedModel
    from engine.tiny_model import build_tiny_pipeline

    started = time.perf_counter()
    if tiny:
        pipe = build_tiny_pipeline(0).to(device)
        pipe.set_progress_bar_config(disable=True)
    else:
        pipe = build_ssd1b(device, getattr(torch, dtype_name))
    sync(device)
    return LoadedModel(pipe=pipe, model_id="random-weights:ssd-1b" if not tiny else "random-weights:tiny",
                       choice=DeviceChoice(device, dtype_name), base_scheduler_config=dict(pipe.scheduler.config),
                       load_seconds=time.perf_counter() - started)


def save_random_lora(unet: Any, out_dir: Path, rank: int) -> dict[str, Any]:
    """A random LoRA with the LCM-LoRA's layout on the UNet's linear layers, saved for load_lora_weights."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "time_emb_proj"]
    unet = copy.deepcopy(unet)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights="gaussian"))
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    params = sum(v.numel() for v in state.values())
    StableDiffusionXLPipeline.save_lora_weights(out_dir, unet_lora_layers=state, safe_serialization=True)
    del unet
    return {"rank": rank, "params_M": round(params / 1e6, 2), "targets": targets,
            "note": "linear layers only; the real lcm-lora-ssd-1b (105 M params) also adapts convolutions"}


# --- measuring ------------------------------------------------------------------------------------------


def sync(device: str) -> None:
    """Wait for queued GPU work."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class Memory:
    """Peak accelerator memory of one phase (GiB), None on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak(self) -> float | None:
        if not self.cuda:
            return None
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def free(device: str) -> None:
    """Give freed tensors back before the next phase measures its peak."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


@dataclass
class Budget:
    """Seconds left in the run; phases ask before they start."""

    total: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.started)

    def allows(self, seconds: float) -> bool:
        return self.left() > seconds


def prompts(n: int) -> list[str]:
    return [f"a photo of a red fox in the snow, number {i}" for i in range(n)]


def baseline(model: Any, cfg: argparse.Namespace, mem: Memory) -> dict[str, Any]:
    """Plain diffusers: one call per prompt, nothing but the pipeline's defaults."""
    import torch

    pipe = model.pipe
    kw = dict(negative_prompt=NEGATIVE, width=cfg.size, height=cfg.size, num_inference_steps=cfg.steps,
              guidance_scale=cfg.guidance)
    mem.reset()
    started = time.perf_counter()
    pipe(prompt="warm-up", generator=torch.Generator("cpu").manual_seed(0), **kw)
    sync(cfg.device)
    first = time.perf_counter() - started
    times = []
    for i, text in enumerate(prompts(cfg.baseline_calls)):
        started = time.perf_counter()
        pipe(prompt=text, generator=torch.Generator("cpu").manual_seed(i), **kw)
        sync(cfg.device)
        times.append(time.perf_counter() - started)
    med = statistics.median(times)
    return {"first_call_s": round(first, 3), "times_s": [round(t, 3) for t in times], "s_per_image": round(med, 4),
            "images_per_s": round(1 / med, 3), "peak_GiB": mem.peak(),
            "vae_force_upcast": bool(pipe.vae.config.force_upcast)}


def pipeline_only(model: Any, cfg: argparse.Namespace, batch: int, calls: int, fast: bool) -> dict[str, Any]:
    """run_batch without the engine: seconds per image at ``batch``."""
    from engine.pipeline import ImageSpec, run_batch

    steps, guidance = (cfg.fast_steps, 1.0) if fast else (cfg.steps, cfg.guidance)
    times = []
    for call in range(calls + 1):
        specs = [ImageSpec(p, NEGATIVE, 100 * call + i) for i, p in enumerate(prompts(batch))]
        started = time.perf_counter()
        run_batch(model, specs, width=cfg.size, height=cfg.size, steps=steps, guidance=guidance, scheduler="euler",
                  fast=fast)
        sync(cfg.device)
        if call or not calls:  # the first call warms this shape up, unless it is the only one
            times.append(time.perf_counter() - started)
    med = statistics.median(times)
    return {"batch": batch, "times_s": [round(t, 3) for t in times], "s_per_image": round(med / batch, 4)}


async def engine_run(model: Any, settings: Any, jobs: int, cfg: argparse.Namespace, fast: bool,
                     mem: Memory) -> dict[str, Any]:
    """The real Engine: ``jobs`` one-image jobs queued before the worker starts, then a lone job."""
    from engine.jobs import Requester
    from engine.params import GenerationParams
    from engine.service import Engine

    gate = threading.Event()

    def loader(_settings: Any) -> Any:
        gate.wait(120)  # hold the worker until every job is queued
        return model

    steps, guidance = (cfg.fast_steps, 1.0) if fast else (cfg.steps, cfg.guidance)

    def params(i: int) -> GenerationParams:
        return GenerationParams(prompt=f"a photo of a red fox, number {i}", negative_prompt=NEGATIVE, width=cfg.size,
                                height=cfg.size, steps=steps, guidance=guidance, seed=5000 + i, fast=fast)

    engine = Engine(settings, loader=loader)
    batches: list[int] = []
    engine.before_batch = lambda js: batches.append(len(js))
    await engine.start()
    stream = engine.subscribe()
    try:
        for i in range(jobs):
            await engine.submit(params(i), Requester(user_id=f"user{i}"))
        mem.reset()
        started = time.perf_counter()
        gate.set()
        done = 0
        while done < jobs:
            event = await stream.next(900)
            if event.kind in ("done", "failed"):
                assert event.kind == "done", f"job failed: {event.job}"
                done += 1
        wall = time.perf_counter() - started
        peak = mem.peak()
        lone = []
        for i in range(2):
            started = time.perf_counter()
            job = (await engine.submit(params(1000 + i), Requester(user_id="lone"))).job
            while True:
                event = await stream.next(900)
                if event.job.id == job.id and event.kind in ("done", "failed"):
                    break
            lone.append(time.perf_counter() - started)
        status = engine.status()
    finally:
        stream.close()
        await engine.stop()
    return {"jobs": jobs, "wall_s": round(wall, 3), "s_per_image": round(wall / jobs, 4),
            "images_per_s": round(jobs / wall, 3), "batches": batches, "peak_GiB": peak,
            "lone_job_latency_s": [round(x, 3) for x in lone], "accelerations": list(status.accelerations)}


def engine_settings(cfg: argparse.Namespace, name: str, lora_dir: Path | None, **switches: Any) -> Any:
    """EngineSettings for one phase (the model itself comes from the bench's loader)."""
    from engine.settings import EngineSettings

    size = f"{cfg.size}x{cfg.size}"
    return EngineSettings(_env_file=None, device=cfg.device, dtype=cfg.dtype, data_dir=cfg.data_dir / name,
                          compile_cache_dir=cfg.data_dir / "compile-cache", sizes=size, default_size=size,
                          default_steps=cfg.steps, default_guidance=cfg.guidance, max_steps=max(60, cfg.steps),
                          fast_steps=cfg.fast_steps, fast_lora_id=str(lora_dir or ""), max_batch=cfg.max_batch,
                          per_user_cap=4, **switches)


def fresh_model(cfg: argparse.Namespace, lora_dir: Path | None) -> Any:
    from engine.model import load_fast_lora

    model = build_model(cfg.tiny, cfg.device, cfg.dtype)
    if lora_dir is not None:
        load_fast_lora(model, str(lora_dir))
    return model


EAGER_SWITCHES: dict[str, Any] = dict(fp16_vae=True, fuse_qkv=True, channels_last=True, fast_fused_unet=True)


async def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import torch

    from engine.acceleration import apply_accelerations
    from engine.model import load_fast_lora

    budget = Budget(cfg.budget)
    mem = Memory(cfg.device)
    res: dict[str, Any] = {
        "benchmark": "bench_gpu", "date": time.strftime("%Y-%m-%d"), "mode": "tiny-cpu" if cfg.tiny else "ssd-1b",
        "device": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else cpu_name(),
        "torch": torch.__version__, "dtype": cfg.dtype, "size": cfg.size, "steps": cfg.steps,
        "guidance": cfg.guidance, "jobs": cfg.jobs, "max_batch": cfg.max_batch, "budget_s": cfg.budget,
        "phases": {}, "skipped": {},
    }
    phases = res["phases"]

    def skip(name: str, why: str) -> None:
        res["skipped"][name] = why
        print(f"skip {name}: {why}", file=sys.stderr, flush=True)

    def done(name: str, value: dict[str, Any]) -> None:
        phases[name] = value
        print(f"{name}: {json.dumps(value)}", file=sys.stderr, flush=True)
        if cfg.out:
            cfg.out.write_text(json.dumps(res, indent=1) + "\n")

    # 1. plain diffusers
    model = build_model(cfg.tiny, cfg.device, cfg.dtype)
    res["build_s"] = round(model.load_seconds, 2)
    res["params_M"] = {name: round(sum(p.numel() for p in getattr(model.pipe, name).parameters()) / 1e6, 2)
                       for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
    done("baseline", baseline(model, cfg, mem))

    # 2. the engine, eager switches
    lora_dir = cfg.data_dir / "random-lcm-lora"
    res["lora"] = save_random_lora(model.pipe.unet, lora_dir, cfg.lora_rank)
    load_fast_lora(model, str(lora_dir))
    eager = engine_settings(cfg, "eager", lora_dir, **EAGER_SWITCHES)
    res["eager_switches"] = apply_accelerations(model, eager)
    done("pipeline_only", pipeline_only(model, cfg, cfg.max_batch, cfg.pipeline_calls, fast=False))
    done("engine_eager", await engine_run(model, eager, cfg.jobs, cfg, False, mem))

    # 3. fast mode on the same model
    if budget.allows(30):
        done("fast_pipeline_only", pipeline_only(model, cfg, cfg.max_batch, cfg.pipeline_calls, fast=True))
        done("fast", await engine_run(model, eager, cfg.jobs, cfg, True, mem))
    else:
        skip("fast", "time budget")
    del model
    free(cfg.device)

    # 4. torch.compile, warm-up included in the measured time
    if cfg.skip_compile:
        skip("engine_compiled", "--skip-compile")
    elif not budget.allows(cfg.compile_reserve):
        skip("engine_compiled", f"time budget ({budget.left():.0f}s left, {cfg.compile_reserve}s reserved)")
    else:
        model = fresh_model(cfg, lora_dir)
        # the fused fast UNet is compiled too only with --compile-fast (one more compile per size)
        switches = dict(EAGER_SWITCHES, fast_fused_unet=cfg.compile_fast)
        compiled = engine_settings(cfg, "compiled", lora_dir, **switches, compile="unet+vae",
                                   compile_batch_sizes=cfg.compile_sizes, cuda_graphs=cfg.cuda_graphs,
                                   compile_mode=cfg.compile_mode)
        from benchmarks.bench_engine_cpu import LagProbe, percentile

        started = time.perf_counter()
        lines = apply_accelerations(model, compiled)
        probe = LagProbe()  # the event loop's lag while the warm-up thread compiles
        probe.start()
        warm_ok = await asyncio.to_thread(model.accel.compiler.wait, max(10.0, budget.left() - 60))
        await probe.stop()
        lags = [x * 1000 for x in probe.lags] or [0.0]
        warm = {"warm_up_s": round(time.perf_counter() - started, 1), "ready": warm_ok,
                "per_shape_s": {k: round(v, 1) for k, v in model.accel.compiler.seconds.items()},
                "inductor_cache_hits": model.accel.compiler.cache_hits,
                "inductor_cache_misses": model.accel.compiler.cache_misses, "switches": lines,
                "loop_lag_during_warm_up_ms": {"p50": round(percentile(lags, 50), 2),
                                               "p99": round(percentile(lags, 99), 2), "max": round(max(lags), 2)}}
        if not warm_ok:
            model.accel.close()
            warm["note"] = "warm-up unfinished within the budget: the engine below served eagerly"
        result = await engine_run(model, compiled, cfg.jobs, cfg, False, mem)
        result["compile"] = warm
        result["router_calls"] = {r.name: dict(r.calls) for r in model.accel.routers}
        done("engine_compiled", result)
        if cfg.compile_fast and budget.allows(30):
            done("fast_compiled", await engine_run(model, compiled, cfg.jobs, cfg, True, mem))
        del model
        free(cfg.device)

    # 5. small GPUs: peak memory with offload, and with VAE tiling + slicing
    if budget.allows(cfg.small_reserve):
        small: dict[str, Any] = {}
        for label, switches in (("cpu_offload", dict(cpu_offload=True)),
                                ("vae_tiling_slicing", dict(vae_tiling=True, vae_slicing=True))):
            if not budget.allows(cfg.small_reserve / 2):
                skip(f"small_gpu.{label}", "time budget")
                continue
            # one call per batch size: this phase is about peak memory, and offload is slow
            model = build_model(cfg.tiny, cfg.device, cfg.dtype)
            lines = apply_accelerations(model, engine_settings(cfg, label, None, fp16_vae=True, **switches))
            entry: dict[str, Any] = {"switches": [x for x in lines if x.split(":")[0] in
                                                  ("CPU_OFFLOAD", "VAE_TILING", "VAE_SLICING")]}
            for batch in (1, cfg.max_batch):
                mem.reset()
                measured = pipeline_only(model, cfg, batch, 0, fast=False)
                entry[f"batch{batch}"] = dict(measured, peak_GiB=mem.peak())
            small[label] = entry
            del model
            free(cfg.device)
        done("small_gpu", small)
    else:
        skip("small_gpu", "time budget")

    res["ratios"] = ratios(phases)
    res["total_s"] = round(time.perf_counter() - budget.started, 1)
    return res


def ratios(p: dict[str, Any]) -> dict[str, Any]:
    """Throughput against the baseline, and fast mode against its target."""
    out: dict[str, Any] = {}
    base = p.get("baseline", {}).get("images_per_s")
    for name in ("engine_eager", "engine_compiled"):
        if base and name in p:
            out[f"{name}_vs_baseline"] = round(p[name]["images_per_s"] / base, 3)
    if base and "pipeline_only" in p:
        out["pipeline_only_vs_baseline"] = round(1 / p["pipeline_only"]["s_per_image"] / base, 3)
    if "engine_eager" in p and "pipeline_only" in p:
        # the engine's batches are the pipeline's batch 4 plus queueing, saving and events
        out["engine_eager_overhead_pct_vs_pipeline_only"] = round(
            100 * (p["engine_eager"]["s_per_image"] / p["pipeline_only"]["s_per_image"] - 1), 1)
    for name in ("fast", "fast_compiled"):
        if name in p:
            out[f"{name}_s_per_image"] = p[name]["s_per_image"]
    out["fast_target_s_per_image"] = 0.08
    out["target_vs_baseline"] = 3.0
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (automatic without CUDA)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds the phases may start within (default 300; the last phase can run ~40 s past it)")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--size", type=int, default=None, help="image side (default 1024, tiny 64)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=9.0)
    parser.add_argument("--fast-steps", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--baseline-calls", type=int, default=4)
    parser.add_argument("--pipeline-calls", type=int, default=2)
    parser.add_argument("--lora-rank", type=int, default=None, help="default 64 (tiny 4)")
    parser.add_argument("--compile-sizes", default="4", help="COMPILE_BATCH_SIZES for the compiled phase")
    parser.add_argument("--compile-mode", default="default", choices=("default", "max-autotune"))
    parser.add_argument("--cuda-graphs", action="store_true", help="CUDA_GRAPHS=true in the compiled phase")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--compile-fast", action="store_true",
                        help="also compile fast mode (FAST_FUSED_UNET) and measure it compiled")
    parser.add_argument("--compile-reserve", type=float, default=None,
                        help="seconds that must be left to start the compiled phase (default 200, tiny 60)")
    parser.add_argument("--small-reserve", type=float, default=40.0)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "imagine-bench",
                        help="engine data and the inductor cache (kept: a second run reuses compiled kernels)")
    parser.add_argument("--out", type=Path, default=None)
    cfg = parser.parse_args(argv)
    if not torch.cuda.is_available():
        cfg.tiny = True
    cfg.device = "cpu" if cfg.tiny else "cuda"
    cfg.dtype = "float32" if cfg.tiny else "float16"
    cfg.size = cfg.size or (64 if cfg.tiny else 1024)
    cfg.lora_rank = cfg.lora_rank or (4 if cfg.tiny else 64)
    cfg.compile_reserve = cfg.compile_reserve if cfg.compile_reserve is not None else (60.0 if cfg.tiny else 200.0)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def report(res: dict[str, Any], out: Path | None, ratios_key: str) -> None:
    """Print the JSON (and write it to ``out``), then the ratios on stderr."""
    text = json.dumps(res, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")
    print(f"\nratios: {json.dumps(res[ratios_key])}; total {res['total_s']}s", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run every phase that fits the budget and print the JSON."""
    cfg = parse(argv)
    report(asyncio.run(run(cfg)), cfg.out, "ratios")


if __name__ == "__main__":
    main()
