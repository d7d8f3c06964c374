"""``python -m engine``: one-off generation and model download from a shell.

    python -m engine generate --prompt TEXT --out FILE [--negative TEXT] [--seed N] [--steps N]
                              [--guidance X] [--width W --height H] [--scheduler NAME] [--fast]
    python -m engine download
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from pathlib import Path

log = logging.getLogger("engine")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="SSD-1B image engine")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate one image and write it to a file")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--out", required=True, type=Path, help="output file (.png keeps the parameters, "
                                                              ".webp/.jpg also work)")
    gen.add_argument("--negative", default=None, help="negative prompt (default: DEFAULT_NEGATIVE_PROMPT)")
    gen.add_argument("--seed", type=int, default=None, help="0..4294967295; random when absent")
    gen.add_argument("--steps", type=int, default=None)
    gen.add_argument("--guidance", type=float, default=None)
    gen.add_argument("--width", type=int, default=None)
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("--scheduler", default=None)
    gen.add_argument("--fast", action="store_true", help="LCM-LoRA fast mode (FAST_STEPS steps, guidance 1)")
    sub.add_parser("download", help="prefetch MODEL_ID (and VAE_ID, FAST_LORA_ID) into the Hugging Face cache")
    back = sub.add_parser("backup", help="copy the job store (consistently, while the service runs) and the keys "
                                         "under DATA_DIR into a folder")
    back.add_argument("target", type=Path, help="the folder to write (created, mode 700)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from engine.engine_settings import SettingsError, load_engine_settings

    try:
        settings = load_engine_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "download":
        return _download(settings)
    if args.command == "backup":
        from engine.jobs.backup import backup

        try:
            written = backup(settings.data_dir, settings.db_path, args.target)
        except (OSError, sqlite3.Error) as exc:
            print(f"error: the backup failed: {exc}", file=sys.stderr)
            return 1
        print("\n".join(f"wrote {path}" for path in written))
        print(f"results: rsync -a {settings.results_dir}/ {args.target}/results/")
        return 0
    return _generate(settings, args)


def _generate(settings, args: argparse.Namespace) -> int:  # noqa: ANN001 - EngineSettings
    from dataclasses import replace

    from tqdm import tqdm

    from engine.gpu.model import ModelLoadError, load_fast_lora, load_model
    from engine.gpu.pipeline import ImageSpec, run_batch
    from engine.media.images import encode, png_metadata
    from engine.requests.params import Defaults, Limits, ParamError, ParamRequest, build_params
    from engine.requests.sizes import Size, SizeError

    defaults = Defaults.from_settings(settings)
    size_text = None
    limits = Limits.from_settings(settings)
    if args.width is not None or args.height is not None:
        if args.width is None or args.height is None:
            print("error: give both --width and --height", file=sys.stderr)
            return 2
        size = Size(args.width, args.height)
        try:
            size.check_free_form()
        except SizeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if size not in settings.sizes:
            print(f"warning: {size} is not one of SIZES ({', '.join(map(str, settings.sizes))}); SSD-1B was "
                  f"trained on those, so other sizes may look worse", file=sys.stderr)
            limits = replace(limits, sizes=limits.sizes + (size,))
        size_text = str(size)
    try:
        params = build_params(ParamRequest(prompt=args.prompt, negative_prompt=args.negative, size=size_text,
                                           steps=args.steps, guidance=args.guidance, seed=args.seed,
                                           scheduler=args.scheduler, fast=args.fast), defaults, limits)
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    suffix = args.out.suffix.lower()
    formats = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}
    if suffix not in formats:
        print(f"error: --out must end in .png, .webp, .jpg or .jpeg (got '{args.out.name}')", file=sys.stderr)
        return 2
    try:
        model = load_model(settings)
        if params.fast:
            load_fast_lora(model, settings.fast_lora_id)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # the same switches as the service (VAE precision, fused QKV...); a one-off run never waits for a
    # background compile, so compiled code is not used here
    from engine.gpu.acceleration import apply_accelerations

    for line in apply_accelerations(model, settings, start_warmup=False):
        log.info("%s", line)
    bar = tqdm(total=params.steps, desc="generating", unit="step", file=sys.stderr)

    def on_step(step: int, total: int, _latents: object) -> None:
        bar.update(step - bar.n)

    images = run_batch(model, [ImageSpec(params.prompt, params.negative_prompt, params.seed)], width=params.width,
                       height=params.height, steps=params.steps, guidance=params.guidance,
                       scheduler=params.scheduler, fast=params.fast, on_step=on_step)
    bar.close()
    fmt = formats[suffix]
    data = encode(images[0], fmt, pnginfo=png_metadata(params, params.seed, None) if fmt == "png" else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"seed: {params.seed}")
    print(f"wrote {args.out} ({params.width}x{params.height}, {params.steps} steps, guidance {params.guidance:g})")
    return 0


def _download(settings) -> int:  # noqa: ANN001 - EngineSettings
    from engine.gpu.model import download_model

    try:
        for line in download_model(settings):
            print(line)
    except Exception as exc:  # network errors: say what failed and what to do
        print(f"error: download failed: {exc}. Check the network (or HF_ENDPOINT / a proxy) and try again.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
