"""What LoRA batches cost under torch.compile, with the LoRA slot (engine/gpu/lora/slot.py) and without.

On the SSD-1B architecture with random weights (``--tiny``: the tiny model on the CPU, compile with dynamo's
``eager`` backend), one model loaded with two random LoRAs (ranks 64 and 32) and the default switches plus COMPILE
and LORA_SLOT_RANK, warmed up through the engine's own warm-up (batch 1), then per configuration the median
seconds per image of ``run_batch`` at the default size and steps:

- ``plain_compiled``: no LoRA, the compiled graphs (the slot is off: no LoRA matmul);
- ``lora_slot_compiled``: one LoRA, then both, through the slot on its compiled graphs;
- ``plain_eager`` and ``lora_eager``: the same with dynamo's stance forced eager (``lora_eager`` runs the LoRAs' own
  adapters, what every LoRA batch did before the slot);
- ``slot_switch_ms``: filling the slot with another set and turning it on.

Ratios: ``lora_slot_vs_eager`` (the slot's gain for a LoRA batch), ``lora_slot_vs_plain`` (what a LoRA costs on
compiled graphs). Prints JSON; ``--out`` writes it too.

usage: python benchmarks/bench_lora_slot.py [--tiny] [--repeat 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.gpu_model import build_model, cpu_name, make_settings, save_random_lora, sync  # noqa: E402


def _timed(call: Any, device: str, repeat: int) -> float:
    """The median seconds of ``call`` over ``repeat`` runs (after one untimed run)."""
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, print and (with --out) write the JSON."""
    import torch

    from engine.gpu.acceleration import apply_accelerations
    from engine.gpu.lora.switch import set_adapters
    from engine.gpu.model import load_loras
    from engine.gpu.pipeline import ImageSpec, run_batch
    from engine.requests.loras import LoraEntry

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (automatic without CUDA)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.tiny
    device, dtype = ("cuda", "bfloat16") if cuda else ("cpu", "bfloat16")
    size, steps = (1024, 25) if cuda else (64, 4)
    work = Path(tempfile.mkdtemp(prefix="bench-lora-slot-"))
    model = build_model(not cuda, device, dtype)
    sources = {}
    for name, rank in (("ink", 64), ("moss", 32)):
        save_random_lora(model.pipe.unet, work / name, rank)
        sources[name] = str(work / name)
    load_loras(model, tuple(LoraEntry(name, source) for name, source in sources.items()))
    settings = make_settings(device=device, dtype=dtype, data_dir=work / "data", sizes=f"{size}x{size}",
                             default_size=f"{size}x{size}", default_steps=steps, compile="unet",
                             compile_backend="inductor" if cuda else "eager", compile_batch_sizes="1",
                             channels_last=cuda, fuse_qkv=cuda, lora_slot_rank=128)
    started = time.perf_counter()
    lines = apply_accelerations(model, settings)
    assert model.accel.compiler.wait(900), model.accel.compiler.describe()
    warm_s = time.perf_counter() - started

    def batch(loras: tuple = ()) -> Any:
        return lambda: run_batch(model, [ImageSpec("a lighthouse at dusk", "", 7)], width=size, height=size,
                                 steps=steps, guidance=9.0, scheduler="euler", loras=loras)

    one, both = (("ink", 1.0),), (("ink", 1.0), ("moss", 0.5))
    res: dict[str, Any] = {"device": torch.cuda.get_device_name() if cuda else cpu_name(), "dtype": dtype,
                           "size": size, "steps": steps, "warm_up_s": round(warm_s, 1),
                           "compile": model.accel.compiler.describe(),
                           "slot": next((x for x in lines if x.startswith("LORA_SLOT_RANK")), None)}
    res["plain_compiled_s"] = _timed(batch(), device, args.repeat)
    res["lora_slot_compiled_s"] = _timed(batch(one), device, args.repeat)
    res["two_loras_slot_compiled_s"] = _timed(batch(both), device, args.repeat)
    unet = model.accel.routers[0]
    res["calls"] = dict(unet.calls)
    switches = []
    for i in range(args.repeat * 2):
        started = time.perf_counter()
        set_adapters(model, False, both if i % 2 else one, (size, size, 2))
        sync(device)
        switches.append(time.perf_counter() - started)
    res["slot_switch_ms"] = round(statistics.median(switches) * 1000, 1)
    torch.compiler.set_stance("force_eager")
    try:
        res["plain_eager_s"] = _timed(batch(), device, args.repeat)
        model.lora_slot, slot = None, model.lora_slot  # the LoRAs' own adapters, as every LoRA batch before the slot
        res["lora_eager_s"] = _timed(batch(one), device, args.repeat)
        model.lora_slot = slot
    finally:
        torch.compiler.set_stance("default")
    res["ratios"] = {"lora_slot_vs_eager": round(res["lora_eager_s"] / res["lora_slot_compiled_s"], 3),
                     "lora_slot_vs_plain": round(res["lora_slot_compiled_s"] / res["plain_compiled_s"], 3),
                     "compiled_vs_eager_plain": round(res["plain_eager_s"] / res["plain_compiled_s"], 3)}
    for key in [k for k in res if k.endswith("_s") and k != "warm_up_s"]:
        res[key] = round(res[key], 4)
    text = json.dumps(res, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
