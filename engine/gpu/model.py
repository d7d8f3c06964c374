"""Loading SSD-1B (or any SDXL pipeline in diffusers format): device, precision, schedulers, LoRA.

Nothing here runs a generation (engine/gpu/pipeline.py does) or knows about acceleration switches
(engine/gpu/acceleration.py works on a LoadedModel; this module does not import it).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.engine_settings import EngineSettings
from engine.requests.loras import LoraEntry, adapter_name

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_HALF = ("float16", "bfloat16")


class Accelerator(Protocol):
    """What the engine needs from the speed switches applied to a model (engine.gpu.acceleration.Acceleration).

    A protocol, so this module need not import engine.gpu.acceleration (which imports this one).
    """

    def status_lines(self) -> list[str]:
        """One line per switch plus the live compile state."""
        ...

    def close(self) -> None:
        """Stop background work (the compile warm-up)."""
        ...


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the model and what to do."""


@dataclass(frozen=True)
class DeviceChoice:
    """Where the pipeline runs and in which precision."""

    device: str
    dtype_name: str

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype object."""
        import torch

        return getattr(torch, self.dtype_name)


def choose_device(device: str, dtype: str = "auto") -> DeviceChoice:
    """Resolve ``DEVICE``/``DTYPE``: ``auto`` picks CUDA, then MPS, then CPU; bf16 on CUDA, fp16 on MPS, fp32 on CPU.

    bfloat16 on CUDA: it has float32's range, so the stock SDXL VAE decodes without the fp32 upcast
    that float16 needs (H200: 0.900 vs 0.974 s/image at batch 1), at no cost in speed elsewhere.
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"DEVICE={device} but CUDA is not available here; set DEVICE=auto or DEVICE=cpu")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("DEVICE=mps but MPS is not available here; set DEVICE=auto or DEVICE=cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32" if device == "cpu" else "float16"
    return DeviceChoice(device, dtype)


def _is_local(model_id: str) -> bool:
    return os.path.isdir(model_id) or model_id.startswith((".", "/", "~")) or os.sep in model_id.strip("/").replace(
        "/", "", 1)


def _has_fp16_variant(path: Path) -> bool:
    return any(".fp16." in p.name for p in path.rglob("*.safetensors"))


def hub_load_hint(model_id: str) -> str:
    """The advice for a model that could not be fetched."""
    return (
        f"could not load the model '{model_id}': it is not in the local Hugging Face cache and the Hub "
        f"could not be reached. Run `python -m engine download` on a machine with network access (it fills "
        f"the cache under HF_HOME), or set MODEL_ID to a local directory in diffusers format."
    )


@dataclass
class LoadedModel:
    """The pipeline plus what the status views show about it."""

    pipe: Any
    model_id: str
    choice: DeviceChoice
    base_scheduler_config: dict[str, Any]
    load_seconds: float
    schedulers: dict[str, Any] = field(default_factory=dict)
    fast_adapter: str | None = None
    accel: Accelerator | None = None  # set by engine.gpu.acceleration.apply_accelerations
    img2img: Any = None  # the image-to-image view of ``pipe``, made on the first variation
    inpaint: Any = None  # its inpainting view, made on the first canvas edit (engine/media/canvas.py)
    # FAST_FUSED_UNET: ``pipe`` with the LoRA-merged UNet, for fast batches (and its two views)
    fast_pipe: Any = None
    fast_img2img: Any = None
    fast_inpaint: Any = None
    fast_vae: Any = None  # FAST_VAE_ID: a tiny autoencoder that decodes fast-mode batches
    upcast_vae: Any = None  # a private float32 copy of the VAE, for float16 with force_upcast (engine/gpu/vae.py)
    lora_on: bool = False  # whether any adapter is on on ``pipe``'s UNet (fast mode's, the members' LoRAs)
    adapters_on: tuple[tuple[str, float], ...] = ()  # which, with their weights: switched only when it changes
    loras: dict[str, str] = field(default_factory=dict)  # name -> source of each LoRA loaded as an adapter on ``pipe``
    lora_slot: Any = None  # with COMPILE: the adapter that takes each batch's LoRAs (engine/gpu/lora/slot.py)
    # why a LoRA loaded after the accelerations would be lost or force a recompile ("": it would not); the pool then
    # loads the model again with it (engine/gpu/model_pool.py)
    lora_fixed: str = ""
    tiling: bool = False  # --tile: every convolution pads circularly during this batch (engine/gpu/pipeline.py)
    # how many times the LoRA or the tiling was switched (the compile warm-up checks it did not move)
    mode_changes: int = 0
    notes: list[str] = field(default_factory=list)  # what loading had to fall back on, for the status lines
    vae_from_id: bool = False  # the VAE came from VAE_ID (not the model's own: it may have failed to load)
    safety: Any = None  # SAFETY_MODEL_ID's engine.gpu.safety.SafetyChecker, set by the worker's loader


def load_model(settings: EngineSettings) -> LoadedModel:
    """Load ``MODEL_ID`` with diffusers' ``from_pretrained`` (hub id or local directory).

    Downloads show progress. Raises ModelLoadError with a message that says what to do.
    """
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline

    choice = choose_device(settings.device, settings.dtype)
    model_id = settings.model_id
    kwargs: dict[str, Any] = {"dtype": choice.dtype, "use_safetensors": True}
    local = _is_local(model_id)
    if local:
        path = Path(model_id).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"MODEL_ID directory '{model_id}' does not exist; point it at a diffusers "
                                 f"model directory (with model_index.json) or use a Hub id such as segmind/SSD-1B")
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"'{model_id}' has no model_index.json, so it is not a diffusers model directory; "
                                 f"save one with pipe.save_pretrained() or download segmind/SSD-1B")
        # a VAE_ID replaces the directory's own VAE
        missing = [c for c in _missing_components(path) if not (c == "vae" and settings.vae_id)]
        if missing:
            raise ModelLoadError(f"the model directory '{model_id}' is incomplete: {', '.join(missing)} (listed in "
                                 f"model_index.json) missing; copy the whole model directory again")
        if choice.dtype_name in _HALF and _has_fp16_variant(path):
            kwargs["variant"] = "fp16"  # half the download; cast to bfloat16 on load when that is the dtype
        source: str = str(path)
    else:
        if choice.dtype_name in _HALF:
            kwargs["variant"] = "fp16"
        source = model_id
    started = time.perf_counter()
    notes: list[str] = []
    if settings.vae_id:
        try:
            kwargs["vae"] = AutoencoderKL.from_pretrained(settings.vae_id, dtype=choice.dtype)
        except Exception as exc:  # the model's own VAE still works, only slower in float16
            if local and not (Path(source) / "vae").is_dir():
                raise ModelLoadError(f"could not load VAE_ID '{settings.vae_id}' ({_short(exc)}) and the model "
                                     f"directory '{model_id}' has no VAE of its own; fix VAE_ID (a Hub id such as "
                                     f"madebyollin/sdxl-vae-fp16-fix, fetched by `python -m engine download`, or a "
                                     f"local directory) or copy the model's vae folder") from exc
            notes.append(f"VAE_ID: could not load '{settings.vae_id}' ({_short(exc)}); using the model's own VAE. "
                         f"Run `python -m engine download` with network access or point VAE_ID at a local "
                         f"directory")
            log.warning("%s", notes[-1])
    try:
        pipe = StableDiffusionXLPipeline.from_pretrained(source, **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # diffusers raises OSError, ValueError, hub errors... all mean "cannot load"
        if local:
            raise ModelLoadError(f"could not load the model directory '{model_id}': {_short(exc)}. "
                                 f"Check that it is complete (every component listed in model_index.json "
                                 f"has its config and weights).") from exc
        if _looks_offline(exc):
            raise ModelLoadError(hub_load_hint(model_id)) from exc
        raise ModelLoadError(f"could not load the model '{model_id}': {_short(exc)}") from exc
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(choice.device)
    if choice.device == "cpu":
        # leave a core to the event loop: torch's worker threads would otherwise take every core and
        # the Discord heartbeat and 3-second acknowledgements would wait behind them
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    if choice.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    log.info("model %s loaded on %s (%s) in %.1fs", model_id, choice.device, choice.dtype_name,
             time.perf_counter() - started)
    return LoadedModel(pipe=pipe, model_id=model_id, choice=choice,
                       base_scheduler_config=dict(pipe.scheduler.config),
                       load_seconds=time.perf_counter() - started, notes=notes, vae_from_id="vae" in kwargs)


def _missing_components(path: Path) -> list[str]:
    """Components model_index.json lists (with a class) that have no folder in ``path``."""
    import json

    try:
        index = json.loads((path / "model_index.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []  # from_pretrained reports an unreadable index itself
    return [name for name, value in index.items() if not name.startswith("_") and isinstance(value, list)
            and len(value) == 2 and value[0] is not None and not (path / name).is_dir()]


def _looks_offline(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    markers = ("connect", "offline", "resolve", "network", "cache", "timed out", "localentrynotfound",
               "couldn't", "could not find", "name or service")
    return any(m in text for m in markers)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def scheduler_for(model: LoadedModel, name: str) -> Any:
    """A scheduler instance for ``name``, built once from the model's own scheduler config."""
    if name in model.schedulers:
        return model.schedulers[name]
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        LCMScheduler,
        UniPCMultistepScheduler,
    )

    config = dict(model.base_scheduler_config)
    table: dict[str, tuple[Any, dict[str, Any]]] = {
        "euler": (EulerDiscreteScheduler, {}),
        "euler_a": (EulerAncestralDiscreteScheduler, {}),
        "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
        "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
        "ddim": (DDIMScheduler, {}),
        "unipc": (UniPCMultistepScheduler, {}),
        "lcm": (LCMScheduler, {}),
    }
    if name not in table:
        raise ValueError(f"unknown scheduler {name}")
    cls, extra = table[name]
    model.schedulers[name] = cls.from_config(config, **extra)
    return model.schedulers[name]


def load_fast_lora(model: LoadedModel, lora_id: str) -> None:
    """Load the LCM-LoRA (hub id or local directory) as a switchable adapter for fast mode."""
    try:
        model.pipe.load_lora_weights(lora_id, adapter_name="lcm")
    except Exception as exc:
        raise ModelLoadError(
            f"could not load the fast-mode LoRA '{lora_id}': {_short(exc)}. Run `python -m engine download` "
            f"with network access, set FAST_LORA_ID to a local directory, or leave it empty to disable fast mode."
        ) from exc
    model.pipe.disable_lora()
    model.fast_adapter = "lcm"


def load_loras(model: LoadedModel, entries: tuple[LoraEntry, ...]) -> list[str]:
    """Load each LoRA of ``entries`` not loaded yet (or from another source since) once, as an adapter of its own,
    switched off; one line per LoRA that could not be loaded (requests naming it fail, saying so; the rest work)."""
    from pathlib import Path

    notes, loaded = [], []
    for entry in entries:
        if model.loras.get(entry.name) == entry.source:
            continue
        if entry.name in model.loras:  # the catalogue gave it another source since
            drop_loras(model, [entry.name])
        source = Path(entry.source)
        where = ({"pretrained_model_name_or_path_or_dict": str(source.parent), "weight_name": source.name}
                 if source.suffix == ".safetensors" else {"pretrained_model_name_or_path_or_dict": entry.source})
        try:
            model.pipe.load_lora_weights(**where, adapter_name=entry.adapter)
        except Exception as exc:  # one broken file must not take the model or the other LoRAs down
            log.warning("LoRA %s (%s) could not be loaded: %s", entry.name, entry.source, exc)
            notes.append(f"LORAS: '{entry.name}' could not be loaded from {entry.source} ({_short(exc)}); requests "
                         f"naming it fail. Run `python -m engine download` with network access, or fix the path")
            continue
        model.loras[entry.name] = entry.source
        loaded.append(entry.name)
    if loaded:
        _all_off(model)
        notes.append(f"LORAS: {', '.join(loaded)} loaded as adapters, switched per batch without reloading")
    return notes


def drop_loras(model: LoadedModel, names: list[str]) -> None:
    """Delete the adapters of LoRAs no longer offered (or about to be loaded from another source). With the LoRA slot
    (COMPILE) they are only forgotten, their layers kept until the model loads again: deleting one changes the layers
    the compiled graphs guard on, and every LoRA batch would run eagerly."""
    gone = [name for name in names if model.loras.pop(name, None) is not None]
    if gone and model.lora_slot is None:
        model.pipe.delete_adapters([adapter_name(name) for name in gone])
        _all_off(model)


def _all_off(model: LoadedModel) -> None:
    """Every adapter off: the next batch switches on what it needs (engine/gpu/pipeline.py)."""
    model.pipe.disable_lora()
    model.lora_on, model.adapters_on = False, ()


TAESD_XL = "madebyollin/taesdxl"  # FAST_VAE_ID=auto on CUDA


def fast_vae_repo(value: str, cuda: bool) -> str:
    """The tiny autoencoder FAST_VAE_ID names: ``auto`` is TAESD_XL on CUDA (there the full VAE decode, ~0.085 s an
    image on an H200, costs more than fast mode's 4 UNet steps) and none on a CPU; ``off`` or empty is none."""
    value = value.strip()
    if value.lower() == "auto":
        return TAESD_XL if cuda else ""
    return "" if value.lower() == "off" else value


def load_fast_vae(model: LoadedModel, repo: str) -> str:
    """Load ``FAST_VAE_ID`` (a diffusers AutoencoderTiny such as madebyollin/taesdxl) to decode fast-mode batches.

    Its failure only means fast mode decodes with the full VAE; the returned line says which happened.
    """
    from diffusers import AutoencoderTiny

    try:
        tiny = AutoencoderTiny.from_pretrained(repo, dtype=model.choice.dtype)
    except Exception as exc:  # a missing or broken option must not take the model down
        log.warning("FAST_VAE_ID %s could not be loaded: %s", repo, exc)
        return (f"FAST_VAE_ID: could not load '{repo}' ({_short(exc)}); fast mode decodes with the full VAE. Run "
                f"`python -m engine download` with network access, set FAST_VAE_ID to a local directory, or set "
                f"it to off")
    tiny = tiny.to(model.choice.device)
    tiny.requires_grad_(False)
    model.fast_vae = tiny
    params = sum(p.numel() for p in tiny.decoder.parameters()) / 1e6
    full = sum(p.numel() for p in model.pipe.vae.decoder.parameters()) / 1e6
    return (f"FAST_VAE_ID: fast mode decodes with {repo} (AutoencoderTiny, decoder {params:.2f} M parameters "
            f"instead of {full:.2f} M); slightly softer details")


def download_model(settings: EngineSettings) -> list[str]:
    """Fetch MODEL_ID or each model of MODELS (fp16 variant and safetensors, as used on CUDA), VAE_ID, FAST_LORA_ID,
    FAST_VAE_ID, the hub LoRAs of LORAS and TRANSLATE_MODEL_ID.

    huggingface_hub shows a progress bar per file. Returns one line per fetched item.
    """
    from diffusers import StableDiffusionXLPipeline
    from huggingface_hub import snapshot_download

    lines = []
    for source in [e.source for e in settings.models] or [settings.model_id]:
        if _is_local(source):
            continue
        for variant in ("fp16", None):
            try:
                path = StableDiffusionXLPipeline.download(source, variant=variant, use_safetensors=True)
                lines.append(f"model {source} ({variant or 'fp32'}) -> {path}")
            except Exception as exc:  # the fp32 files are optional on GPU-only hosts
                if variant == "fp16":
                    raise
                lines.append(f"model {source} fp32 weights skipped: {_short(exc)}")
    # as used on CUDA: FAST_VAE_ID=auto is the tiny autoencoder there
    for repo in (settings.vae_id, settings.fast_lora_id, fast_vae_repo(settings.accel.fast_vae_id, cuda=True),
                 *(entry.source for entry in settings.loras), settings.translate_model_id):
        if repo and not _is_local(repo):
            lines.append(f"{repo} -> {snapshot_download(repo)}")
    return lines
