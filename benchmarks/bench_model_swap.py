"""What a model swap (MODELS, MODEL_SLOTS) and a LoRA-set switch (LORAS) cost, through the engine's own code.

Two pipelines of SSD-1B's architecture with random weights (benchmarks/configs/) are written to disk in diffusers
format in fp16 (the weights a GPU host downloads); two random LoRAs of ``--rank`` on the attention and feed-forward
layers too.
Then, in one process, through the worker's loader (``default_loader``: from_pretrained, fast-mode LoRA off, LORAS,
the switches) and its ``ModelPool``:

- ``load_default_s``: the first load (the baseline: what a start costs);
- ``swap_s``: ``pool.get("other")`` with MODEL_SLOTS=1 after the default, then ``trim`` (load + unload);
- ``swap_back_s``: the default is kept: getting it again costs nothing;
- ``lora_switch_ms``: the median of ``set_adapters`` between {a}, {b}, {a, b} and none, the pipeline's own switch;
- ratios: a swap against the first load, a LoRA switch against a swap.

A GPU adds the host-to-device copy of 2.7 GB of fp16 weights to a swap (about 0.1-0.2 s at 12-25 GB/s) on top of
the disk read and deserialisation measured here; LoRA switches walk Python objects and cost about the same.

usage: python benchmarks/bench_model_swap.py [--rank 64] [--repeat 5] [--dir /tmp/swap] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_models(root: Path, rank: int) -> dict[str, str]:
    """Two random SSD-1B pipelines and two random LoRAs under ``root``; their sources by name."""
    import torch

    from benchmarks.gpu_model import build_ssd1b, save_random_lora

    sources = {}
    for name, seed in (("base", 0), ("other", 1)):
        target = root / name
        if not (target / "model_index.json").exists():
            pipe = build_ssd1b("cpu", torch.float16, seed=seed)
            pipe.save_pretrained(target, safe_serialization=True)  # fp16 weights, no variant: found on a CPU too
            if name == "base":
                for lora, lora_seed in (("a", 3), ("b", 4)):
                    torch.manual_seed(lora_seed)
                    save_random_lora(pipe.unet, root / f"lora-{lora}", rank)
            del pipe
        sources[name] = str(target)
    return sources


def main(argv: list[str] | None = None) -> None:
    """Measure, print the JSON, and write it to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "imagine-bench-swap")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from engine.engine_settings import EngineSettings
    from engine.gpu.local_worker import default_loader
    from engine.gpu.model_pool import ModelPool
    from engine.gpu.lora.switch import set_adapters

    args.dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sources = write_models(args.dir, args.rank)
    written = time.perf_counter() - started
    settings = EngineSettings(_env_file=None, device="cpu", dtype="float32", fast_lora_id="", model_slots=1,
                              models=f"base={sources['base']}, other={sources['other']}",
                              loras=f"a={args.dir / 'lora-a'}, b={args.dir / 'lora-b'}")
    pool = ModelPool(settings, default_loader)
    started = time.perf_counter()
    model = pool.load_default()
    load_default = time.perf_counter() - started

    sets = [(("a", 1.0),), (("b", 0.8),), (("a", 1.0), ("b", 0.8)), ()]
    switches = []
    for _ in range(args.repeat):
        for chosen in sets:
            started = time.perf_counter()
            set_adapters(model, False, chosen)
            switches.append(time.perf_counter() - started)

    swaps = []
    for _ in range(max(1, args.repeat // 2)):
        started = time.perf_counter()
        pool.get("other")
        pool.trim()
        swaps.append(time.perf_counter() - started)
    started = time.perf_counter()
    pool.get("base")
    swap_back = time.perf_counter() - started

    lora_ms = statistics.median(switches) * 1000
    swap = statistics.median(swaps)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, CPU",
        "date": time.strftime("%Y-%m-%d"), "device": "cpu", "dtype": "float32 (fp16 files)",
        "write_models_s": round(written, 1), "load_default_s": round(load_default, 2),
        "swap_s": round(swap, 2), "swaps": [round(s, 2) for s in swaps], "swap_back_s": round(swap_back, 4),
        "lora_layers_per_adapter": sum(name.endswith("lora_A.lora-a") for name, _ in model.pipe.unet.named_modules()),
        "lora_switch_ms": round(lora_ms, 1), "lora_switch_max_ms": round(max(switches) * 1000, 1),
        "ratios": {"swap_vs_first_load": round(swap / load_default, 2),
                   "lora_switch_vs_swap": round(lora_ms / 1000 / swap, 4)},
        "args": {"rank": args.rank, "repeat": args.repeat},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
