"""One interaction sent to the bot (what tests wait on), and the gateway and REST bookkeeping types."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .discord_records import (
    FakeChannel,
    FakeUser,
    RecordedFile,
    RecordedRequest,
)

if TYPE_CHECKING:
    from .discord_emulator import FakeDiscord

# --------------------------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------------------------


class FakeInteraction:
    """Handle on one interaction that the emulator dispatched (returned by ``slash``/``click``/``submit_modal``).

    It tracks the callback(s) the bot sent, the ``@original`` response message and the followups.
    """

    def __init__(
        self,
        fake: FakeDiscord,
        *,
        payload: dict[str, Any],
        user: FakeUser,
        channel: FakeChannel,
        attachment_size_limit: int,
        created_at: float,
        source_message_id: int | None = None,
    ) -> None:
        self._fake = fake
        #: The INTERACTION_CREATE ``d`` object exactly as dispatched.
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.user = user
        self.channel = channel
        self.guild_id: int | None = channel.guild_id
        self.attachment_size_limit = attachment_size_limit
        #: Emulated-clock time when the interaction was dispatched (start of the 3 s and 15 min windows).
        self.created_at = created_at
        #: For component interactions: the message whose component was used.
        self.source_message_id = source_message_id
        #: The callback type that acknowledged the interaction, once acknowledged.
        self.ack_type: int | None = None
        #: The ``@original`` message id (set by the acknowledging callback).
        self.original_message_id: int | None = None
        #: True from a type-5 defer until the loading message is first edited (Discord then turns the first
        #: followup into an edit of ``@original``).
        self.original_loading = False
        self.followup_ids: list[int] = []
        #: The modal the bot opened with a type-9 callback, if any.
        self.modal: dict[str, Any] | None = None
        #: The choices the bot answered an autocomplete interaction with (type-8 callback), if any.
        self.choices: list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"<FakeInteraction id={self.id} type={self.type} ack_type={self.ack_type}>"

    @property
    def acked(self) -> bool:
        """Whether a callback was accepted."""
        return self.ack_type is not None

    @property
    def original(self) -> dict[str, Any] | None:
        """The stored ``@original`` message (None before an acknowledgement that creates one, or if deleted)."""
        if self.original_message_id is None:
            return None
        return self._fake.messages.get(self.original_message_id)

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Followup messages created with this interaction's token (excluding deleted ones)."""
        return [self._fake.messages[m] for m in self.followup_ids if m in self._fake.messages]

    @property
    def callbacks(self) -> list[RecordedRequest]:
        """Every callback request for this interaction (accepted, rejected or injected failures), in order."""
        prefix = f"/interactions/{self.id}/"
        return [r for r in self._fake.requests if r.path.startswith(prefix)]

    @property
    def requests(self) -> list[RecordedRequest]:
        """All recorded REST requests that carried this interaction's token."""
        return [r for r in self._fake.requests if r.token == self.token]

    async def wait_acked(self, timeout: float = 5.0) -> int:
        """Wait until a callback is accepted; returns the callback type (4, 5, 6, 7 or 9)."""
        await self._fake.wait_until(lambda: self.ack_type is not None, timeout=timeout, what=f"ack of {self!r}")
        assert self.ack_type is not None
        return self.ack_type

    async def wait_original(
        self, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until ``@original`` exists (and satisfies ``where``, e.g. "has attachments"); returns it."""

        def ready() -> bool:
            msg = self.original
            return msg is not None and (where is None or bool(where(msg)))

        await self._fake.wait_until(ready, timeout=timeout, what=f"@original of {self!r}")
        msg = self.original
        assert msg is not None
        return msg

    async def wait_followups(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` followups exist; returns them all."""
        await self._fake.wait_until(
            lambda: len(self.followups) >= count, timeout=timeout, what=f"{count} followups of {self!r}"
        )
        return self.followups


# --------------------------------------------------------------------------------------------------------------
# Gateway bookkeeping
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None
    dropped_by_server: bool = False


@dataclass
class _Session:
    id: str
    seq: int = 0
    #: Every dispatch of this session, for replay on RESUME.
    history: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    connection: _Connection | None = None
    resumable: bool = True
    ended: bool = False
    intents: int = 0
    #: [shard_id, shard_count] from IDENTIFY; None: one connection for everything
    shard: tuple[int, int] | None = None

    def serves(self, guild_id: int | None) -> bool:
        """Whether this session gets a guild's events (Discord: (guild_id >> 22) % shard_count; DMs go to shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id if guild_id is not None else shard_id == 0


_RouteHandler = Callable[["_Ctx"], Awaitable[web.StreamResponse]]


@dataclass
class _Ctx:
    """Everything a REST route handler needs about the current request."""

    request: web.Request
    record: RecordedRequest
    params: dict[str, str]
    body: Any
    files: list[RecordedFile]


