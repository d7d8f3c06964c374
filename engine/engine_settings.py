"""Engine settings, read from the environment and ``.env`` when ``main()`` builds them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_core.core_schema import ValidationInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.remote.remote_settings import RemoteSettings
from engine.requests.checks import ParamError
from engine.requests.loras import LoraEntry, parse_loras
from engine.requests.models import ModelEntry, parse_models
from engine.requests.sizes import SDXL_SIZES, Size, SizeError, parse_size_list

SCHEDULERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class SettingsError(ValueError):
    """The environment holds a value the service cannot start with; the text names the variable."""


def _size_list(value: object) -> object:
    """A ``WxH,...`` string from the environment as sizes; a SizeError becomes the validator's message."""
    if isinstance(value, str):
        try:
            return parse_size_list(value)
        except SizeError as exc:
            raise ValueError(str(exc)) from None
    return value


class AccelerationSettings(BaseSettings):
    """The speed and memory switches (engine/gpu/acceleration.py, engine/gpu/compiling.py); the measured effect
    of each is in benchmarks/README.md."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    fp16_vae: bool = False
    # "auto" (None): on with CUDA, off elsewhere (engine/gpu/acceleration.py resolve_switches)
    fuse_qkv: bool | None = None
    channels_last: bool | None = None
    compile: Literal["auto", "off", "unet", "unet+vae"] = "auto"
    compile_mode: Literal["default", "max-autotune"] = "default"
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    compile_batch_sizes: Annotated[tuple[int, ...], NoDecode] = Field((1, 2, 4))
    compile_sizes: Annotated[tuple[Size, ...], NoDecode] = Field(())
    compile_cache_dir: Path | None = None
    # auto (None): with COMPILE on CUDA, a lone image's UNet calls replay CUDA graphs (engine/gpu/compile_config.py)
    cuda_graphs: bool | None = None
    fast_fused_unet: bool | None = None
    # a tiny autoencoder that decodes fast-mode batches: auto = madebyollin/taesdxl on CUDA (engine/gpu/model.py)
    fast_vae_id: str = "auto"
    fp8_linear: bool = False  # torchao float8 linear layers in the UNet (CUDA, compute capability 8.9+)
    cpu_offload: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    # after this share of the steps guidance stops and the UNet runs half the batch: faster, changes the image
    cfg_cutoff: float = Field(0.0, ge=0.0, lt=1.0)
    # with COMPILE: LoRA batches run compiled through one adapter of this rank, filled per batch (0: they run eagerly)
    lora_slot_rank: int = Field(128, ge=0, le=1024)
    # N > 1: in the middle of the schedule the UNet runs every Nth step, the others reuse its last prediction
    # (engine/gpu/steps/cache.py): faster, changes the image
    step_cache: int = Field(1, ge=1, le=4)
    # the SDPA kernel tried first (engine/gpu/acceleration.py); auto: torch's order (flash, memory-efficient, math)
    attention_backend: Literal["auto", "flash", "efficient", "cudnn", "math"] = "auto"

    @field_validator("fuse_qkv", "channels_last", "fast_fused_unet", "cuda_graphs", mode="before")
    @classmethod
    def _auto_bool(cls, value: object) -> object:
        # "auto" (or empty) leaves the choice to the device: on with CUDA, off elsewhere
        if value is None or isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("auto", ""):
            return None
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("must be auto, true or false")

    @field_validator("compile", mode="before")
    @classmethod
    def _empty_compile(cls, value: object) -> object:
        return "auto" if isinstance(value, str) and not value.strip() else value

    @field_validator("compile_batch_sizes", mode="before")
    @classmethod
    def _parse_compile_batch_sizes(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts or not all(p.isdigit() for p in parts):
                raise ValueError("must be a comma-separated list of batch sizes such as 1,2,4")
            value = [int(p) for p in parts]
        if isinstance(value, (list, tuple)):
            sizes = sorted({int(v) for v in value})
            if not sizes or sizes[0] < 1 or sizes[-1] > 64:
                raise ValueError("batch sizes must be from 1 to 64, at least one")
            return tuple(sizes)
        return value

    @field_validator("compile_cache_dir", mode="before")
    @classmethod
    def _empty_cache_dir(cls, value: object) -> object:
        # COMPILE_CACHE_DIR= (empty) means the default under DATA_DIR, not the current directory
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("compile_sizes", mode="before")
    @classmethod
    def _parse_compile_sizes(cls, value: object) -> object:
        # empty means "DEFAULT_SIZE only" here, unlike SIZES
        return () if isinstance(value, str) and not value.strip() else _size_list(value)

    @model_validator(mode="after")
    def _check_combinations(self) -> AccelerationSettings:
        """Reject switch combinations that cannot work together (see engine/gpu/acceleration.py)."""
        if self.cuda_graphs and self.compile == "off":
            raise ValueError("CUDA_GRAPHS=true needs COMPILE=auto, unet or unet+vae (graphs are captured by "
                             "torch.compile's reduce-overhead mode)")
        if self.compile not in ("off", "auto") and self.cpu_offload:
            raise ValueError("COMPILE and CPU_OFFLOAD cannot be combined: offload hooks move the weights between "
                             "devices on every call, which defeats compiled graphs; pick one")
        if self.cuda_graphs and (self.vae_slicing or self.vae_tiling):
            used = " and ".join(n for n, on in (("VAE_SLICING", self.vae_slicing), ("VAE_TILING", self.vae_tiling)) if on)
            raise ValueError(f"CUDA_GRAPHS=true cannot be combined with {used}: a captured graph reuses its output "
                             f"buffers, so each slice or tile would overwrite the previous one's output; turn "
                             f"{used} off or CUDA_GRAPHS off")
        if self.fast_fused_unet and self.cpu_offload:
            raise ValueError("FAST_FUSED_UNET keeps a second UNet resident, which defeats CPU_OFFLOAD; pick one")
        return self


class EngineSettings(BaseSettings):
    """Deploy-time facts for the engine. Operator defaults change later at run time (SQLite)."""

    # field names are the variables' names; pydantic-settings matches them case-insensitively
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    model_id: str = "segmind/SSD-1B"
    vae_id: str = ""
    device: str = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    data_dir: Path = Path("./data")
    sizes: Annotated[tuple[Size, ...], NoDecode] = parse_size_list(SDXL_SIZES)
    default_size: Annotated[Size | None, NoDecode] = None
    default_steps: int = 25
    default_guidance: float = 9.0
    default_negative_prompt: str = Field("ugly, blurry, poor quality")
    default_scheduler: str = "euler"
    max_steps: int = Field(60, ge=1, le=200)
    max_guidance: float = Field(20.0, gt=0, le=50)
    max_count: int = Field(4, ge=1, le=10)
    per_user_cap: int = Field(4, ge=1, le=1000)
    queue_cap: int = Field(200, ge=1, le=100000)
    max_batch: int = Field(4, ge=1, le=64)
    batch_window: float = Field(0.05, ge=0, le=5)
    preview_interval: float = Field(1.5, ge=0)
    delivery_format: Literal["webp", "jpeg", "png"] = "webp"
    delivery_quality: int = Field(90, ge=30, le=100)
    blocklist: Annotated[tuple[str, ...], NoDecode] = Field(())
    retention_days: float = Field(0, ge=0)
    retention_max_gb: float = Field(0, ge=0)
    fast_lora_id: str = "latent-consistency/lcm-lora-ssd-1b"
    # a translation model into English for members' prompts when they ask (--translate); empty: none
    translate_model_id: str = ""
    # what members may choose: MODELS (engine/requests/models.py) and LORAS (loras.py); MODEL_SLOTS, MAX_LORAS
    models: Annotated[tuple[ModelEntry, ...], NoDecode] = Field(())
    model_slots: int = Field(2, ge=1, le=8)
    model_park: int = Field(0, ge=0, le=8)  # models unloaded from the GPU kept in CPU memory
    loras: Annotated[tuple[LoraEntry, ...], NoDecode] = Field(())
    max_loras: int = Field(3, ge=1, le=8)
    fast_steps: int = Field(4, ge=1, le=16)
    vary_strength: float = Field(0.6, ge=0.05, le=1.0)  # V buttons and Vary (Strong)
    vary_subtle_strength: float = Field(0.35, ge=0.05, le=1.0)  # Vary (Subtle)
    # Upscale (Subtle) and (Creative) (engine/gpu/upscale.py): how far the 2x refinement moves; the largest side it
    # runs at (tiles)
    upscale_strength: float = Field(0.3, ge=0.05, le=1.0)
    upscale_creative_strength: float = Field(0.5, ge=0.05, le=1.0)
    upscale_tile: int = Field(1024, ge=64, le=2048, multiple_of=8)
    # image safety (engine/gpu/safety.py): a classifier scores each result; empty: no classifier
    safety_model_id: Annotated[str, StringConstraints(strip_whitespace=True)] = ""
    safety_threshold: float = Field(0.5, gt=0, le=1)
    safety_labels: Annotated[tuple[str, ...], NoDecode] = ("nsfw", "porn", "hentai", "sexy")
    # the operator's NSFW policy outside age-restricted channels (servers may set their own); empty: "spoiler"
    # with a classifier (flagged images are blurred unless the operator allows them), else "allow"
    nsfw_policy: Literal["", "allow", "spoiler", "block"] = ""
    # where no server has a say (DMs, group DMs, user installs in servers without the bot); empty: NSFW_POLICY
    nsfw_policy_elsewhere: Literal["", "allow", "spoiler", "block"] = ""
    log_format: Literal["text", "json"] = "text"  # json: one object per line with job fields (engine/ops/logs.py)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # the speed switches, a settings class of their own (read from the same environment)
    accel: AccelerationSettings = Field(default_factory=AccelerationSettings)
    # GPU workers over NATS, a settings class of their own (read from the same environment)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)

    @property
    def operator_nsfw_policy(self) -> str:
        """NSFW_POLICY as it applies: flagged images are never posted unblurred unless the operator says so."""
        return self.nsfw_policy or ("spoiler" if self.safety_model_id else "allow")

    @property
    def elsewhere_nsfw_policy(self) -> str:
        """The NSFW policy where no server has a say (DMs, group DMs, user installs in servers without the bot)."""
        return self.nsfw_policy_elsewhere or self.operator_nsfw_policy

    @field_validator("log_format", "nsfw_policy", "nsfw_policy_elsewhere", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        return _size_list(value)

    @field_validator("default_size", mode="before")
    @classmethod
    def _parse_default_size(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return Size.parse(value)
            except SizeError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("loras", "models", mode="before")
    @classmethod
    def _parse_catalogue(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            try:
                return (parse_loras if info.field_name == "loras" else parse_models)(value)
            except ParamError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("blocklist", "safety_labels", mode="before")
    @classmethod
    def _parse_word_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(w.strip() for w in value.split(",") if w.strip())
        return value

    @field_validator("safety_labels")
    @classmethod
    def _check_labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("is empty; name the classifier labels that mean NSFW, e.g. nsfw,porn,hentai,sexy")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_RE.match(value):
            raise ValueError(f"'{value}' is not a device; use auto, cpu, mps, cuda or cuda:N")
        return value

    @field_validator("default_scheduler")
    @classmethod
    def _check_scheduler(cls, value: str) -> str:
        if value not in SCHEDULERS:
            raise ValueError(f"'{value}' is not a scheduler; use one of {', '.join(SCHEDULERS)}")
        return value

    @field_validator("model_id")
    @classmethod
    def _check_model_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; give a Hugging Face repo id such as segmind/SSD-1B or a local directory")
        return value.strip()

    @model_validator(mode="after")
    def _check_defaults(self) -> EngineSettings:
        if self.default_size is None:
            first = Size(1024, 1024) if Size(1024, 1024) in self.sizes else self.sizes[0]
            object.__setattr__(self, "default_size", first)
        elif self.default_size not in self.sizes:
            raise ValueError(
                f"DEFAULT_SIZE {self.default_size} is not one of SIZES ({', '.join(map(str, self.sizes))})"
            )
        if not 1 <= self.default_steps <= self.max_steps:
            raise ValueError(f"DEFAULT_STEPS {self.default_steps} must be from 1 to MAX_STEPS ({self.max_steps})")
        if not 0 <= self.default_guidance <= self.max_guidance:
            raise ValueError(
                f"DEFAULT_GUIDANCE {self.default_guidance} must be from 0 to MAX_GUIDANCE ({self.max_guidance})"
            )
        self._check_acceleration()
        return self

    def _check_acceleration(self) -> None:
        """Switch values that must agree with the engine's own settings."""
        wrong = [str(x) for x in self.accel.compile_sizes if x not in self.sizes]
        if wrong:
            raise ValueError(f"COMPILE_SIZES {', '.join(wrong)} not in SIZES ({', '.join(map(str, self.sizes))})")

    @property
    def db_path(self) -> Path:
        """The SQLite job store."""
        return self.data_dir / "imagine.sqlite3"

    @property
    def results_dir(self) -> Path:
        """Where result images are written."""
        return self.data_dir / "results"


def format_validation_error(exc: ValidationError, model: type[BaseSettings]) -> str:
    """Render a pydantic error as one line per variable: ``NAME: what is wrong``."""
    prefix = str(model.model_config.get("env_prefix") or "")
    aliases = {name: (field.alias or prefix + name).upper() for name, field in model.model_fields.items()}
    lines = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        name = aliases.get(field, field.upper())
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if name:
            value = err.get("input")
            shown = f" (got {value!r})" if isinstance(value, (str, int, float)) and "secret" not in name.lower() \
                and "token" not in name.lower() and "password" not in name.lower() else ""
            lines.append(f"{name}: {msg}{shown}")
        else:
            lines.append(msg)
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_engine_settings(**overrides: object) -> EngineSettings:
    """Build the engine settings from the environment, ``.env`` and ``overrides``.

    Raises SettingsError with one line per wrong variable and what is allowed.
    """
    parts: dict[str, BaseSettings] = {}
    rest = dict(overrides)
    for field, model in (("accel", AccelerationSettings), ("remote", RemoteSettings)):
        mine = {k: rest.pop(k) for k in list(rest) if k in model.model_fields}
        if "_env_file" in overrides:
            mine["_env_file"] = overrides["_env_file"]
        try:
            parts[field] = model(**mine)
        except ValidationError as exc:
            raise SettingsError(format_validation_error(exc, model)) from None
    try:
        return EngineSettings(**parts, **rest)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, EngineSettings)) from None
