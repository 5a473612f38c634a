"""The /ws/agents WebSocket on a real aiohttp server: snapshot then deltas, a slow client dropped
without holding up the others, every socket closed on stop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

from telephonyd.presence.state import AgentRetired, AgentStatus
from telephonyd.presence.stream import AgentStream
from tests.helpers import wait_until

SINCE = "2026-11-21T04:54:15.000Z"


class Agents:
    def __init__(self, *agents: AgentStatus) -> None:
        self.current = {a.endpoint: a for a in agents}

    def __call__(self) -> list[AgentStatus]:
        return [self.current[k] for k in sorted(self.current)]

    def change(self, stream: AgentStream, endpoint: str, state: str, online: bool = True) -> AgentStatus:
        previous = self.current.get(endpoint)
        status = AgentStatus(endpoint, state, online, SINCE, (previous.seq if previous else 0) + 1)
        self.current[endpoint] = status
        stream.publish_event(status)
        return status


@contextlib.asynccontextmanager
async def serve(stream: AgentStream) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/ws/agents", stream.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/ws/agents"
    finally:
        await stream.close(2.0)
        await runner.cleanup()


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type == WSMsgType.TEXT, message
    return message.json()


async def test_snapshot_then_deltas_each_with_online() -> None:
    agents = Agents(AgentStatus("1010", "available", True, SINCE, 4), AgentStatus("1011", "offline", False, SINCE, 2))
    stream = AgentStream(agents)
    async with serve(stream) as url, aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        snapshot = await receive(ws)
        assert snapshot == {"type": "agents:snapshot", "agents": [a.as_dict() for a in agents()]}
        agents.change(stream, "1010", "ringing")
        agents.change(stream, "1011", "offline", online=False)
        stream.publish_event(AgentRetired("1011", 4))
        first, second, removed = await receive(ws), await receive(ws), await receive(ws)
        assert first == {"type": "agent:status", "endpoint": "1010", "state": "ringing", "online": True,
                         "since": SINCE, "seq": 5}
        assert second["online"] is False and second["seq"] == 3
        assert removed == {"type": "agent:removed", "endpoint": "1011", "seq": 4}
        # a client arriving now sees the current state in its snapshot
        async with http.ws_connect(url) as late:
            assert (await receive(late))["agents"][0]["state"] == "ringing"
        assert stream.health()["connections_total"] == 2


async def raw_ws_client(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (a tiny receive buffer)."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws/agents HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_slow_client_is_dropped_and_the_others_get_everything() -> None:
    agents = Agents()
    stream = AgentStream(agents, queue_size=32, send_timeout_s=30)
    async with serve(stream) as url, aiohttp.ClientSession() as http:
        slow = await raw_ws_client(url)
        try:
            async with http.ws_connect(url) as fast:
                assert (await receive(fast))["type"] == "agents:snapshot"
                await wait_until(lambda: stream.clients == 2, timeout=5, what="two WebSocket clients")
                name = "agent-" + "x" * 4000  # big messages fill the slow peer's buffers sooner
                received: list[dict] = []
                sent = 0
                async with asyncio.timeout(30):
                    while stream.dropped_slow == 0:
                        for _ in range(16):
                            agents.change(stream, name, ("available", "on_call")[sent % 2])
                            sent += 1
                        while len(received) < sent:
                            received.append(await receive(fast))
                assert stream.clients == 1
                assert [m["seq"] for m in received] == list(range(1, sent + 1))
                agents.change(stream, name, "ringing")
                assert (await receive(fast))["state"] == "ringing"
        finally:
            slow.close()


async def test_close_ends_every_socket_with_going_away() -> None:
    stream = AgentStream(Agents(AgentStatus("1010", "available", True, SINCE, 1)))
    async with serve(stream) as url, aiohttp.ClientSession() as http:
        clients = [await http.ws_connect(url) for _ in range(3)]
        for ws in clients:
            assert (await receive(ws))["type"] == "agents:snapshot"
        readers = [asyncio.create_task(ws.receive()) for ws in clients]  # clients keep reading
        loop = asyncio.get_running_loop()
        started = loop.time()
        await stream.close(2.0)
        assert loop.time() - started < 1.0  # the close handshakes completed, no timeout
        for ws, reader in zip(clients, readers, strict=True):
            message = await asyncio.wait_for(reader, 5)
            assert message.type == WSMsgType.CLOSE
            assert message.data == WSCloseCode.GOING_AWAY
            await ws.close()
        assert stream.clients == 0
        async with http.ws_connect(url) as refused:
            message = await asyncio.wait_for(refused.receive(), 5)
            assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
            assert refused.close_code == WSCloseCode.GOING_AWAY


@pytest.mark.parametrize("queue_size", [2, 3])
async def test_a_burst_beyond_the_queue_drops_a_client_that_cannot_drain(queue_size: int) -> None:
    """publish_event never waits: a burst larger than the queue (no await between) drops the client."""
    agents = Agents(AgentStatus("1010", "available", True, SINCE, 1))
    stream = AgentStream(agents, queue_size=queue_size)
    async with serve(stream) as url, aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await receive(ws))["type"] == "agents:snapshot"
        for i in range(queue_size + 1):
            agents.change(stream, "1010", ("on_call", "available")[i % 2])
        assert stream.dropped_slow == 1 and stream.clients == 0
        got = []
        while True:
            message = await asyncio.wait_for(ws.receive(), 5)
            if message.type != WSMsgType.TEXT:
                break
            got.append(message.json())
        assert ws.close_code == WSCloseCode.TRY_AGAIN_LATER
        assert len(got) <= queue_size
