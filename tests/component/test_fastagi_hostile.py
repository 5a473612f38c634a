"""Hostile and broken clients cost only their own session; the event loop keeps running."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from telephonyd.config import FastAGIConfig
from telephonyd.fastagi import AGISession, FastAGIServer
from tests.fakes.agi import FakeChannel, run_session

BLOCK_TIMEOUT_S = 0.5
SLACK_S = 0.3


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
    reader, writer = await asyncio.open_connection(host, port)
    return reader, writer, time.monotonic()


async def _seconds_until_server_closes(reader: asyncio.StreamReader, since: float) -> float:
    """Read (and discard) until EOF or reset; seconds from ``since``."""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        while await asyncio.wait_for(reader.read(65536), 5.0):
            pass
    return time.monotonic() - since


async def oversized(host: str, port: int) -> float:
    reader, writer, since = await _open(host, port)
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        writer.write(b"agi_network_script: " + b"x" * (1 << 20))  # 1 MB, no newline
    elapsed = await _seconds_until_server_closes(reader, since)
    writer.close()
    return elapsed


async def binary(host: str, port: int) -> float:
    reader, writer, since = await _open(host, port)
    writer.write(bytes(range(256)) * 4)
    elapsed = await _seconds_until_server_closes(reader, since)
    writer.close()
    return elapsed


async def silent(host: str, port: int) -> float:
    reader, writer, since = await _open(host, port)
    elapsed = await _seconds_until_server_closes(reader, since)
    writer.close()
    return elapsed


async def trickle(host: str, port: int) -> float:
    """Valid bytes, one every 50 ms: the block deadline is for the whole block, not per read."""
    reader, writer, since = await _open(host, port)
    block = FakeChannel.synthetic().env_block

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):
            for i in range(len(block) - 1):
                writer.write(block[i : i + 1])
                await asyncio.sleep(0.05)

    dripping = asyncio.create_task(drip())
    elapsed = await _seconds_until_server_closes(reader, since)
    dripping.cancel()
    writer.close()
    return elapsed


async def early_close(host: str, port: int) -> None:
    _, writer, _ = await _open(host, port)
    writer.write(FakeChannel.synthetic().env_block[:100])
    await writer.drain()
    writer.close()


async def vanish_after_block(host: str, port: int) -> None:
    _, writer, _ = await _open(host, port)
    writer.write(FakeChannel.synthetic().env_block)
    await writer.drain()
    writer.close()


async def test_hostile_clients_do_not_disturb_the_loop_or_a_valid_session():
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    async def handler(session: AGISession) -> str:
        for name in ("UNIQUEID", "CHANNEL", "DIALSTATUS"):
            await session.get_variable(name)
        return "OK"

    config = FastAGIConfig(listen=["127.0.0.1:0"], block_timeout_s=BLOCK_TIMEOUT_S, command_timeout_s=2.0)
    server = FastAGIServer(config, {"call_log": handler})
    await server.start()
    host, port = server.bound_addresses[0]
    ticking = asyncio.create_task(ticker())
    try:
        results: list[Any] = await asyncio.gather(
            oversized(host, port),
            binary(host, port),
            silent(host, port),
            trickle(host, port),
            early_close(host, port),
            vanish_after_block(host, port),
            run_session(host, port, FakeChannel.synthetic({"DIALSTATUS": "BUSY"})),
        )
        deadline = time.monotonic() + 5.0
        while server.health()["sessions_active"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        ticking.cancel()
        await server.stop(1.0)

    t_oversized, t_binary, t_silent, t_trickle, _, _, valid = results
    assert valid.result == "OK" and valid.closed_by_server
    assert t_oversized < SLACK_S  # rejected as soon as the line passed max_line_bytes
    assert t_binary < SLACK_S  # rejected on the first bytes
    assert BLOCK_TIMEOUT_S * 0.9 <= t_silent <= BLOCK_TIMEOUT_S + SLACK_S
    assert BLOCK_TIMEOUT_S * 0.9 <= t_trickle <= BLOCK_TIMEOUT_S + SLACK_S
    assert max(gaps) < 0.3, max(gaps)
    assert len(gaps) > 20
    counters = server.counters
    assert counters.results == {
        "BLOCK_TOO_LARGE": 1,
        "BLOCK_INVALID": 1,
        "BLOCK_TIMEOUT": 2,
        "CLIENT_GONE": 1,
        "ERROR": 1,  # the handler met the closed socket on its first command
        "OK": 1,
    }
    assert server.health()["sessions_active"] == 0
