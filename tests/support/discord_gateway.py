"""FakeDiscord's gateway: HELLO, IDENTIFY, RESUME, heartbeats, dispatches, and the faults tests inject
(drops, invalidated sessions, reconnect requests). A mixin: the state lives in ``FakeDiscord.__init__``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from .discord_interaction import _Connection, _Session
from .discord_protocol import (
    INTENT_GUILDS,
    OP_DISPATCH,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_INVALID_SESSION,
    OP_RECONNECT,
    OP_REQUEST_GUILD_MEMBERS,
    OP_RESUME,
)


class GatewayMixin:
    """Methods of :class:`FakeDiscord`; see the module docstring."""

    # ----------------------------------------------------------------------------------------------------------
    # Gateway
    # ----------------------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether some bot has an identified or resumed gateway connection right now."""
        return any(c.session is not None for c in self._connections)

    async def _send(self, conn: _Connection, frame: dict[str, Any]) -> None:
        async with conn.lock:
            if conn.ws.closed:
                return
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await conn.ws.send_str(json.dumps(frame))

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        # discord.py asks for zlib-stream compression; it inflates only binary frames, so plain text JSON
        # frames are fine and the query string is ignored.
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws=ws, request=request)
        self._connections.append(conn)
        self._notify()
        try:
            await self._send(conn, {"op": OP_HELLO, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload")
                    break
                self.gateway_received.append(payload)
                await self._on_gateway_payload(conn, payload)
                self._notify()
        finally:
            self._connections.remove(conn)
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
                # A client that closes with 1000/1001 ends its session (Discord invalidates it); anything else
                # (abrupt loss, discord.py's 4000 on reconnect) leaves it resumable.
                clean_close = not conn.dropped_by_server and ws.close_code in (1000, 1001)
                if clean_close or not session.resumable:
                    session.ended = True
            self._notify()
        return ws

    async def _on_gateway_payload(self, conn: _Connection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == OP_HEARTBEAT:
            await self._send(conn, {"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            await self._identify(conn, data or {})
        elif op == OP_RESUME:
            await self._resume(conn, data or {})
        elif op == OP_REQUEST_GUILD_MEMBERS:
            d = data or {}
            await self._dispatch_to(
                conn.session,
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": d.get("guild_id"),
                    "members": [],
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "nonce": d.get("nonce"),
                },
            )
        # Presence updates and anything else need no answer.

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if self.token is not None and data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identify_count += 1
        raw_shard = data.get("shard")
        shard = (int(raw_shard[0]), int(raw_shard[1])) if raw_shard else None
        session = _Session(id=secrets.token_hex(16), intents=int(data.get("intents") or 0), shard=shard)
        served = [g for g in self.guilds.values() if g.bot_member and session.serves(g.id)]
        if len(served) > self.max_guilds_per_shard:  # Discord: "Sharding required"
            await conn.ws.close(code=4011, message=b"Sharding required.")
            return
        self._sessions[session.id] = session
        session.connection = conn
        conn.session = session
        ready = {
            "v": 10,
            "user": self.bot_user.to_dict() | {"verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in served],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        await self._dispatch_to(session, "READY", ready)
        if session.intents & INTENT_GUILDS:
            # GUILD_CREATE belongs to the GUILDS intent: without it Discord leaves READY's guilds unavailable,
            # and so does the emulator, so a bot that relies on guild names without the intent fails here too.
            for guild in served:
                await self._dispatch_to(session, "GUILD_CREATE", self._guild_dict(guild, full=True))

    async def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        self.resume_count += 1
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or session.ended or not session.resumable:
            self.invalid_session_count += 1
            await self._send(conn, {"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        old = session.connection
        if old is not None and old is not conn:
            old.session = None
            old.dropped_by_server = True
            with contextlib.suppress(Exception):
                await old.ws.close(code=4000)
        session.connection = conn
        conn.session = session
        last_seq = int(data.get("seq") or 0)
        for seq, frame in list(session.history):
            if seq > last_seq:
                await self._send(conn, frame)
        self.resumed_count += 1
        await self._dispatch_to(session, "RESUMED", {"_trace": ["fake-discord"]})

    async def _dispatch_to(self, session: _Session | None, event: str, data: dict[str, Any]) -> None:
        if session is None:
            return
        session.seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        session.history.append((session.seq, frame))
        if session.connection is not None:
            await self._send(session.connection, frame)

    def _live_sessions(self) -> list[_Session]:
        return [s for s in self._sessions.values() if not s.ended]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway dispatch to every live bot session (buffered for replay if disconnected)."""
        sessions = self._live_sessions()
        if not sessions:
            raise RuntimeError(f"cannot dispatch {event}: no bot session is connected to the emulator")
        guild = data.get("guild_id") if isinstance(data, dict) else None
        for session in sessions:
            if session.serves(int(guild) if guild else None):  # each guild's events to the shard that owns it
                await self._dispatch_to(session, event, data)
        self._notify()

    async def drop_gateway(self, code: int | None = None, timeout: float = 5.0) -> None:
        """Cut every gateway connection: abruptly (``code=None``, like a network loss) or with a close frame.

        Sessions stay resumable (unless :meth:`invalidate_sessions` was called), so discord.py RESUMEs.
        Returns once the emulator has seen the connections go.
        """
        conns = list(self._connections)
        for conn in conns:
            conn.dropped_by_server = True
            if code is None:
                transport = conn.request.transport
                if transport is not None:
                    transport.abort()
            else:
                # Do not wait for the client's close reply here; the handler finishes when it arrives.
                asyncio.ensure_future(conn.ws.close(code=code))
        await self.wait_until(
            lambda: all(c not in self._connections for c in conns), timeout=timeout, what="gateway drop"
        )

    def invalidate_sessions(self) -> None:
        """Make every existing session non-resumable: the next RESUME gets op 9 (d=false), forcing IDENTIFY."""
        for session in self._sessions.values():
            session.resumable = False
            if session.connection is None:
                session.ended = True

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT on every connection (discord.py then reconnects and resumes)."""
        for conn in list(self._connections):
            await self._send(conn, {"op": OP_RECONNECT, "d": None, "s": None, "t": None})

