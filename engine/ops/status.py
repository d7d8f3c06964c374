"""The status snapshot that /status and the panel's Status tab show."""

from __future__ import annotations

from dataclasses import dataclass

from engine.gpu.model import LoadedModel


@dataclass(frozen=True)
class WorkerInfo:
    """One remote GPU worker, from its latest heartbeat."""

    name: str
    device: str
    dtype: str
    state: str  # loading | ready | failed
    error: str | None
    slots: int
    busy: int
    fast: bool
    seconds_per_image: float | None
    seen_seconds_ago: float
    models: tuple[str, ...] = ()  # the models it has loaded (MODEL_SLOTS), least recently used first


@dataclass(frozen=True)
class EngineStatus:
    """What /status and the panel's status tab show."""

    model_id: str
    model_state: str  # loading | ready | failed
    model_error: str | None
    device: str | None
    dtype: str | None
    fast_available: bool
    queued: int
    running: int
    jobs_last_hour: int
    seconds_per_image: float | None
    uptime_seconds: float
    gpu_memory: str | None
    accelerations: tuple[str, ...] = ()  # engine/gpu/acceleration.py: switches applied, compile warm-up state
    remote: bool = False  # jobs run on GPU workers over NATS (NATS_URL)
    workers: tuple[WorkerInfo, ...] = ()  # the live ones, with NATS_URL
    safety: str | None = None  # the image safety classifier (SAFETY_MODEL_ID); None: off
    nsfw_threshold: float = 0.5  # the deployment's NSFW threshold (servers may set their own)
    models: tuple[str, ...] = ()  # the offered models (MODELS), the default first
    loaded: tuple[str, ...] = ()  # those loaded in this process now (in-process worker; workers say their own)
    loras: tuple[str, ...] = ()  # the offered LoRAs (LORAS)


def gpu_memory(model: LoadedModel | None) -> str | None:
    """``x GiB allocated of y GiB`` on CUDA, else None."""
    if model is None or not model.choice.device.startswith("cuda"):
        return None
    import torch

    device = torch.device(model.choice.device)
    used = torch.cuda.memory_allocated(device) / 2**30
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    return f"{used:.1f} GiB allocated of {total:.0f} GiB"


def gpu_bytes(model: LoadedModel | None) -> tuple[int, int] | None:
    """(allocated, total) bytes of the model's CUDA device, else None."""
    if model is None or not model.choice.device.startswith("cuda"):
        return None
    import torch

    device = torch.device(model.choice.device)
    return int(torch.cuda.memory_allocated(device)), int(torch.cuda.get_device_properties(device).total_memory)
