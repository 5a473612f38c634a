"""The real FastAGI and HTTP listeners under generated garbage while valid sessions keep completing.

Garbage is generated from a seeded random source (reproducible): random bytes, valid requests with
bytes flipped, inserted or cut, oversized lines, one protocol sent to the other's port. Every garbage
connection must be closed by the server in bounded time, and no valid session may fail meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aiohttp
import pytest
from aiohttp import web

from telephonyd.config import FastAGIConfig, HTTPConfig
from telephonyd.fastagi import AGISession, FastAGIServer
from telephonyd.web import HTTPServer
from telephonyd.web.server import MAX_LINE_BYTES
from tests.fakes.agi import FakeChannel, run_session

SEED = 20260120
CHANNEL = FakeChannel.synthetic({"DIALSTATUS": "BUSY", "HANGUPCAUSE": "17"}, args=["BUSY", "17"], extension="h")
HTTP_REQUEST = b"GET /index.php?unique_id=1&systemDisposition=BUSY HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        pos = rng.randrange(len(out) + 1)
        if kind < 0.4 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif kind < 0.7:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            del out[pos : pos + rng.randint(1, 32)]
    return bytes(out)


def garbage(rng: random.Random, valid: bytes, other: bytes) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 4096)))
    if choice == 1:
        return mutate(rng, valid)
    if choice == 2:
        return valid[: rng.randrange(len(valid))]
    if choice == 3:
        return valid[:20] + b"A" * rng.randint(9000, 70_000)  # an oversized line
    if choice == 4:
        return mutate(rng, other)  # the other listener's protocol
    return b"\r\n" * rng.randint(1, 50) + bytes(rng.randrange(32) for _ in range(rng.randint(1, 64)))


async def throw(host: str, port: int, payload: bytes, half_close: bool, deadline_s: float) -> float | None:
    """Send ``payload``; return how long the server took to close the connection (None: it did not)."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    try:
        writer.write(payload)
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(deadline_s):
            while await reader.read(65536):
                pass
        return time.monotonic() - started
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started  # closed (reset) by the server
    except TimeoutError:
        return None
    finally:
        writer.transport.abort()


async def test_listeners_survive_generated_garbage_while_valid_sessions_complete(caplog: pytest.LogCaptureFixture) -> None:
    async def call_log(session: AGISession) -> str:
        await session.get_variable("DIALSTATUS")
        return "QUEUED"

    callbacks: list[int] = []

    async def index(request: web.Request) -> web.Response:
        callbacks.append(len(request.query_string))
        return web.json_response({"success": True})

    async def status() -> dict:
        return {"ok": True}

    async def ready() -> bool:
        return True

    agi_config = FastAGIConfig(listen="127.0.0.1:0", block_timeout_s=0.5, session_timeout_s=3, command_timeout_s=1)
    fastagi = FastAGIServer(agi_config, {"call_log": call_log})
    http = HTTPServer(HTTPConfig(listen="127.0.0.1:0"), status=status, ready=ready)
    http.add_routes([web.get("/index.php", index)], auth="none")
    await fastagi.start()
    await http.start()
    agi_host, agi_port = fastagi.bound_addresses[0]
    http_host, http_port = http.bound_addresses[0]
    rng = random.Random(SEED)
    try:
        throws = []
        for i in range(160):
            to_agi = i % 2 == 0
            valid, other = (CHANNEL.env_block, HTTP_REQUEST) if to_agi else (HTTP_REQUEST, CHANNEL.env_block)
            host, port = (agi_host, agi_port) if to_agi else (http_host, http_port)
            # A half-open AGI client is closed by the block timeout; HTTP ones by their own EOF.
            half_close = not to_agi or rng.random() < 0.5
            throws.append(throw(host, port, garbage(rng, valid, other), half_close, deadline_s=5.0))

        async def valid_agi() -> str | None:
            return (await run_session(agi_host, agi_port, CHANNEL, timeout=5)).result

        async def valid_http(client: aiohttp.ClientSession) -> int:
            async with client.get(f"http://{http_host}:{http_port}/index.php?unique_id=7") as resp:
                await resp.read()
                return resp.status

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
            results = await asyncio.gather(*throws, *(valid_agi() for _ in range(30)),
                                           *(valid_http(client) for _ in range(30)))
            closed, agi_results, http_results = results[:160], results[160:190], results[190:]
            assert agi_results == ["QUEUED"] * 30
            assert http_results == [200] * 30
            assert all(t is not None for t in closed), "a garbage connection was left open"
            assert max(closed) < agi_config.block_timeout_s + 2.0

            # A 100 KB query never reaches a handler: the request line is refused by the parser.
            before = len(callbacks)
            async with client.get(f"http://{http_host}:{http_port}/index.php?x={'9' * 100_000}") as resp:
                assert resp.status == 400
                assert await resp.text() == "400 Bad Request"  # the request line is not echoed back
            assert len(callbacks) == before
            assert all(n < MAX_LINE_BYTES for n in callbacks)
            async with client.get(f"http://{http_host}:{http_port}/healthz") as resp:
                assert resp.status == 200

        deadline = time.monotonic() + 5
        while fastagi.health()["sessions_active"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        health = fastagi.health()
        assert health["ok"] and health["sessions_active"] == 0
        assert {"BLOCK_INVALID", "BLOCK_TOO_LARGE"} <= set(health["results"])
        # Garbage is refused or answered, never a crash: nothing logged at ERROR (no traceback), and the
        # HTTP parser's refusals are single warnings without the request bytes.
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-3000:]
        refusals = [r for r in caplog.records if r.getMessage() == "HTTP request refused by the parser"]
        assert refusals and not any("999999" in str(vars(r)) for r in refusals)
        assert (await run_session(agi_host, agi_port, CHANNEL)).result == "QUEUED"
    finally:
        await http.stop(1)
        await fastagi.stop(1)
