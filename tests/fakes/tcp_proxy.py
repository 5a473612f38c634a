"""A TCP proxy on loopback that can play a peer's restart: cut every connection, refuse new ones for
a while, then accept again. Put it between the daemon and MariaDB or Mosquitto to fake an outage
without touching the machine's server.

Usage::

    async with TCPProxy("127.0.0.1", 3306) as proxy:
        url = f"mysql+aiomysql://root@127.0.0.1:{proxy.port}/db"
        proxy.cut()       # every open connection reset, new ones refused (closed at once)
        proxy.restore()   # new connections are forwarded again

A database node that dies or hangs: ``await proxy.kill()`` closes the listener too (connection
refused) and resets every connection; ``proxy.freeze()`` keeps everything open but forwards nothing;
``await proxy.revive()`` listens again on the same port and forwards again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Self


class TCPProxy:
    """Forwards ``127.0.0.1:<port>`` (port chosen by the system) to ``target_host:target_port``.

    ``accepted``: connections forwarded so far; ``refused``: connections closed because the proxy
    was cut. While cut, a client's connect succeeds (the listener stays bound, like a host whose
    service restarts behind a load balancer) and is reset at once, so clients see an error fast.
    """

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_host, self.target_port, self.host = target_host, target_port, host
        self.port = 0
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self.frozen = False
        self._open = True
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._open = False
        self._reset_all()  # every forwarding task then sees its sockets closed and ends
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=6.0)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def is_cut(self) -> bool:
        return not self._open

    @property
    def open_links(self) -> int:
        return len(self._links)

    def cut(self) -> None:
        """Reset every forwarded connection (both sides) and refuse new ones until `restore`."""
        self._open = False
        self.cuts += 1
        self._reset_all()

    def restore(self) -> None:
        """Forward new connections again."""
        self._open = True

    async def kill(self) -> None:
        """A node that died: the listener closes (connection refused) and every connection is reset."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()

    def freeze(self) -> None:
        """A node that hangs: connections stay open, bytes are held, nothing is answered."""
        self.frozen = True

    async def revive(self) -> None:
        """Listen again on the same port and forward again."""
        self.frozen = False
        self.restore()
        if self._server is None:
            await self.start()

    def _reset_all(self) -> None:
        for client, upstream in list(self._links):
            _reset(client)
            _reset(upstream)
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if not self._open:
                self.refused += 1
                _reset(writer)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port), 5.0
                )
            except (OSError, TimeoutError):
                _reset(writer)
                return
            if not self._open:  # cut while connecting upstream
                self.refused += 1
                _reset(writer)
                _reset(up_writer)
                return
            self.accepted += 1
            link = (writer, up_writer)
            self._links.add(link)
            try:
                frozen = lambda: self.frozen  # noqa: E731
                await asyncio.gather(_pipe(reader, up_writer, frozen), _pipe(up_reader, writer, frozen))
            finally:
                self._links.discard(link)
                writer.close()
                up_writer.close()
        finally:
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frozen: Callable[[], bool]) -> None:
    try:
        while data := await reader.read(65536):
            while frozen():  # a hung peer: hold the bytes, answer nothing
                await asyncio.sleep(0.05)
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), like a peer process that died."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()
