"""``python -m imagine doctor``: what an operator checks before the first start, each with what to do.

Every check returns ok, warn (it runs, but not as well as it could) or fail (it will not run); the exit code
is 1 when one fails, which stops scripts/serve.sh before it starts the service. Secrets are never shown.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from engine.engine_settings import SettingsError
from imagine.settings import load_settings

GIB = 1024**3
MODEL_DISK_GIB = 9.0  # segmind/SSD-1B with both text encoders in the Hub's cache (fp32 and fp16 files)
# peak GPU memory at 1024², half precision, all components resident: 9.2 / 23.5 / 42.5 GiB at batch 1 / 4 / 8,
# measured on an H200 (../shared/reference/ssd-1b/README.md); weights ~4.5 GiB, the rest grows with the batch
WEIGHTS_GIB, PER_IMAGE_GIB = 4.5, 4.75


@dataclass(frozen=True)
class Check:
    """One finding: its status, what was seen, and what to do about it."""

    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DeviceReport:
    """One CUDA device as torch sees it."""

    name: str
    total_bytes: int
    free_bytes: int
    cuda_version: str


def torch_devices() -> list[DeviceReport]:
    """Every CUDA device torch can use (none on a CPU box)."""
    import torch

    if not torch.cuda.is_available():
        return []
    reports = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        reports.append(DeviceReport(torch.cuda.get_device_name(index), total, free, torch.version.cuda or "?"))
    return reports


def vram_needed_gib(max_batch: int, width: int, height: int) -> float:
    """GPU memory one worker needs for MAX_BATCH images at the largest size (half precision)."""
    return WEIGHTS_GIB + PER_IMAGE_GIB * max_batch * (width * height) / (1024 * 1024)


def check_python() -> list[Check]:
    """Python's version, and whether it runs from a virtual environment."""
    version = ".".join(map(str, sys.version_info[:3]))
    checks = [Check("python", "ok" if sys.version_info >= (3, 10) else "fail", f"Python {version}",
                    "" if sys.version_info >= (3, 10) else "install Python 3.10 or newer")]
    in_venv = sys.prefix != sys.base_prefix
    checks.append(Check("venv", "ok" if in_venv else "warn", sys.prefix if in_venv else "not in a virtual environment",
                        "" if in_venv else "run scripts/setup-venv.sh (Debian/Ubuntu: apt install python3-venv first)"))
    return checks


def check_gpu(devices: list[DeviceReport], device: str, max_batch: int, largest: tuple[int, int]) -> Check:
    """The GPU DEVICE picks, and whether its free memory holds MAX_BATCH images at the largest size."""
    if device == "cpu" or (device == "auto" and not devices):
        return Check("gpu", "warn", "no CUDA GPU: images are made on the CPU, minutes each",
                     "on a GPU host install the NVIDIA driver and a CUDA build of torch")
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    if index >= len(devices):
        return Check("gpu", "fail", f"DEVICE={device} but torch sees {len(devices)} CUDA device(s)",
                     "check nvidia-smi and the driver, or set DEVICE to an existing one (cuda:0) or auto")
    gpu = devices[index]
    need = vram_needed_gib(max_batch, *largest)
    detail = (f"{gpu.name}, CUDA {gpu.cuda_version}, {gpu.free_bytes / GIB:.1f} of {gpu.total_bytes / GIB:.1f} GiB "
              f"free; MAX_BATCH={max_batch} at {largest[0]}x{largest[1]} needs about {need:.1f} GiB")
    if gpu.free_bytes / GIB >= need:
        return Check("gpu", "ok", detail)
    return Check("gpu", "fail" if gpu.free_bytes / GIB < vram_needed_gib(1, *largest) else "warn", detail,
                 "lower MAX_BATCH (or SIZES), set FP16_VAE=true, or free the GPU (nvidia-smi shows who holds it)")


def check_model(model_id: str, cache_dir: Path, reachable: Callable[[], bool]) -> list[Check]:
    """The model is a local directory, in the Hub's cache, or reachable with room on disk for it."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        ok = (local / "model_index.json").is_file()
        return [Check("model", "ok" if ok else "fail", f"local directory {local}",
                      "" if ok else "MODEL_ID must be a diffusers folder (with model_index.json)")]
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    if model_id.startswith(("/", ".", "~")):
        return [Check("model", "fail", f"MODEL_ID {model_id} is no folder here",
                      "correct the path, or set MODEL_ID to a Hub id such as segmind/SSD-1B")]
    try:
        cached = try_to_load_from_cache(model_id, "model_index.json")
    except HFValidationError:
        return [Check("model", "fail", f"MODEL_ID {model_id} is neither a folder nor a Hub id",
                      "set MODEL_ID to a Hub id (owner/name) or a diffusers folder")]
    if isinstance(cached, str):
        return [Check("model", "ok", f"{model_id} is in the cache")]
    checks = []
    free = shutil.disk_usage(_existing(cache_dir)).free / GIB
    checks.append(Check("disk", "ok" if free >= MODEL_DISK_GIB else "fail",
                        f"{free:.1f} GiB free under {cache_dir}; the model needs about {MODEL_DISK_GIB:.0f} GiB",
                        "" if free >= MODEL_DISK_GIB else "free disk space, or set HF_HOME to a larger disk"))
    if reachable():
        checks.append(Check("model", "ok", f"{model_id} is not cached yet; it downloads on the first start"))
    else:
        checks.append(Check("model", "fail", f"{model_id} is not cached and huggingface.co cannot be reached",
                            "allow HTTPS to huggingface.co, or download it elsewhere and set MODEL_ID to its folder"))
    return checks


def check_token(token: str | None) -> Check:
    """DISCORD_TOKEN's shape (three dot-separated parts, the first the bot's id); the token is never shown."""
    if not token:
        return Check("discord", "warn", "DISCORD_TOKEN is not set: only the admin panel runs",
                     "Discord developer portal, Bot tab, Reset Token; put it in .env as DISCORD_TOKEN")
    parts = token.split(".")
    try:
        bot_id = base64.b64decode(parts[0] + "=" * (-len(parts[0]) % 4)).decode()
        shaped = len(parts) == 3 and bot_id.isdigit()
    except ValueError:
        shaped = False
    if not shaped:
        return Check("discord", "fail", "DISCORD_TOKEN does not look like a bot token",
                     "copy the token again from the Bot tab (not the client secret or the public key)")
    return Check("discord", "ok", f"DISCORD_TOKEN is shaped like the token of bot {bot_id}")


def check_port(what: str, host: str, port: int) -> Check:
    """Nothing else listens where the service will."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Check(what, "fail", f"{host}:{port} is taken ({exc.strerror})",
                         f"stop what listens there (ss -ltnp 'sport = :{port}'), or choose another port")
    return Check(what, "ok", f"{host}:{port} is free")


def check_nats(url: str) -> Check:
    """Each NATS server of NATS_URL answers on its port."""
    for part in url.split(","):
        parsed = urlsplit(part.strip())
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as exc:
            return Check("nats", "fail", f"{host}:{port} does not answer ({exc})",
                         "start it (scripts/nats-server.sh) or correct NATS_URL")
    return Check("nats", "ok", f"{len(url.split(','))} server(s) answer")


def check_data_dir(data_dir: Path) -> Check:
    """DATA_DIR can be created and written, and others cannot read it."""
    target = data_dir if data_dir.exists() else _existing(data_dir)
    if not os.access(target, os.W_OK | os.X_OK):
        return Check("data_dir", "fail", f"{target} is not writable by this user",
                     "chown it to this user, or set DATA_DIR to a folder this user owns")
    if data_dir.exists() and data_dir.stat().st_mode & 0o077:
        return Check("data_dir", "warn", f"{data_dir} is readable by other users (mode "
                                         f"{data_dir.stat().st_mode & 0o777:o})",
                     f"chmod 700 {data_dir} (the service also tightens it on start)")
    return Check("data_dir", "ok", f"{data_dir} is private and writable")


def _existing(path: Path) -> Path:
    path = path.expanduser().resolve()
    while not path.exists():
        path = path.parent
    return path


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def run_checks(*, devices: Callable[[], list[DeviceReport]] = torch_devices,
               hub_reachable: Callable[[], bool] = _hub_reachable) -> list[Check]:
    """Every check, with the settings read from the environment and .env as the service reads them."""
    checks = check_python()
    try:
        settings = load_settings()
    except SettingsError as exc:
        return [*checks, Check("settings", "fail", str(exc), "correct that variable in .env")]
    checks.append(Check("settings", "ok", ".env and the environment are valid"))
    engine, admin = settings.engine, settings.admin
    largest = max(engine.sizes, key=lambda s: s.width * s.height)
    checks.append(check_gpu(devices(), engine.device, engine.max_batch, (largest.width, largest.height)))
    cache = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    checks += check_model(engine.model_id, cache, hub_reachable)
    token = settings.bot.discord_token
    checks.append(check_token(token.get_secret_value() if token else None))
    checks.append(check_port("admin_port", admin.host, admin.port))
    if admin.metrics_port:
        checks.append(check_port("metrics_port", admin.metrics_host, admin.metrics_port))
    if engine.remote.nats_url:
        checks.append(check_nats(engine.remote.nats_url))
    checks.append(check_data_dir(engine.data_dir))
    return checks


def report(checks: list[Check]) -> tuple[str, int]:
    """The checks as text, and the exit code (1 when one failed)."""
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for c in checks:
        lines.append(f"{marks[c.status]} {c.name}: {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"     -> {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append(f"{failed} problem(s) to fix before starting" if failed else "ready to start")
    return "\n".join(lines), 1 if failed else 0
