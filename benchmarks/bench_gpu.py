"""Throughput of the engine against plain diffusers, on the SSD-1B architecture with random weights.

One run measures (prints JSON, writes it with --out after every phase):

1. ``baseline``: plain diffusers, one pipeline call per prompt, stock settings (fp16 on CUDA, so the
   stock VAE decodes upcast to fp32); its images are the reference for every PSNR below.
2. ``engine_eager``: the real Engine at default quality (1024^2, 25 steps, CFG 9) with ``--jobs``
   queued one-image jobs, the default dtype (bf16 on CUDA) and the default switches but COMPILE=off;
   ``pipeline_only`` (run_batch at MAX_BATCH, no engine), lone-job latency, variations (V buttons,
   image-to-image at VARY_STRENGTH), and fast mode (LCM scheduler, 4 steps, guidance 1, a random
   LoRA of the LCM-LoRA's shapes). ``fast_tiny_vae``: fast mode decoding with FAST_VAE_ID (a random
   AutoencoderTiny with taesdxl's architecture, loaded through the engine's own code).
3. ``engine_default``: the default configuration (on CUDA: bf16, COMPILE=unet warmed in the
   background, fused QKV, channels_last, fused fast UNet). The engine serves while the warm-up
   compiles (quality jobs, variations and fast jobs; failures, their s/image and the event loop's
   lag are reported), then, once warm, the queue, lone jobs and fast mode are measured. The warm-up
   is *not* part of the throughput: it is reported on its own (``compile.warm_up_s``; a second
   run reuses the inductor cache under ``--data-dir``). ``engine_restart`` follows: the same configuration started
   again on the compile cache it left (dynamo reset, in the same process), the warm warm-up beside the cold one.
4. ``extra.*`` (``--extra``): the switches kept behind settings until measured here, each on the
   default configuration: ``vae`` (COMPILE=unet+vae), ``batch8`` (COMPILE_BATCH_SIZES=8,
   MAX_BATCH=8), ``autotune`` (COMPILE_MODE=max-autotune), ``fp8`` (FP8_LINEAR, torchao),
   ``cudagraphs`` (CUDA_GRAPHS=true: every compiled call), ``nographs`` (CUDA_GRAPHS=false: what the default's graphs
   for lone images gain), ``cudnn`` (ATTENTION_BACKEND=cudnn), ``cfgcut`` (CFG_CUTOFF=0.8) and ``stepcache``
   (STEP_CACHE=2), the last two changing the image.
5. ``small_gpu``: peak memory of a lone job and a batch with CPU_OFFLOAD, then VAE_TILING + VAE_SLICING.

Every configuration's images are compared with plain diffusers' for the same prompts and seeds
(``quality.psnr_db``; >= 30 dB counts as default quality). Each phase builds its own model with
the same seeded random weights; the previous phase's model is freed first (the engine's gc.freeze
is undone, or frozen reference cycles would keep it alive and inflate later peaks).

A time budget (``--budget``, default 300 s) skips what would not fit, so a run ends within 6
minutes on one H100/H200 (a cold compile of one shape takes 70-110 s there; the default run
compiles two). ``--tiny`` (automatic without CUDA) runs the same code with the tiny model on the
CPU in seconds (compile with the ``eager`` backend unless --compile-backend says otherwise):
``python benchmarks/bench_gpu.py --tiny``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.gpu_model import (  # noqa: E402 - re-exported for bench_switches_cpu
    NEGATIVE,
    Budget,
    Memory,
    build_model,
    build_ssd1b,
    cpu_name,
    free,
    make_settings,
    prompts,
    random_model_id,
    save_random_lora,
    save_random_taesd,
)
from benchmarks.gpu_phases import (  # noqa: E402
    baseline,
    compiled_phase,
    pipeline_only,
    queue_phase,
    restart_phase,
)

__all__ = ["NEGATIVE", "build_ssd1b", "cpu_name", "main", "prompts", "report", "save_random_lora"]

EXTRAS: dict[str, dict[str, Any]] = {
    "vae": {"compile": "unet+vae"},
    "batch8": {"compile_batch_sizes": "8", "max_batch": 8},
    "autotune": {"compile_mode": "max-autotune"},
    "fp8": {"fp8_linear": True},
    "cudagraphs": {"cuda_graphs": True},  # every compiled call (the default, auto, graphs lone images only)
    "nographs": {"cuda_graphs": False},  # what auto's graphs for lone images gain
    "cudnn": {"attention_backend": "cudnn"},
    "cfgcut": {"cfg_cutoff": 0.8},  # changes the image: its PSNR against plain diffusers says by how much
    "stepcache": {"step_cache": 2},  # changes the image too
}


def settings_for(cfg: argparse.Namespace, name: str, lora_dir: Path | None, **switches: Any) -> Any:
    """EngineSettings for one phase (the model itself comes from the bench's loader)."""
    size = f"{cfg.size}x{cfg.size}"
    values: dict[str, Any] = dict(
        model_id=random_model_id(cfg.tiny), device=cfg.device, dtype=cfg.dtype, data_dir=cfg.data_dir / name,
        compile_cache_dir=cfg.data_dir / "cache",
        sizes=size, default_size=size, default_steps=cfg.steps, default_guidance=cfg.guidance,
        max_steps=max(60, cfg.steps), fast_steps=cfg.fast_steps, fast_lora_id=str(lora_dir or ""),
        max_batch=cfg.max_batch, per_user_cap=4, compile_backend=cfg.compile_backend,
        compile_batch_sizes=cfg.compile_sizes,
        # the device is offline: FAST_VAE_ID=auto would try the Hub; the fast_tiny_vae phase names its own
        fast_vae_id="off")
    values.update(switches)
    return make_settings(**values)


def fresh_model(cfg: argparse.Namespace, lora_dir: Path | None, dtype: str | None = None) -> Any:
    """The same random weights again, with the fast-mode LoRA loaded."""
    from engine.gpu.model import choose_device, load_fast_lora

    model = build_model(cfg.tiny, cfg.device, dtype or choose_device(cfg.device, cfg.dtype).dtype_name)
    if lora_dir is not None:
        load_fast_lora(model, str(lora_dir))
    return model


async def run(cfg: argparse.Namespace) -> dict[str, Any]:
    """Every phase that fits the budget; the results so far are written after each."""
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    from engine.gpu.acceleration import apply_accelerations

    budget, mem = Budget(cfg.budget), Memory(cfg.device)
    res: dict[str, Any] = {
        "benchmark": "bench_gpu", "date": time.strftime("%Y-%m-%d"), "mode": "tiny-cpu" if cfg.tiny else "ssd-1b",
        "device": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else cpu_name(),
        "torch": torch.__version__, "baseline_dtype": cfg.baseline_dtype, "dtype": cfg.dtype, "size": cfg.size,
        "steps": cfg.steps, "guidance": cfg.guidance, "jobs": cfg.jobs, "max_batch": cfg.max_batch,
        "compile_batch_sizes": cfg.compile_sizes, "compile_backend": cfg.compile_backend, "budget_s": cfg.budget,
        "phases": {}, "skipped": {}, "memory_left_GiB": {},
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

    def release(name: str) -> None:
        free(cfg.device)
        res["memory_left_GiB"][name] = mem.now()  # should be ~0: nothing of the phase survives

    # 1. plain diffusers
    model = build_model(cfg.tiny, cfg.device, cfg.baseline_dtype)
    res["params_M"] = {name: round(sum(p.numel() for p in getattr(model.pipe, name).parameters()) / 1e6, 2)
                       for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
    value, reference = baseline(model, cfg, mem)
    done("baseline", value)
    lora_dir, taesd_dir = cfg.data_dir / "random-lcm-lora", cfg.data_dir / "random-taesdxl"
    res["lora"] = save_random_lora(model.pipe.unet, lora_dir, cfg.lora_rank)
    res["fast_vae"] = save_random_taesd(taesd_dir, cfg.tiny)
    del model
    release("baseline")

    # 2. the engine, eager, default dtype and switches
    model = fresh_model(cfg, lora_dir)
    eager = settings_for(cfg, "eager", lora_dir, compile="off")
    res["eager_switches"] = apply_accelerations(model, eager, start_warmup=False)
    done("pipeline_only", pipeline_only(model, cfg, cfg.max_batch, cfg.pipeline_calls, fast=False))
    done("engine_eager", await queue_phase(model, eager, cfg, mem, reference, fast=False, variations=cfg.variations))
    if budget.allows(30):
        done("fast_pipeline_only", pipeline_only(model, cfg, cfg.max_batch, cfg.pipeline_calls, fast=True))
        done("fast", await queue_phase(model, eager, cfg, mem, reference, fast=True))
    else:
        skip("fast", "time budget")
    del model
    release("engine_eager")
    if budget.allows(30):
        model = fresh_model(cfg, lora_dir)
        tiny_vae = settings_for(cfg, "fast-tiny-vae", lora_dir, compile="off", fast_vae_id=str(taesd_dir))
        lines = apply_accelerations(model, tiny_vae, start_warmup=False)
        value = await queue_phase(model, tiny_vae, cfg, mem, reference, fast=True)
        value["switch"] = next((x for x in lines if x.startswith("FAST_VAE_ID")), None)
        done("fast_tiny_vae", value)
        del model
        release("fast_tiny_vae")
    else:
        skip("fast_tiny_vae", "time budget")

    # 3. the default configuration, serving while it compiles; 4. the extra switches on top of it
    for name, switches in [("engine_default", {}), *((f"extra.{x}", EXTRAS[x]) for x in cfg.extra)]:
        if not budget.allows(cfg.compile_reserve):
            skip(name, f"time budget ({budget.left():.0f}s left, {cfg.compile_reserve}s reserved per compiled phase)")
            continue
        # a phase compiles from scratch: the previous warm-up left dynamo's process-wide stance at
        # eager_on_recompile and its graphs cached, so a later phase "warmed" in 0.5 s and served eagerly
        torch._dynamo.reset()
        torch.compiler.set_stance("default")
        graphs_before = counters["stats"]["unique_graphs"]
        model = fresh_model(cfg, lora_dir)
        settings = settings_for(cfg, name, lora_dir, **{"compile": cfg.default_compile, **cfg.cuda_defaults,
                                                        **switches})
        if name.startswith("extra.") and settings.max_batch != cfg.max_batch:
            cfg_phase = argparse.Namespace(**{**vars(cfg), "max_batch": settings.max_batch,
                                              "jobs": max(cfg.jobs, 2 * settings.max_batch)})
        else:
            cfg_phase = cfg
        value = await compiled_phase(model, settings, cfg_phase, mem, reference,
                                     wait_s=max(10.0, budget.left() - cfg.small_reserve - 30))
        value["dynamo_graphs_compiled"] = counters["stats"]["unique_graphs"] - graphs_before
        done(name, value)
        del model
        release(name)
        if name == "engine_default":
            if budget.allows(cfg.compile_reserve / 2):
                torch._dynamo.reset()  # a restart: dynamo traces again, inductor reads the kernels just cached
                torch.compiler.set_stance("default")
                graphs_before = counters["stats"]["unique_graphs"]
                model = fresh_model(cfg, lora_dir)
                wait_s = max(10.0, budget.left() - cfg.small_reserve - 30)
                value = await restart_phase(model, settings, cfg, wait_s=wait_s)
                value["dynamo_graphs_compiled"] = counters["stats"]["unique_graphs"] - graphs_before
                done("engine_restart", value)
                del model
                release("engine_restart")
            else:
                skip("engine_restart", "time budget")

    # 5. small GPUs: peak memory with offload, and with VAE tiling + slicing
    if budget.allows(cfg.small_reserve):
        small: dict[str, Any] = {}
        for label, switches in (("cpu_offload", {"cpu_offload": True}),
                                ("vae_tiling_slicing", {"vae_tiling": True, "vae_slicing": True})):
            if not budget.allows(cfg.small_reserve / 2):
                skip(f"small_gpu.{label}", "time budget")
                continue
            model = fresh_model(cfg, None)
            lines = apply_accelerations(model, settings_for(cfg, label, None, compile="off", **switches))
            entry: dict[str, Any] = {"switches": [x for x in lines if x.split(":")[0] in
                                                  ("CPU_OFFLOAD", "VAE_TILING", "VAE_SLICING")]}
            for batch in (1, cfg.max_batch):  # one call each: this phase is about peak memory
                mem.reset()
                entry[f"batch{batch}"] = dict(pipeline_only(model, cfg, batch, 0, fast=False), peak_GiB=mem.peak())
            small[label] = entry
            del model
            release(f"small_gpu.{label}")
        done("small_gpu", small)
    else:
        skip("small_gpu", "time budget")

    res["ratios"] = ratios(phases)
    res["total_s"] = round(time.perf_counter() - budget.started, 1)
    # the last warm-up left dynamo's process-wide stance at eager_on_recompile: in the same process (the test), a
    # later warm-up would then leave every shape that needs a second graph of one function eager
    torch.compiler.set_stance("default")
    return res


def ratios(p: dict[str, Any]) -> dict[str, Any]:
    """Throughput against the baseline, the targets, and which configurations keep default quality."""
    out: dict[str, Any] = {}
    base = p.get("baseline", {}).get("images_per_s")
    for name, value in p.items():
        if base and isinstance(value, dict) and "images_per_s" in value and name != "baseline":
            out[f"{name}_vs_baseline"] = round(value["images_per_s"] / base, 3)
        if isinstance(value, dict) and "quality" in value and value["quality"]:
            out[f"{name}_psnr_min_db"] = value["quality"]["psnr_min_db"]
    if base and "pipeline_only" in p:
        out["pipeline_only_vs_baseline"] = round(1 / p["pipeline_only"]["s_per_image"] / base, 3)
    for name in ("fast", "fast_tiny_vae"):
        if name in p:
            out[f"{name}_s_per_image"] = p[name]["s_per_image"]
    if "fast" in p.get("engine_default", {}):
        out["engine_default_fast_s_per_image"] = p["engine_default"]["fast"]["s_per_image"]
    if "engine_default" in p:
        out["engine_default_lone_job_s"] = min(p["engine_default"]["lone_job_latency_s"])
        if "engine_restart" in p:
            out["compile_warm_up_s"] = {"cold": p["engine_default"]["compile"]["warm_up_s"],
                                        "warm": p["engine_restart"]["warm_up_s"]}
    out["targets"] = {"vs_baseline": 3.0, "s_per_image_h200": 0.45, "fast_s_per_image": 0.08, "lone_job_s": 0.7,
                      "psnr_min_db": 30.0}
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; without CUDA the tiny CPU run."""
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
    parser.add_argument("--psnr-images", type=int, default=2, help="images compared with plain diffusers per phase")
    parser.add_argument("--variations", type=int, default=4, help="variation jobs in the eager phase")
    parser.add_argument("--lora-rank", type=int, default=None, help="default 64 (tiny 4)")
    parser.add_argument("--dtype", default="auto", help="the engine's DTYPE (auto: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--compile-sizes", default="1,2,4",
                        help="COMPILE_BATCH_SIZES for the compiled phases (default the product's 1,2,4)")
    parser.add_argument("--compile-backend", default=None, help="default inductor (tiny: eager)")
    parser.add_argument("--extra", default="", help=f"comma-separated extra phases: {','.join(EXTRAS)} or all")
    parser.add_argument("--compile-reserve", type=float, default=None,
                        help="seconds that must be left to start a compiled phase (default 150, tiny 20)")
    parser.add_argument("--small-reserve", type=float, default=40.0)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "imagine-bench",
                        help="engine data and the inductor cache (kept: a second run reuses compiled kernels)")
    parser.add_argument("--out", type=Path, default=None)
    cfg = parser.parse_args(argv)
    if not torch.cuda.is_available():
        cfg.tiny = True
    cfg.device = "cpu" if cfg.tiny else "cuda"
    # plain diffusers as people run it: fp16 on a GPU (stock VAE upcast), fp32 on a CPU
    cfg.baseline_dtype = "float32" if cfg.tiny else "float16"
    cfg.size = cfg.size or (64 if cfg.tiny else 1024)
    cfg.lora_rank = cfg.lora_rank or (4 if cfg.tiny else 64)
    cfg.compile_backend = cfg.compile_backend or ("eager" if cfg.tiny else "inductor")
    # COMPILE=auto is off on a CPU; the tiny run compiles anyway so the phase runs its warm-up, with the other
    # CUDA-default switches forced on too (channels_last once sent every compiled variation to eager)
    cfg.default_compile = "unet" if cfg.tiny else "auto"
    cfg.cuda_defaults = {"channels_last": True, "fuse_qkv": True, "fast_fused_unet": True} if cfg.tiny else {}
    cfg.compile_reserve = cfg.compile_reserve if cfg.compile_reserve is not None else (20.0 if cfg.tiny else 150.0)
    cfg.extra = list(EXTRAS) if cfg.extra == "all" else [x for x in cfg.extra.split(",") if x]
    unknown = [x for x in cfg.extra if x not in EXTRAS]
    if unknown:
        parser.error(f"unknown --extra {', '.join(unknown)}; choose from {', '.join(EXTRAS)}")
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
