"""Measured effect of each performance switch on the CPU, with the real SSD-1B architecture.

The GPU figures come from bench_gpu.py; this script answers "what does each switch do on a CPU
host" (DEVICE=cpu is a supported deployment) with the full-size UNet, VAE and text encoders built
from benchmarks/configs/ with random weights. Every variant goes through the engine's own code:
``apply_accelerations`` with the switch set in EngineSettings, then ``run_batch``. Each variant
gets a fresh copy of the same UNet and VAE, so the baseline and the switch differ only by the
switch, and the baseline runs in the same process.

Measured per variant: seconds per image (median of ``--calls`` timed calls after one warm-up call)
and the peak resident memory the call added (Linux VmHWM, reset before each call). The VAE switches
are measured on a decode of their own (a batch at ``--vae-size``; tiling at ``--tile-size``), where
they act. Image sizes are small because a 2-core CPU takes minutes per 1024^2 image; shapes, not
weights, decide the relative effects, but CPU ratios say nothing about GPU speed.

usage: python benchmarks/bench_switches_cpu.py [--size 128] [--steps 4] [--batch 2] [--out FILE]
Prints one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gpu import NEGATIVE, build_ssd1b, cpu_name, prompts, report, save_random_lora  # noqa: E402

from benchmarks.gpu_model import make_settings  # noqa: E402


class PeakRss:
    """Peak resident memory added by a block, from /proc/self/status (Linux)."""

    @staticmethod
    def _field(name: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{name} missing from /proc/self/status")

    def __enter__(self) -> PeakRss:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # 5 = reset the peak (VmHWM) to the current RSS
        self.before = self._field("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.added_GiB = round((self._field("VmHWM") - self.before) / 2**30, 3)


def variant(pristine: Any, dtype_name: str, lora_dir: Path | None, data_dir: Path, **switches: Any) -> Any:
    """A LoadedModel with fresh copies of the pristine UNet/VAE and ``switches`` applied by the engine."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from engine.gpu.acceleration import apply_accelerations
    from engine.gpu.model import DeviceChoice, LoadedModel, load_fast_lora

    dtype = getattr(torch, dtype_name)
    same = dtype == pristine.unet.dtype

    def part(module: Any) -> Any:
        return copy.deepcopy(module) if same else copy.deepcopy(module).to(dtype)

    te1 = pristine.text_encoder if same else part(pristine.text_encoder)
    te2 = pristine.text_encoder_2 if same else part(pristine.text_encoder_2)
    pipe = StableDiffusionXLPipeline(vae=part(pristine.vae), text_encoder=te1, text_encoder_2=te2,
                                     tokenizer=pristine.tokenizer, tokenizer_2=pristine.tokenizer_2,
                                     unet=part(pristine.unet),
                                     scheduler=EulerDiscreteScheduler.from_config(pristine.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    model = LoadedModel(pipe=pipe, model_id="random-weights:ssd-1b", choice=DeviceChoice("cpu", dtype_name),
                        base_scheduler_config=dict(pipe.scheduler.config), load_seconds=0.0)
    if lora_dir is not None:
        load_fast_lora(model, str(lora_dir))
    # through make_settings: EngineSettings alone silently drops the switches (they live in AccelerationSettings)
    settings = make_settings(device="cpu", dtype=dtype_name, data_dir=data_dir, fast_lora_id=str(lora_dir or ""),
                             **switches)
    apply_accelerations(model, settings, start_warmup=False)
    return model


def timed_batches(model: Any, cfg: argparse.Namespace, *, fast: bool) -> dict[str, Any]:
    """run_batch at ``cfg.batch``: one warm-up call, then ``cfg.calls`` timed ones."""
    from engine.gpu.pipeline import ImageSpec, run_batch

    steps, guidance = (cfg.fast_steps, 1.0) if fast else (cfg.steps, cfg.guidance)
    times, peaks = [], []
    for call in range(cfg.calls + 1):
        specs = [ImageSpec(p, NEGATIVE, 100 * call + i) for i, p in enumerate(prompts(cfg.batch))]
        with PeakRss() as peak:
            started = time.perf_counter()
            run_batch(model, specs, width=cfg.size, height=cfg.size, steps=steps, guidance=guidance,
                      scheduler="euler", fast=fast)
            took = time.perf_counter() - started
        if call:
            times.append(took)
            peaks.append(peak.added_GiB)
    med = statistics.median(times)
    return {"times_s": [round(t, 2) for t in times], "s_per_image": round(med / cfg.batch, 3),
            "peak_added_GiB": max(peaks)}


def timed_decode(model: Any, batch: int, size: int, calls: int) -> dict[str, Any]:
    """The VAE decode of ``batch`` latents for ``size``^2 images, as the pipeline calls it."""
    import torch

    vae = model.pipe.vae
    latents = torch.randn(batch, vae.config.latent_channels, size // 8, size // 8, dtype=vae.dtype)
    times, peaks = [], []
    for _ in range(calls):
        with PeakRss() as peak, torch.inference_mode():
            started = time.perf_counter()
            vae.decode(latents / vae.config.scaling_factor, return_dict=False)
            took = time.perf_counter() - started
        times.append(took)
        peaks.append(peak.added_GiB)
    return {"batch": batch, "size": size, "times_s": [round(t, 2) for t in times],
            "s_per_image": round(statistics.median(times) / batch, 3), "peak_added_GiB": max(peaks)}


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    import diffusers
    import torch

    torch.manual_seed(0)
    res: dict[str, Any] = {
        "benchmark": "bench_switches_cpu", "date": time.strftime("%Y-%m-%d"), "device": cpu_name(),
        "cores": torch.get_num_threads(), "torch": torch.__version__, "diffusers": diffusers.__version__,
        "python": platform.python_version(), "size": cfg.size, "steps": cfg.steps, "guidance": cfg.guidance,
        "batch": cfg.batch, "fast_steps": cfg.fast_steps, "lora_rank": cfg.lora_rank, "variants": {},
    }
    out = res["variants"]
    started = time.perf_counter()
    pristine = build_ssd1b("cpu", torch.float32)
    res["build_s"] = round(time.perf_counter() - started, 1)
    data = cfg.data_dir

    def measure(name: str, what: Callable[[Any], dict[str, Any]], dtype: str = "float32",
                lora: Path | None = None, **switches: Any) -> None:
        if cfg.only and name not in cfg.only:
            return
        t0 = time.perf_counter()
        model = variant(pristine, dtype, lora, data / name, **switches)
        value = what(model)
        value["switches"] = {k.upper(): v for k, v in switches.items()} | ({"DTYPE": dtype} if dtype != "float32"
                                                                            else {})
        value["wall_s"] = round(time.perf_counter() - t0, 1)
        out[name] = value
        print(f"{name}: {json.dumps(value)}", file=sys.stderr, flush=True)
        del model
        gc.collect()

    def gen(model: Any) -> dict[str, Any]:
        return timed_batches(model, cfg, fast=False)

    def gen_fast(model: Any) -> dict[str, Any]:
        return timed_batches(model, cfg, fast=True)

    def decode(model: Any) -> dict[str, Any]:
        return timed_decode(model, cfg.vae_batch, cfg.vae_size, cfg.calls)

    def decode_big(model: Any) -> dict[str, Any]:
        return timed_decode(model, 1, cfg.tile_size, 1)

    measure("baseline", gen)
    measure("channels_last", gen, channels_last=True)
    measure("fuse_qkv", gen, fuse_qkv=True)
    measure("channels_last+fuse_qkv", gen, channels_last=True, fuse_qkv=True)
    measure("bfloat16", gen, dtype="bfloat16")
    measure("vae_decode", decode)
    measure("vae_decode+vae_slicing", decode, vae_slicing=True)
    if cfg.tile_size:
        measure("vae_decode_large", decode_big)
        measure("vae_decode_large+vae_tiling", decode_big, vae_tiling=True)
    if not cfg.only or any(n.startswith("fast") for n in cfg.only):
        lora_dir = data / "lora"
        res["lora"] = save_random_lora(pristine.unet, lora_dir, cfg.lora_rank)
        measure("fast_lora", gen_fast, lora=lora_dir)
        measure("fast_fused_unet", gen_fast, lora=lora_dir, fast_fused_unet=True)
    res["ratios_vs_baseline"] = ratios(out)
    res["total_s"] = round(time.perf_counter() - started, 1)
    return res


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """Time and peak-memory ratios of each variant against its own baseline."""
    pairs = {"channels_last": "baseline", "fuse_qkv": "baseline", "channels_last+fuse_qkv": "baseline",
             "bfloat16": "baseline", "vae_decode+vae_slicing": "vae_decode",
             "vae_decode_large+vae_tiling": "vae_decode_large", "fast_fused_unet": "fast_lora"}
    result = {}
    for name, base in pairs.items():
        if name in out and base in out:
            a, b = out[name], out[base]
            result[f"{name} / {base}"] = {
                "time": round(a["s_per_image"] / b["s_per_image"], 3),
                "peak": round(a["peak_added_GiB"] / b["peak_added_GiB"], 3) if b["peak_added_GiB"] > 0 else None}
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image side for generation (default 128)")
    parser.add_argument("--steps", type=int, default=4, help="Euler steps per image (default 4)")
    parser.add_argument("--guidance", type=float, default=9.0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2, help="timed calls per variant after a warm-up call")
    parser.add_argument("--fast-steps", type=int, default=4)
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--vae-size", type=int, default=512, help="image side of the VAE decode measurement")
    parser.add_argument("--vae-batch", type=int, default=2)
    parser.add_argument("--tile-size", type=int, default=0,
                        help="image side of a lone decode with and without VAE_TILING (0 = skip; tiling acts "
                             "above 1024)")
    parser.add_argument("--only", nargs="*", default=[], help="run only these variants")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    cfg = parser.parse_args(argv)
    return cfg


def main(argv: list[str] | None = None) -> None:
    """Run every variant and print the JSON."""
    cfg = parse(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.data_dir = cfg.data_dir or Path(tmp)
        res = run(cfg)
    report(res, cfg.out, "ratios_vs_baseline")


if __name__ == "__main__":
    main()
