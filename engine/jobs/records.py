"""Job records and the events the engine publishes about them (data crossing package lines)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.requests.checks import Note, Phrase
from engine.requests.params import GenerationParams

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ACTIVE_STATES: tuple[str, ...] = ("queued", "running")
FINAL_STATES: tuple[str, ...] = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Requester:
    """Who asked, and what a front door needs to deliver the result later.

    ``delivery`` is opaque to the engine: the bot keeps its interaction token, application id
    and message ids there, so a restarted bot can still deliver.
    """

    user_id: str
    user_name: str = ""
    guild_id: str | None = None
    channel_id: str | None = None
    source: str = "discord"
    delivery: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Place:
    """Where a request was made, as its front door saw it; the engine's rules decide what follows from it."""

    channel_nsfw: bool = False  # an age-restricted channel: the NSFW policy there is "allow"
    guild_installed: bool = True  # the server added the bot (False: a member's user install in it)
    role_ids: tuple[str, ...] = ()  # the member's roles in that server (quota-exempt roles)


# fetches the bytes of a member's picture; called by the engine after the acknowledgement (it may take seconds)
PictureSource = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class JobRequest:
    """Everything a front door hands the engine to ask for one job (``Engine.request``)."""

    params: GenerationParams
    requester: Requester
    place: Place = Place()
    picture: PictureSource | None = None  # image-to-image from this picture, cropped to the job's size
    keep_size: bool = False  # with a picture: the member chose the size (else the allowed one nearest its shape)
    priority: int = 0  # > 0: the operator's own job (the panel): no caps and no quota


@dataclass(frozen=True)
class Job:
    """One stored generation request and its outcome."""

    id: int
    state: JobState
    priority: int
    requester: Requester
    params: GenerationParams
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    gen_seconds: float | None = None
    results: tuple[str, ...] = ()
    deliveries: tuple[str, ...] = ()
    safety: tuple[float, ...] = ()  # each result's NSFW score, 0-1 (engine/gpu/safety.py); empty: not checked
    error: str | None = None
    attempts: int = 0
    delivered_at: float | None = None

    @property
    def is_active(self) -> bool:
        """Queued or running."""
        return self.state in ACTIVE_STATES

    @property
    def delivery_paths(self) -> tuple[str, ...]:
        """The file to deliver for each result, in order: its small copy (WebP/JPEG, or the PNG when
        DELIVERY_FORMAT=png) as recorded when it was saved.

        Results saved before the store recorded copies have none: their PNGs are delivered (front
        doors shrink a file that is over their upload limit).
        """
        return self.deliveries or self.results


EventKind = Literal["queued", "started", "progress", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class JobEvent:
    """Something happened to a job. ``preview`` is a small JPEG of the first image, when fresh."""

    kind: EventKind
    job: Job
    step: int = 0
    total: int = 0
    preview: bytes | None = None


@dataclass(frozen=True)
class Submission:
    """The answer to a successful submit: the stored job and where it stands."""

    job: Job
    position: int
    eta_seconds: float | None
    notes: tuple[Note, ...] = ()


class Refused(Exception):
    """A request the engine will not take; ``message`` is user-facing (``phrase``: the same, to translate).

    ``reason`` is a short code (``quota``, ``user_cap``, ``queue_full``, ``blocked``, ``nsfw_channel``,
    ``model_failed``, ``fast_unavailable``); ``resets_at`` (epoch seconds) says when a quota frees up.
    """

    def __init__(self, reason: str, message: str | Phrase, *, resets_at: float | None = None, **fields: object) -> None:
        self.phrase = message if isinstance(message, Phrase) else Phrase.of(message, **fields)  # what a door says
        self.message = str(self.phrase)
        super().__init__(self.message)
        self.reason = reason
        self.resets_at = resets_at
