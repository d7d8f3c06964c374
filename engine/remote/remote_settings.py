"""Scale-out settings (NATS), read with the engine's when ``main()`` builds them; importing this imports no nats."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RemoteSettings(BaseSettings):
    """Scale-out over NATS JetStream: GPU workers (``python -m engine.worker``) on this host or others.

    With NATS_URL empty (the default) everything runs in one process and nats is never imported.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    nats_url: str = ""
    nats_user: str = ""
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    nats_creds: Path | None = None  # a .creds file (JWT + nkey seed), as NGS and operator mode issue them
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    worker_name: str = ""  # empty: <hostname>-<device>
    worker_slots: int = Field(1, ge=1, le=16)  # batches one worker runs at once (one per GPU is right)
    nats_ack_wait: float = Field(30.0, ge=1, le=3600)  # seconds without an in-progress ack before redelivery
    nats_max_deliver: int = Field(3, ge=1, le=100)  # tries before a job is set aside as failed
    worker_heartbeat: float = Field(2.0, gt=0, le=60)  # seconds between worker heartbeats
    # every name on the server starts with this, so two deployments can share one NATS server
    nats_prefix: str = Field("imagine", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    # a batch's deadline from its pickup: base + seconds per step of a one-megapixel image (AI Horde's model);
    # past it the batch is sent again once, then its jobs fail with a message
    batch_deadline_base: float = Field(120.0, ge=1, le=86400)
    batch_seconds_per_step: float = Field(0.5, gt=0, le=600)
    # bounds of what the deployment keeps on the server: per stream and bucket, and the age of anything in them
    nats_max_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)
    nats_max_age: float = Field(24 * 3600.0, ge=60)

    @field_validator("nats_password", "nats_token", "nats_creds", "nats_tls_ca", "nats_tls_cert", "nats_tls_key",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # `NAME=` in .env (as in .env.example) means "not set"
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("nats_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        if value and not all(part.strip().startswith(("nats://", "tls://", "ws://", "wss://"))
                             for part in value.split(",")):
            raise ValueError(f"'{value}' is not a NATS URL; use nats://host:4222 (comma-separated for a cluster)")
        return value

    @property
    def enabled(self) -> bool:
        """True when jobs go to remote workers."""
        return bool(self.nats_url)


__all__ = ["RemoteSettings"]
