"""`SocketIOHub`: the dashboard's events on a Socket.IO endpoint (python-socketio on the aiohttp app).

Mounted at ``/socket.io/`` (Engine.IO v4: polling and WebSocket). Access needs the admin token, given
as the connect auth payload ``{"token": "<http.admin_token>"}`` (what a browser can send) or an
``Authorization: Bearer`` header; otherwise the connect is refused ("admin token required"). On
connect a client gets ``agents:snapshot``, then every event of `presence.dashboard` (to the room
``agents``). Events wait in one bounded queue drained by one task; when it is full the oldest is
dropped (counted in ``dropped``) and clients should re-read the snapshot after
``extension:statuses_refreshed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

ROOM = "agents"
PATH = "/socket.io/"


class _Bearer:
    """Just enough of a request for `HTTPServer.authorized` (it reads the Authorization header)."""

    remote = None  # a token alone says nothing of the client's address

    def __init__(self, token: str) -> None:
        self.headers = {"Authorization": f"Bearer {token}"}


class SocketIOHub:
    """``snapshot()``: the ``agents:snapshot`` data. ``authorized(request_like)``: the HTTP server's
    admin check. ``queue_size``: events waiting for the sender before the oldest is dropped.
    ``cors_origins``: browser origins allowed besides the same origin."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], authorized: Callable[[Any], bool], *,
                 queue_size: int = 10_000, send_timeout_s: float = 10.0, cors_origins: list[str] | None = None) -> None:
        import socketio  # python-socketio: only loaded when the endpoint is mounted

        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=list(cors_origins or []),
                                        logger=False, engineio_logger=False)
        self._refused = socketio.exceptions.ConnectionRefusedError
        self._snapshot = snapshot
        self._authorized = authorized
        # (seq, event, data, only this sid or None for the room)
        self._queue: deque[tuple[int, str, dict[str, Any], str | None]] = deque(maxlen=queue_size)
        self._seq = 0
        self._joined: dict[str, int] = {}  # sid -> seq of the last event queued before its snapshot
        self._sender: asyncio.Task[None] | None = None
        self.send_timeout_s = send_timeout_s
        self.connections_total = 0
        self.dropped = 0
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)

    def routes(self) -> list[web.RouteDef]:
        """Engine.IO's handler for GET/POST/OPTIONS at ``/socket.io/`` (auth is checked on connect)."""
        handler = self.sio.handle_request
        return [web.route(method, PATH, handler) for method in ("GET", "POST", "OPTIONS")]

    def health(self) -> dict[str, Any]:
        return {"ok": True, "clients": self.clients, "connections_total": self.connections_total,
                "queued": len(self._queue), "dropped": self.dropped}

    # -- presence side ---------------------------------------------------------------------------

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Queue one event for every connected client (synchronous, never blocks)."""
        if not self._joined:
            return
        self._enqueue(event, data, None)

    def _enqueue(self, event: str, data: dict[str, Any], to: str | None) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._seq += 1
        self._queue.append((self._seq, event, data, to))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send(), name="socketio-sender")

    async def _send(self) -> None:
        while self._queue:
            seq, event, data, to = self._queue.popleft()
            # A client that joined after this event was queued has it in its snapshot already.
            skip = [sid for sid, joined in self._joined.items() if joined >= seq] if to is None else None
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    if to is not None:
                        await self.sio.emit(event, data, to=to)
                    else:
                        await self.sio.emit(event, data, room=ROOM, skip_sid=skip or None)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("Socket.IO emit failed", extra={"event": event, "error": type(exc).__name__})

    # -- Socket.IO handlers ----------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        request = environ.get("aiohttp.request")
        allowed = (isinstance(token, str) and self._authorized(_Bearer(token))) or (
            request is not None and self._authorized(request))
        if not allowed:
            log.warning("Socket.IO connect refused", extra={"peer": getattr(request, "remote", None)})
            raise self._refused("admin token required")
        # The snapshot goes through the queue, in order: events queued before it are skipped for
        # this client (the snapshot holds them), every later one reaches it after the snapshot.
        self._joined[sid] = self._seq
        self._enqueue("agents:snapshot", self._snapshot(), sid)
        self.connections_total += 1
        await self.sio.enter_room(sid, ROOM)

    async def _disconnect(self, sid: str, *_args: Any) -> None:
        self._joined.pop(sid, None)

    @property
    def clients(self) -> int:
        return len(self._joined)

    async def close(self, timeout: float = 5.0) -> None:
        """Disconnect every client (server shutdown)."""
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.sio.shutdown()
