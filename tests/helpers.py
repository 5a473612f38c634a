"""Small helpers shared by tests of several edges."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

C = TypeVar("C")

#: Ports handed out by `free_port` in this process, never handed out twice.
_GIVEN: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that binds on ``host`` now, for a daemon the test starts later.

    Chosen at random in 20000-32767, below Linux's ephemeral range (``ip_local_port_range``, 32768
    and up): a port the kernel assigned for the test's own outgoing connections (floods, clients) can
    never be the one the daemon is then told to listen on, as it could with a port-0 pick.
    """
    for _ in range(200):
        port = random.randrange(20000, 32768)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free TCP port in 20000-32767")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length), in order, without empty pieces."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return [p for p in pieces if p]


@contextlib.asynccontextmanager
async def running(component: C, stop_timeout: float = 2.0) -> AsyncIterator[C]:
    """A long-running component (start/run/stop) started for the block; its run() must end after stop."""
    comp: Any = component
    await comp.start()
    task = asyncio.create_task(comp.run())
    try:
        yield component
    finally:
        await comp.stop(stop_timeout)
        await asyncio.wait_for(task, stop_timeout + 1.0)


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]], timeout: float = 10.0, what: str = "condition",
    interval: float = 0.01,
) -> Any:
    """Poll ``condition`` (sync or async) every ``interval`` s until truthy and return its value;
    fail with `AssertionError` naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
