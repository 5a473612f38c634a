"""`AgentStream`: the ``GET /ws/agents`` WebSocket feed of agent presence.

On connect a client gets one ``{"type": "agents:snapshot", "agents": [...]}`` with every agent, then
``{"type": "agent:status", "endpoint", "state", "online", "since", "seq"}`` for each change and
``{"type": "agent:removed", "endpoint", "seq"}`` when an endpoint is retired. The snapshot and the
registration for deltas happen in one step, so no change falls between them.

Each client has its own bounded queue and writer task: a client that cannot keep up (its queue is
full) is dropped (close code 1013, "try again later") without slowing the others. Messages from the
client are read and ignored (control frames keep the connection alive; ``heartbeat`` pings detect
dead peers). `close` ends every connection with 1001 ("going away").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..config import PresenceConfig

log = logging.getLogger(__name__)

_CLOSE = object()


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    request: web.Request
    queue: asyncio.Queue[Any]
    writer: asyncio.Task[None] | None = None
    close_code: int = WSCloseCode.OK
    close_reason: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class AgentStream:
    """WebSocket hub. ``agents``: returns every agent's current status (objects with ``as_dict()``).

    ``queue_size``: messages that may wait for one client (>= 2) before it is dropped.
    ``heartbeat_s``: WebSocket ping interval. ``send_timeout_s``: longest wait for one send.
    Connect it as a presence listener: ``presence.add_listener(stream.publish_event)``.
    """

    def __init__(
        self,
        agents: Callable[[], Iterable[Any]],
        *,
        queue_size: int = 256,
        heartbeat_s: float = 30.0,
        send_timeout_s: float = 10.0,
        snapshot: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._agents = agents
        #: The first message of a connection; default ``{"type": "agents:snapshot", "agents": [...]}``.
        self._snapshot = snapshot or (lambda: {"type": "agents:snapshot", "agents": [a.as_dict() for a in self._agents()]})
        self.queue_size = max(2, queue_size)
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = send_timeout_s
        self._clients: set[_Client] = set()
        self._closing = False
        self.connections_total = 0
        self.dropped_slow = 0

    @classmethod
    def for_config(cls, config: PresenceConfig, agents: Callable[[], Iterable[Any]],
                   snapshot: Callable[[], dict[str, Any]] | None = None) -> AgentStream:
        """The stream with the ``presence.ws_*`` settings."""
        return cls(agents, queue_size=config.ws_queue_size, heartbeat_s=config.ws_heartbeat_s,
                   send_timeout_s=config.ws_send_timeout_s, snapshot=snapshot)

    @property
    def clients(self) -> int:
        return len(self._clients)

    def health(self) -> dict[str, Any]:
        return {"ok": True, "state": "closed" if self._closing else "open", "clients": len(self._clients),
                "connections_total": self.connections_total, "dropped_slow": self.dropped_slow}

    # -- presence side ---------------------------------------------------------------------------

    def publish_event(self, event: Any) -> None:
        """Queue a presence event for every client; drop the clients whose queue is full."""
        if event.kind == "status":
            self.publish_message({"type": "agent:status", **event.as_dict()})
        elif event.kind == "retired":
            self.publish_message({"type": "agent:removed", **event.as_dict()})

    def publish_message(self, body: dict[str, Any]) -> None:
        """Queue one JSON message for every client; drop the clients whose queue is full."""
        if not self._clients:
            return
        message = _encode(body)
        for client in list(self._clients):
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(client, WSCloseCode.TRY_AGAIN_LATER, "slow consumer")
                self.dropped_slow += 1
                log.warning("WebSocket client dropped: too slow", extra={"peer": client.request.remote})

    def _drop(self, client: _Client, code: int, reason: str) -> None:
        self._clients.discard(client)
        client.close_code, client.close_reason = code, reason
        if client.writer is not None and not client.writer.done():
            client.writer.cancel()

    # -- aiohttp handler -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws/agents``."""
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s, max_msg_size=64 * 1024)
        await ws.prepare(request)
        if self._closing:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutting down")
            return ws
        client = _Client(ws, request, asyncio.Queue(self.queue_size))
        # Snapshot and registration without an await in between: no delta can be missed.
        client.queue.put_nowait(_encode(self._snapshot()))
        self._clients.add(client)
        self.connections_total += 1
        client.writer = asyncio.create_task(self._write(client), name="ws-agents-writer")
        reader = asyncio.create_task(self._read(ws), name="ws-agents-reader")
        try:
            await asyncio.wait({client.writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._clients.discard(client)
            for task in (client.writer, reader):
                task.cancel()
            for outcome in await asyncio.gather(client.writer, reader, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("WebSocket client task failed", exc_info=outcome)
            await self._close(client)
            client.done.set()
        return ws

    async def _read(self, ws: web.WebSocketResponse) -> None:
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                return

    async def _write(self, client: _Client) -> None:
        while True:
            message = await client.queue.get()
            if message is _CLOSE:
                return
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    await client.ws.send_str(message)
            except TimeoutError:
                client.close_code, client.close_reason = WSCloseCode.TRY_AGAIN_LATER, "send timeout"
                return
            except (ConnectionError, RuntimeError):
                return

    async def _close(self, client: _Client) -> None:
        if client.ws.closed:
            return
        try:
            async with asyncio.timeout(2.0):
                await client.ws.close(code=client.close_code, message=client.close_reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            transport = client.request.transport
            if transport is not None:
                transport.abort()

    # -- shutdown --------------------------------------------------------------------------------

    async def close(self, timeout: float = 5.0) -> None:
        """Close every connection (1001) and refuse new ones; waits up to ``timeout``."""
        self._closing = True
        clients = list(self._clients)
        for client in clients:
            client.close_code, client.close_reason = WSCloseCode.GOING_AWAY, "shutting down"
            try:
                client.queue.put_nowait(_CLOSE)
            except asyncio.QueueFull:
                self._drop(client, WSCloseCode.GOING_AWAY, "shutting down")
        self._clients.clear()
        if clients:
            waiters = [asyncio.create_task(c.done.wait()) for c in clients]
            _, pending = await asyncio.wait(waiters, timeout=timeout)
            for waiter in pending:
                waiter.cancel()


def _encode(message: dict[str, Any]) -> str:
    """One JSON text per message, shared by every client's queue."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
