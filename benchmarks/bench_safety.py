"""What image safety (SAFETY_MODEL_ID) costs per image, against the WebP delivery copy every image already gets.

The classifier is the architecture of Falconsai/nsfw_image_detection (ViT-base, patch 16, 224x224 input,
86 M parameters) with random weights (timing does not depend on weight values), saved with its image
processor and loaded through the engine's own ``engine.gpu.safety.load_checker`` (transformers' pipeline), so
the measured path is the product's: resize and normalise 1024x1024 results, one batched forward pass, the
softmax. On CUDA it runs in float16 like the engine; on the CPU in float32.

Prints JSON (``--out FILE`` writes it) and a one-line summary of the ratios on stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def photo_like(size: int, seed: int) -> Any:
    """A smooth random picture (gradients plus a little noise), the size of a result."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(x * rng.uniform(2, 9) + y * rng.uniform(2, 9) + rng.uniform(0, 6)) for _ in range(3)]
    image = (np.stack(channels, axis=-1) + 1) * 110 + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype("uint8"))


def build_classifier(out: Path) -> Path:
    """Falconsai/nsfw_image_detection's architecture with random weights, and its image processor."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    torch.manual_seed(0)
    config = ViTConfig(id2label={0: "normal", 1: "nsfw"}, label2id={"normal": 0, "nsfw": 1})
    ViTForImageClassification(config).save_pretrained(out, safe_serialization=True)
    ViTImageProcessorPil(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3) \
        .save_pretrained(out)
    return out


def median_seconds(fn: Any, repeats: int, sync: Any) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    """Time loading, preprocessing, and scoring at each batch size, and the WebP baseline."""
    import torch

    from engine.gpu.model import DeviceChoice
    from engine.gpu.safety import load_checker
    from engine.media.images import encode

    cuda = torch.cuda.is_available()
    choice = DeviceChoice("cuda", "float16") if cuda else DeviceChoice("cpu", "float32")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_classifier(Path(tmp) / "classifier")
        start = time.perf_counter()
        checker = load_checker(str(model_dir), ("nsfw",), choice)
        load_s = time.perf_counter() - start
    images = [photo_like(cfg.size, i) for i in range(max(cfg.batches))]
    processor = checker.classify.image_processor
    per_image: dict[str, float] = {}
    for batch in cfg.batches:
        chunk = images[:batch]
        per_image[f"score_batch{batch}"] = median_seconds(lambda c=chunk: checker.score(c), cfg.repeats, sync) / batch
    per_image["preprocess"] = median_seconds(lambda: processor(images[:1], return_tensors="pt"), cfg.repeats, sync)
    webp = median_seconds(lambda: encode(images[0], "webp", 90), cfg.repeats, sync)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "dtype": choice.dtype_name, "threads": torch.get_num_threads(), "image_size": cfg.size,
        "load_seconds": round(load_s, 3),
        "seconds_per_image": {k: round(v, 4) for k, v in per_image.items()},
        "baseline_webp_copy_seconds": round(webp, 4),
        "ratios_to_webp_copy": {k: round(v / webp, 2) for k, v in per_image.items()},
    }
    if cuda:
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return result


def main(argv: list[str] | None = None) -> None:
    """Run and print the JSON; ``--out`` also writes it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="result side in pixels (SSD-1B's default 1024)")
    parser.add_argument("--batches", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4],
                        help="batch sizes to score at, comma-separated (MAX_BATCH is 4 by default)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    cfg = parser.parse_args(argv)
    result = run(cfg)
    text = json.dumps(result, indent=2)
    print(text)
    if cfg.out:
        cfg.out.write_text(text + "\n")
    ratios = ", ".join(f"{k} {v}x" for k, v in result["ratios_to_webp_copy"].items())
    print(f"image safety on {result['device']} ({result['dtype']}), per image against the WebP copy: {ratios}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
