"""What switching LoRAs costs on the SSD-1B UNet (random weights, any device).

The pipeline used to switch the fast-mode LoRA on every batch; it now switches only when the set changes (and
never with FAST_FUSED_UNET). Prints the median milliseconds of ``disable_lora`` and of ``enable_lora`` +
``set_adapters`` over ``--repeat`` rounds, with a random LoRA of the LCM-LoRA's layout; and for the LoRA slot a
compiled UNet runs LoRAs through (engine/gpu/lora/slot.py, rank ``--slot-rank``): its memory and the median
milliseconds of filling it with that LoRA plus a second one of rank 32 at weight 0.5 (or with the first alone,
alternately) and turning it on.

usage: python benchmarks/bench_lora_switch.py [--dtype bfloat16] [--rank 64] [--slot-rank 128] [--repeat 5]
                                            [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    """Measure and print one JSON line."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.tuners.tuners_utils import BaseTunerLayer

    from benchmarks.gpu_model import CONFIGS
    from engine.gpu.lora.slot import SLOT, LoraSlot

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--slot-rank", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with torch.device(args.device):
        unet = UNet2DConditionModel.from_config(json.loads((CONFIGS / "unet.json").read_text()))
    unet = unet.to(getattr(torch, args.dtype))
    targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "time_emb_proj"]
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=targets), adapter_name="lcm")
    off, on = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        unet.disable_lora()
        off.append(time.perf_counter() - started)
        started = time.perf_counter()
        unet.enable_lora()
        unet.set_adapters(["lcm"], weights=[1.0])
        on.append(time.perf_counter() - started)
    unet.add_adapter(LoraConfig(r=32, lora_alpha=32, target_modules=targets[:4]), adapter_name="style")
    slot = LoraSlot.build(unet, args.slot_rank)
    assert slot is not None
    slot_bytes = sum(p.numel() * p.element_size() for name, p in unet.named_parameters() if f".{SLOT}." in name)
    fills = []
    for i in range(args.repeat * 2):
        want = [("lcm", 1.0), ("style", 0.5)] if i % 2 == 0 else [("lcm", 1.0)]
        started = time.perf_counter()
        slot.fill(want)
        slot.turn_on()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        fills.append(time.perf_counter() - started)
    print(json.dumps({"lora_layers": sum(isinstance(m, BaseTunerLayer) for m in unet.modules()),
                      "disable_ms": round(statistics.median(off) * 1000, 1),
                      "enable_and_set_ms": round(statistics.median(on) * 1000, 1),
                      "slot_layers": len(slot.layers), "slot_mb": round(slot_bytes / 2**20, 1),
                      "slot_fill_and_on_ms": round(statistics.median(fills) * 1000, 1), **vars(args)}))


if __name__ == "__main__":
    main()
