"""What crosses between the bot host and GPU workers over NATS: names, and the messages' shapes.

Messages are JSON (pydantic models), validated on arrival; fields a newer version added are ignored, so a
bot and its workers can be upgraded one at a time.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JOBS_STREAM = "IMAGINE_JOBS"
RESULTS_STREAM = "IMAGINE_RESULTS"
DEAD_STREAM = "IMAGINE_DEAD"
IMAGES_BUCKET = "imagine_images"
WORKERS_BUCKET = "imagine_workers"
RESULTS_CONSUMER = "bot"
DEAD_CONSUMER = "bot-dead"
CANCEL_SUBJECT = "imagine.cancel"
RESULTS_SUBJECT = "imagine.results"
# a silent worker counts as gone after this many heartbeat intervals (the KV entry expires then)
HEARTBEAT_MISSES = 5


def model_key(model_id: str) -> str:
    """A subject token for a model: workers of one model never take another model's jobs."""
    plain = re.sub(r"[^A-Za-z0-9_-]", "_", model_id)[-40:]
    return f"{plain}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def jobs_subject(model_id: str) -> str:
    """Where the bot publishes batches for ``model_id``."""
    return f"imagine.jobs.{model_key(model_id)}"


def workers_consumer(model_id: str) -> str:
    """The durable pull consumer the workers of ``model_id`` share."""
    return f"workers-{model_key(model_id)}"


def progress_subject(job_id: int) -> str:
    """Core NATS subject of one job's progress (losing one is harmless)."""
    return f"imagine.progress.{job_id}"


def result_object(job_id: int, attempt: int, index: int) -> str:
    """Object Store name of image ``index`` of a job's attempt."""
    return f"result/{job_id}/{attempt}/{index}.png"


def copy_object(job_id: int, attempt: int, index: int, fmt: str) -> str:
    """Object Store name of the delivery copy (``fmt`` webp or jpeg) of image ``index`` of a job's attempt."""
    return f"result/{job_id}/{attempt}/{index}.{'jpg' if fmt == 'jpeg' else fmt}"


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


class BatchMessage(_Message):
    """A batch of compatible jobs for one pipeline call."""

    batch: str
    jobs: list[WireJob]
    # the form the bot host stores: the worker encodes each image's delivery copy too, so the bot writes bytes
    delivery_format: Literal["webp", "jpeg", "png"] = "webp"
    delivery_quality: int = 90


class ResultMessage(_Message):
    """One job's outcome from a worker (one message per job)."""

    job_id: int
    batch: str
    worker: str
    attempt: int
    state: Literal["done", "failed", "cancelled"]
    images: list[str] = []  # the PNG originals, with their parameters
    copies: list[str] = []  # the delivery copies in the batch's format, one per image (none for png, or from an
    # older worker: the bot host then makes them)
    gen_seconds: float = 0.0
    error: str | None = None
    safety: list[float] = []  # each image's NSFW score (engine/gpu/safety.py); empty without a classifier


class Heartbeat(_Message):
    """A worker's state, renewed every WORKER_HEARTBEAT seconds in the workers KV bucket."""

    name: str
    device: str = ""
    dtype: str = ""
    model: str
    state: Literal["loading", "ready", "failed"]
    error: str | None = None
    slots: int
    busy: int = 0
    fast: bool = False
    seconds_per_image: float | None = None
    at: float
