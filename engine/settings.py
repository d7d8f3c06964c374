"""Engine settings, read from the environment and ``.env`` when ``main()`` builds them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.sizes import SDXL_SIZES, Size, SizeError, parse_size_list

SCHEDULERS = ("euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class SettingsError(ValueError):
    """The environment holds a value the service cannot start with; the text names the variable."""


class EngineSettings(BaseSettings):
    """Deploy-time facts for the engine. Operator defaults change later at run time (SQLite)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=True, frozen=True)

    model_id: str = Field("segmind/SSD-1B", alias="MODEL_ID")
    vae_id: str = Field("", alias="VAE_ID")
    device: str = Field("auto", alias="DEVICE")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field("auto", alias="DTYPE")
    data_dir: Path = Field(Path("./data"), alias="DATA_DIR")
    sizes: Annotated[tuple[Size, ...], NoDecode] = Field(parse_size_list(SDXL_SIZES), alias="SIZES")
    default_size: Annotated[Size | None, NoDecode] = Field(None, alias="DEFAULT_SIZE")
    default_steps: int = Field(25, alias="DEFAULT_STEPS")
    default_guidance: float = Field(9.0, alias="DEFAULT_GUIDANCE")
    default_negative_prompt: str = Field("ugly, blurry, poor quality", alias="DEFAULT_NEGATIVE_PROMPT")
    default_scheduler: str = Field("euler", alias="DEFAULT_SCHEDULER")
    max_steps: int = Field(60, alias="MAX_STEPS", ge=1, le=200)
    max_guidance: float = Field(20.0, alias="MAX_GUIDANCE", gt=0, le=50)
    max_count: int = Field(4, alias="MAX_COUNT", ge=1, le=10)
    per_user_cap: int = Field(4, alias="PER_USER_CAP", ge=1, le=1000)
    queue_cap: int = Field(200, alias="QUEUE_CAP", ge=1, le=100000)
    max_batch: int = Field(4, alias="MAX_BATCH", ge=1, le=64)
    batch_window: float = Field(0.05, alias="BATCH_WINDOW", ge=0, le=5)
    preview_interval: float = Field(1.5, alias="PREVIEW_INTERVAL", ge=0)
    delivery_format: Literal["webp", "jpeg", "png"] = Field("webp", alias="DELIVERY_FORMAT")
    delivery_quality: int = Field(90, alias="DELIVERY_QUALITY", ge=30, le=100)
    blocklist: Annotated[tuple[str, ...], NoDecode] = Field((), alias="BLOCKLIST")
    retention_days: float = Field(0, alias="RETENTION_DAYS", ge=0)
    retention_max_gb: float = Field(0, alias="RETENTION_MAX_GB", ge=0)
    fast_lora_id: str = Field("latent-consistency/lcm-lora-ssd-1b", alias="FAST_LORA_ID")
    fast_steps: int = Field(4, alias="FAST_STEPS", ge=1, le=16)
    vary_strength: float = Field(0.6, alias="VARY_STRENGTH", ge=0.05, le=1.0)
    # --- acceleration switches (engine/acceleration.py; measured effects in benchmarks/README.md) ---
    fp16_vae: bool = Field(False, alias="FP16_VAE")
    fuse_qkv: bool = Field(False, alias="FUSE_QKV")
    channels_last: bool = Field(False, alias="CHANNELS_LAST")
    compile: Literal["off", "unet", "unet+vae"] = Field("off", alias="COMPILE")
    compile_mode: Literal["default", "max-autotune"] = Field("default", alias="COMPILE_MODE")
    compile_backend: Literal["inductor", "aot_eager", "eager"] = Field("inductor", alias="COMPILE_BACKEND")
    compile_batch_sizes: Annotated[tuple[int, ...], NoDecode] = Field((1, 2, 4), alias="COMPILE_BATCH_SIZES")
    compile_sizes: Annotated[tuple[Size, ...], NoDecode] = Field((), alias="COMPILE_SIZES")
    compile_cache_dir: Path | None = Field(None, alias="COMPILE_CACHE_DIR")
    cuda_graphs: bool = Field(False, alias="CUDA_GRAPHS")
    fast_fused_unet: bool = Field(False, alias="FAST_FUSED_UNET")
    cpu_offload: bool = Field(False, alias="CPU_OFFLOAD")
    vae_tiling: bool = Field(False, alias="VAE_TILING")
    vae_slicing: bool = Field(False, alias="VAE_SLICING")

    @field_validator("sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_size_list(value)
            except SizeError as exc:
                raise ValueError(str(exc)) from None
        return value

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

    @field_validator("blocklist", mode="before")
    @classmethod
    def _parse_blocklist(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(w.strip() for w in value.split(",") if w.strip())
        return value

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
        if isinstance(value, str):
            if not value.strip():
                return ()
            try:
                return parse_size_list(value)
            except SizeError as exc:
                raise ValueError(str(exc)) from None
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
        """Reject switch combinations that cannot work together (see engine/acceleration.py)."""
        if self.cuda_graphs and self.compile == "off":
            raise ValueError("CUDA_GRAPHS=true needs COMPILE=unet or COMPILE=unet+vae (graphs are captured by "
                             "torch.compile's reduce-overhead mode)")
        if self.compile != "off" and self.cpu_offload:
            raise ValueError("COMPILE and CPU_OFFLOAD cannot be combined: offload hooks move the weights between "
                             "devices on every call, which defeats compiled graphs; pick one")
        if self.fast_fused_unet and self.cpu_offload:
            raise ValueError("FAST_FUSED_UNET keeps a second UNet resident, which defeats CPU_OFFLOAD; pick one")
        wrong = [str(s) for s in self.compile_sizes if s not in self.sizes]
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
    aliases = {name: (field.alias or name.upper()) for name, field in model.model_fields.items()}
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
    try:
        return EngineSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc, EngineSettings)) from None
