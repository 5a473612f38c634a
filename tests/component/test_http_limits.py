"""The HTTP listener's timeouts and connection caps on a real socket: a slow body gets 408, an idle
keep-alive connection and a stalled request head are closed, a client over its cap is reset while
others are served."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from telephonyd.config import HTTPConfig
from telephonyd.web import HTTPServer


async def make_server(**http: object) -> HTTPServer:
    async def status() -> dict:
        return {"ok": True}

    async def ready() -> bool:
        return True

    server = HTTPServer(HTTPConfig(listen="127.0.0.1:0", **http), status=status, ready=ready)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"bytes": len(await request.read())})

    server.add_routes([web.post("/echo", echo)], auth="none")
    await server.start()
    return server


async def read_all(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything until the server closes (EOF or reset)."""
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_slow_body_is_answered_408_and_counted() -> None:
    server = await make_server(body_timeout_s=0.5)
    host, port = server.bound_addresses[0]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
        started = time.monotonic()
        answer = await read_all(reader, 10)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 5
        writer.close()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        assert b'{"bytes": 3}' in await read_all(reader, 10)  # a whole body still reaches the handler
        writer.close()
        assert server.limits.timeouts.labels("body")._value.get() == 1
    finally:
        await server.stop(1)


@pytest.mark.parametrize("first", [b"GET /heal", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"])
async def test_stalled_head_and_idle_keep_alive_are_closed(first: bytes) -> None:
    server = await make_server(header_timeout_s=0.3)
    host, port = server.bound_addresses[0]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(first)
        started = time.monotonic()
        answer = await read_all(reader, 10)
        assert time.monotonic() - started < 5  # closed by the server, at 0.3 to 0.6 s
        assert (b"200 OK" in answer) == first.endswith(b"\r\n\r\n")
        writer.close()
        assert server.limits.timeouts.labels("header")._value.get() == 1
        assert server.limits.open == 0
    finally:
        await server.stop(1)


async def test_client_over_its_cap_is_reset_and_others_are_served() -> None:
    server = await make_server(max_connections_per_client=4, header_timeout_s=30)
    host, port = server.bound_addresses[0]
    held = []
    try:
        for _ in range(6):
            held.append(await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0)))
        closed = [await read_all(reader, 0.5) for reader, _ in held[4:]]
        assert closed == [b"", b""]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"200 OK" in await read_all(reader, 5)
        writer.close()
        assert server.limits.refused.labels("client_cap")._value.get() == 2
        assert server.limits.by_client.get("127.0.0.2") == 4
    finally:
        for _, writer in held:
            writer.close()
        await server.stop(1)
