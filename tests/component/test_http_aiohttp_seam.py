"""The one seam into aiohttp's per-connection protocol (`telephonyd.web.connections`), against the
installed aiohttp: a request the parser refuses is answered a bare 400 that quotes nothing of it
(its query may hold a token) and logged without it; the connection caps hold; a connection that
completes no request head is closed while one that did is served. Run against the lowest and the
highest aiohttp that ``setup.cfg`` allows when either bound moves."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from telephonyd.config import HTTPConfig
from telephonyd.web import HTTPServer

TOKEN = "tok-5e4f1b9c2a7d"


async def make_server(max_connections: int | None = None, routes: list[web.RouteDef] | None = None,
                      **http: object) -> HTTPServer:
    async def status() -> dict:
        return {"ok": True}

    async def ready() -> bool:
        return True

    server = HTTPServer(HTTPConfig(listen="127.0.0.1:0", **http), status=status, ready=ready,
                        max_connections=max_connections)
    server.add_routes(routes or [], auth="none")
    await server.start()
    return server


async def exchange(host: str, port: int, payload: bytes) -> bytes:
    """Send ``payload``; everything the server answers until it closes (EOF or reset)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    data = b""
    try:
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    writer.close()
    return data


@pytest.mark.parametrize(
    "request_bytes",
    [
        # a control character in the request target
        f"GET /index.php?token={TOKEN}&x=\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        # a request line past MAX_LINE_BYTES
        f"GET /index.php?token={TOKEN}&x={'9' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        # a header line with no colon after a valid request line
        f"GET /index.php?token={TOKEN} HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n".encode(),
    ],
    ids=["bad-char", "long-line", "bad-header"],
)
async def test_parser_refusal_answers_bare_400_and_never_quotes_the_token(
        request_bytes: bytes, caplog: pytest.LogCaptureFixture) -> None:
    server = await make_server()
    host, port = server.bound_addresses[0]
    caplog.set_level(logging.DEBUG)
    try:
        answer = await exchange(host, port, request_bytes)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ", 1)[1].startswith(b"400 Bad Request\r\n")
        assert body == b"400 Bad Request"
        assert TOKEN.encode() not in answer
        assert TOKEN not in caplog.text
        refused = [r for r in caplog.records if r.getMessage() == "HTTP request refused by the parser"]
        assert len(refused) == 1 and refused[0].exc_info is None  # one line, no traceback
        async with aiohttp.ClientSession() as client, client.get(f"http://{host}:{port}/healthz") as resp:
            assert resp.status == 200  # the listener goes on serving
    finally:
        await server.stop(1)


async def test_max_connections_holds_and_frees_a_slot_on_close() -> None:
    server = await make_server(max_connections=3, header_timeout_s=30)
    host, port = server.bound_addresses[0]
    held = [await asyncio.open_connection(host, port) for _ in range(3)]
    try:
        assert await exchange(host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == b""  # reset at accept
        assert server.limits.refused.labels("overload")._value.get() == 1
        assert server.limits.open == 3
        _, writer = held.pop()
        writer.close()
        await writer.wait_closed()
        answer = b""
        for _ in range(50):  # the server sees the close after the client: retry until the slot is free
            answer = await exchange(host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if answer:
                break
        assert b"200 OK" in answer
    finally:
        for _, writer in held:
            writer.close()
        await server.stop(1)


async def test_head_timeout_closes_the_silent_connection_and_spares_the_served_one() -> None:
    server = await make_server(header_timeout_s=0.3)
    host, port = server.bound_addresses[0]
    try:
        silent = await exchange(host, port, b"")
        served = await exchange(host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert silent == b""
        assert served.startswith(b"HTTP/1.1 200 OK")  # answered, then closed when it sent nothing more
        assert server.limits.timeouts.labels("header")._value.get() == 2
        assert server.limits.open == 0
    finally:
        await server.stop(1)


async def test_head_timeout_spares_a_request_being_handled() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="done")

    server = await make_server(header_timeout_s=0.3, routes=[web.get("/slow", slow)])
    host, port = server.bound_addresses[0]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await entered.wait()
        # Two silent connections opened one after the other are closed by their head timers: the
        # slow request's connection, opened before both, has been checked at least twice meanwhile.
        assert await exchange(host, port, b"") == b""
        assert await exchange(host, port, b"") == b""
        assert server.limits.timeouts.labels("header")._value.get() == 2
        release.set()
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"done")
        writer.close()
        assert server.limits.timeouts.labels("header")._value.get() == 2
    finally:
        await server.stop(1)
