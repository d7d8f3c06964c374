"""What crosses between the bot host and GPU workers over NATS: names, and the messages' shapes.

Messages are JSON (pydantic models), validated on arrival; fields a newer version added are ignored, so a
later addition does not break an older peer (the tokens that sign each job need the bot host and its workers
on the same version). Every name (subjects, streams, buckets) starts with the deployment's NATS_PREFIX, so
two deployments share one server without seeing each other's work.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.requests.loras import NAME_RE, LoraEntry
from engine.requests.models import ModelEntry, Offer

RESULTS_CONSUMER = "bot"
DEAD_CONSUMER = "bot-dead"
# a silent worker counts as gone after this many heartbeat intervals (the KV entry expires then)
HEARTBEAT_MISSES = 5
# what one message may carry: a preview is a small JPEG; more is refused and counted
PREVIEW_MAX_BYTES = 256 * 1024
MAX_LEARNED = 64  # LoRAs a worker keeps from batches (each becomes an adapter on its models)
MAX_LEARNED_MODELS = 32  # model names a worker keeps (each only another name for a model it serves)
MAX_WORKERS = 1024  # heartbeats read at most (a flood of keys cannot grow the bot's view without bound)


def model_key(model_id: str) -> str:
    """A subject token for a model: workers of one model never take another model's jobs."""
    plain = re.sub(r"[^A-Za-z0-9_-]", "_", model_id)[-40:]
    return f"{plain}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Names:
    """Every NATS name of one deployment, from its NATS_PREFIX (lower-case letters, digits, ``_`` and ``-``)."""

    prefix: str = "imagine"

    @property
    def jobs_stream(self) -> str:
        """The work queue of batches."""
        return f"{self._upper}_JOBS"

    @property
    def results_stream(self) -> str:
        """The workers' results."""
        return f"{self._upper}_RESULTS"

    @property
    def dead_stream(self) -> str:
        """Max-deliveries advisories of the jobs stream (batches set aside)."""
        return f"{self._upper}_DEAD"

    @property
    def images_bucket(self) -> str:
        """Object Store of sources and result images."""
        return f"{self._lower}_images"

    @property
    def workers_bucket(self) -> str:
        """KV bucket of worker heartbeats, one key per worker."""
        return f"{self._lower}_workers"

    @property
    def cancel_subject(self) -> str:
        """Core NATS subject of signed cancels (bot to workers)."""
        return f"{self.prefix}.cancel"

    @property
    def results_subject(self) -> str:
        """Results are published under this subject, one token per job."""
        return f"{self.prefix}.results"

    def jobs_subject(self, model_id: str) -> str:
        """Where the bot publishes batches for ``model_id``."""
        return f"{self.prefix}.jobs.{model_key(model_id)}"

    def workers_consumer(self, model_id: str) -> str:
        """The durable pull consumer the workers of ``model_id`` share."""
        return f"workers-{model_key(model_id)}"

    def progress_subject(self, job_id: int) -> str:
        """Core NATS subject of one job's progress (losing one is harmless)."""
        return f"{self.prefix}.progress.{job_id}"

    def taken_subject(self, batch: str) -> str:
        """Core NATS subject a worker announces a batch it took on (the batch's deadline counts from then)."""
        return f"{self.prefix}.taken.{batch}"

    @property
    def _upper(self) -> str:
        return self.prefix.upper().replace("-", "_")

    @property
    def _lower(self) -> str:
        return self.prefix.lower().replace("-", "_")


def result_id(batch: str, job_id: int, attempt: int) -> str:
    """One try of a job in one batch: a job sent again in a new batch (past its deadline, or alone after its batch
    failed) gets new result names and a new message id, so the server never takes its result for a duplicate."""
    return f"{job_id}/{batch}-{attempt}"


def result_object(batch: str, job_id: int, attempt: int, index: int) -> str:
    """Object Store name of image ``index`` of a job's try."""
    return f"result/{result_id(batch, job_id, attempt)}/{index}.png"


def copy_object(batch: str, job_id: int, attempt: int, index: int, fmt: str) -> str:
    """Object Store name of the delivery copy (``fmt`` webp or jpeg) of image ``index`` of a job's try."""
    return f"result/{result_id(batch, job_id, attempt)}/{index}.{'jpg' if fmt == 'jpeg' else fmt}"


def source_object(job_id: int) -> str:
    """Object Store name of a variation job's source image."""
    return f"source/{job_id}.png"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class WireJob(_Message):
    """One job of a batch: its id, its parameters, and the source image of a variation."""

    id: int
    params: dict[str, Any]
    source: str | None = None
    # a member's own picture counts as NSFW from this score where the job was asked for (None: not checked)
    picture_threshold: float | None = None
    # the bot's signature of (batch, job): only the worker that took the batch can report on this job
    token: str = ""


class WireEntry(_Message):
    """A model or LoRA a batch uses, as the bot host's catalogue has it now (the panel may have added it since the
    worker started, or given it another source)."""

    kind: Literal["model", "lora"]
    name: str = Field(pattern=NAME_RE.pattern)
    source: str = Field(min_length=1, max_length=512)


def entries_of(offer: Offer, model: str, loras: Iterable[str]) -> list[WireEntry]:
    """What a worker needs to know of a batch's model and LoRAs (named in its jobs' parameters)."""
    found = [("model", offer.model(model))] + [("lora", offer.lora(name)) for name in loras]
    return [WireEntry(kind=kind, name=e.name, source=e.source) for kind, e in found if e is not None]  # type: ignore


def learned(known: Offer, entries: Iterable[WireEntry], sources: Collection[str]) -> Offer:
    """``known`` with a batch's entries: a LoRA in place of the one of the same name (newest last; at most
    MAX_LEARNED kept, the oldest dropped); a model name only when it is new, for a source of ``sources`` (what the
    worker serves: the name is another for a model it has), and at most MAX_LEARNED_MODELS of them."""
    models, loras = {e.name: e for e in known.models}, {e.name: e for e in known.loras}
    for entry in entries:
        if entry.kind == "model":
            if entry.source in sources and entry.name not in models and len(models) < MAX_LEARNED_MODELS:
                models[entry.name] = ModelEntry(entry.name, entry.source)
        else:
            old_lora = loras.pop(entry.name, None)
            loras[entry.name] = LoraEntry(entry.name, entry.source, *(
                (old_lora.weight, old_lora.triggers, old_lora.nsfw) if old_lora else ()))
    return Offer(tuple(models.values()), tuple(loras.values())[-MAX_LEARNED:])


class BatchMessage(_Message):
    """A batch of compatible jobs for one pipeline call."""

    batch: str = Field(max_length=64)
    jobs: list[WireJob]
    # the form the bot host stores: the worker encodes each image's delivery copy too, so the bot writes bytes
    delivery_format: Literal["webp", "jpeg", "png"] = "webp"
    delivery_quality: int = 90
    taken_token: str = ""  # signs the worker's "taken" notice
    entries: list[WireEntry] = Field([], max_length=16)  # its model and LoRAs as the catalogue has them


class ResultMessage(_Message):
    """One job's outcome from a worker (one message per job)."""

    job_id: int
    batch: str = Field(max_length=64)
    worker: str = Field(max_length=128)
    attempt: int
    state: Literal["done", "failed", "cancelled"]
    images: list[str] = Field([], max_length=16)  # the PNG originals, with their parameters
    copies: list[str] = Field([], max_length=16)  # the delivery copies in the batch's format, one per image (none
    # for png, or from an older worker: the bot host then makes them)
    gen_seconds: float = 0.0
    error: str | None = Field(None, max_length=2000)
    safety: list[float] = Field([], max_length=16)  # each image's NSFW score (engine/gpu/safety.py)
    token: str = ""  # the job's token from the batch: proves the sender took that batch


class CancelMessage(_Message):
    """The bot's word that a dispatched job was cancelled, signed with the job's token."""

    job_id: int
    token: str


class Heartbeat(_Message):
    """A worker's state, renewed every WORKER_HEARTBEAT seconds in the workers KV bucket."""

    name: str = Field(max_length=128)
    device: str = Field("", max_length=64)
    dtype: str = Field("", max_length=32)
    model: str = Field(max_length=512)
    state: Literal["loading", "ready", "failed"]
    error: str | None = Field(None, max_length=2000)
    slots: int = Field(ge=1, le=16)
    busy: int = Field(0, ge=0, le=16)
    fast: bool = False
    seconds_per_image: float | None = Field(None, ge=0)
    models: tuple[Annotated[str, Field(max_length=32)], ...] = Field((), max_length=8)  # loaded now (MODEL_SLOTS)
    at: float
