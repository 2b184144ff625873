"""The emulated Discord gateway: one websocket endpoint speaking gateway v10 JSON.

Sessions outlive connections: every dispatch gets the session's next sequence number and is kept
in the session's history, so a RESUME on a new connection replays what the client missed and
then sends RESUMED. A dispatch is serialized when it is sent (later changes to the emulator's
objects do not alter it), and the history forgets what the client acknowledged in a heartbeat.
``zlib-stream`` transport compression is honoured when the client asks for it (discord.py 2.7
does unless ``zstandard`` is installed). For ``zstd-stream`` the emulator sends uncompressed text
frames, which discord.py accepts (it only decompresses binary frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["Gateway", "GatewayConnection", "GatewaySession", "Intent"]

# Opcodes.
DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11


class Intent:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


@dataclass
class GatewaySession:
    """A gateway session: identity, sequence and the history a RESUME replays from."""

    session_id: str
    user_id: int
    intents: int
    shard: tuple[int, int]
    # (sequence number, the dispatch as sent), oldest first.
    history: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=20_000))
    seq: int = 0
    resumable: bool = True
    connection: GatewayConnection | None = None
    ready: bool = False
    resumes: int = 0

    def handles_guild(self, guild_id: int | None) -> bool:
        shard_id, shard_count = self.shard
        if guild_id is None:
            return shard_id == 0
        return (guild_id >> 22) % shard_count == shard_id


def encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class GatewayConnection:
    """One websocket; an outgoing queue keeps frames in the order they were dispatched."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, *, compress: bool) -> None:
        self.ws = ws
        self.request = request
        self.path = request.path
        self.session: GatewaySession | None = None
        self.heartbeats = 0
        self.compressed = compress
        self._compressor = zlib.compressobj() if compress else None
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write(), name="emulator-gateway-writer")

    def send(self, payload: dict[str, Any]) -> None:
        self.send_text(encode(payload))

    def send_text(self, text: str) -> None:
        self._queue.put_nowait(text)

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            if text is None or self.ws.closed:
                return
            try:
                if self._compressor is not None:
                    data = self._compressor.compress(text.encode("utf-8"))
                    data += self._compressor.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def close(self, code: int | None) -> None:
        """Close with ``code``, or drop the TCP connection without a close frame if None."""
        self._queue.put_nowait(None)
        if code is None:
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            return
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await asyncio.wait_for(self.ws.close(code=code), timeout=5)

    async def stop(self) -> None:
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._writer, timeout=5)


IdentifyBuilder = Callable[[GatewaySession], list[tuple[str, dict[str, Any]]]]


class Gateway:
    """Sessions, connections, dispatch and the HELLO/IDENTIFY/RESUME/HEARTBEAT protocol."""

    def __init__(
        self,
        *,
        token: Callable[[], str],
        user_id: Callable[[], int],
        heartbeat_interval: float,
        resume_url: Callable[[], str],
        on_identify: IdentifyBuilder,
        violation: Callable[[str], None],
        changed: Callable[[], None],
        allowed_privileged_intents: int = 0,
    ) -> None:
        self._token = token
        self._user_id = user_id
        self._resume_url = resume_url
        self._on_identify = on_identify
        self._violation = violation
        self._changed = changed
        self.heartbeat_interval = heartbeat_interval
        self.allowed_privileged_intents = allowed_privileged_intents
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[GatewayConnection] = set()
        self.identifies = 0
        self.resumes = 0
        self.invalid_sessions = 0

    # ------------------------------------------------------------------ queries

    def ready_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.ready]

    def is_connected(self) -> bool:
        return any(s.ready and s.connection is not None for s in self.sessions.values())

    # ------------------------------------------------------------------ dispatch

    def dispatch(
        self, event: str, data: dict[str, Any], *, guild_id: int | None, intent: int | None
    ) -> int:
        """Send an event to every session that handles ``guild_id`` and has ``intent``.

        Returns how many sessions got it. Sessions without a live connection keep the event in
        their history for a RESUME.
        """
        delivered = 0
        for session in list(self.sessions.values()):
            if not session.ready or not session.handles_guild(guild_id):
                continue
            if intent is not None and not session.intents & intent:
                continue
            self._send_dispatch(session, event, data)
            delivered += 1
        return delivered

    def _send_dispatch(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        text = encode({"op": DISPATCH, "t": event, "s": session.seq, "d": data})
        session.history.append((session.seq, text))
        if session.connection is not None:
            session.connection.send_text(text)

    # ------------------------------------------------------------------ test controls

    async def drop(self, *, resumable: bool, code: int | None) -> GatewaySession:
        """Close the live connection of the (first) ready session; returns that session."""
        session = next((s for s in self.sessions.values() if s.connection is not None), None)
        if session is None or session.connection is None:
            raise RuntimeError("no connected gateway session to drop")
        connection = session.connection
        session.connection = None
        if not resumable:
            session.resumable = False
        await connection.close(code)
        return session

    def request_reconnect(self) -> GatewaySession:
        session = next((s for s in self.sessions.values() if s.connection is not None), None)
        if session is None or session.connection is None:
            raise RuntimeError("no connected gateway session")
        session.connection.send({"op": RECONNECT, "d": None})
        return session

    async def close(self) -> None:
        for connection in list(self.connections):
            await connection.close(1001)
            await connection.stop()

    # ------------------------------------------------------------------ protocol

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True, heartbeat=None)
        await ws.prepare(request)
        query = request.query
        if query.get("v") != "10":
            self._violation(f"gateway: connected with v={query.get('v')!r}, expected v=10")
        if query.get("encoding", "json") != "json":
            self._violation(f"gateway: encoding {query.get('encoding')!r} is not supported")
            await ws.close(code=4002)
            return ws
        compression = query.get("compress")
        connection = GatewayConnection(ws, request, compress=compression == "zlib-stream")
        self.connections.add(connection)
        connection.send(
            {"op": HELLO, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}}
        )
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._received(connection, message.data)
                elif message.type is WSMsgType.BINARY:
                    self._violation("gateway: binary frame from the client (expected JSON text)")
                    await connection.close(4002)
                    break
        finally:
            self.connections.discard(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
            await connection.stop()
            self._changed()
        return ws

    async def _received(self, connection: GatewayConnection, text: str) -> None:
        try:
            payload = json.loads(text)
            op = payload["op"]
            data = payload.get("d")
        except (ValueError, KeyError, TypeError):
            self._violation(f"gateway: undecodable payload {text[:80]!r}")
            await connection.close(4002)
            return
        if op == HEARTBEAT:
            connection.heartbeats += 1
            session = connection.session
            if session is not None and isinstance(data, int):
                # The client has everything up to `data`: a RESUME never asks for it again.
                while session.history and session.history[0][0] <= data:
                    session.history.popleft()
            connection.send({"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            await self._identify(connection, data or {})
        elif op == RESUME:
            await self._resume(connection, data or {})
        elif op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE, REQUEST_GUILD_MEMBERS):
            if connection.session is None:
                self._violation(f"gateway: op {op} before IDENTIFY")
                await connection.close(4003)
        else:
            self._violation(f"gateway: unknown opcode {op}")
            await connection.close(4001)
        self._changed()

    async def _identify(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            self._violation("gateway: IDENTIFY sent twice on one connection")
            await connection.close(4005)
            return
        if data.get("token") != self._token():
            self._violation("gateway: IDENTIFY with a wrong token")
            await connection.close(4004)
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            self._violation("gateway: IDENTIFY without intents")
            await connection.close(4013)
            return
        disallowed = intents & Intent.PRIVILEGED & ~self.allowed_privileged_intents
        if disallowed:
            self._violation(f"gateway: IDENTIFY asks for privileged intents {disallowed:#x}")
            await connection.close(4014)
            return
        shard = data.get("shard") or [0, 1]
        if not (isinstance(shard, list) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
            self._violation(f"gateway: invalid shard {shard!r}")
            await connection.close(4010)
            return
        self.identifies += 1
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            user_id=self._user_id(),
            intents=intents,
            shard=(int(shard[0]), int(shard[1])),
        )
        self.sessions[session.session_id] = session
        connection.session = session
        session.connection = connection
        events = self._on_identify(session)
        for event, payload in events:
            if event == "READY":
                payload = {**payload, "session_id": session.session_id}
                payload["resume_gateway_url"] = self._resume_url()
                if session.shard != (0, 1):
                    payload["shard"] = list(session.shard)
            self._send_dispatch(session, event, payload)
        session.ready = True

    async def _resume(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            self._violation("gateway: RESUME on a connection that already has a session")
            await connection.close(4005)
            return
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self._token():
            self._violation("gateway: RESUME with a wrong token")
            await connection.close(4004)
            return
        seq = data.get("seq")
        truncated = bool(session and session.history and isinstance(seq, int))
        if truncated and session is not None and session.history[0][0] > seq + 1:
            session.resumable = False  # the events it missed are no longer kept
        if session is None or not session.resumable:
            self.invalid_sessions += 1
            if session is not None:
                self.sessions.pop(session.session_id, None)
            connection.send({"op": INVALID_SESSION, "d": False})
            return
        if session.connection is not None and session.connection is not connection:
            old = session.connection
            session.connection = None
            await old.close(4000)
        for number, text in session.history:
            if seq is None or number > seq:
                connection.send_text(text)
        connection.session = session
        session.connection = connection
        session.resumes += 1
        self.resumes += 1
        self._send_dispatch(session, "RESUMED", {})
