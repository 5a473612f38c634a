"""A loopback TCP proxy that records both directions of every connection, for conformance recordings.

Put it between telephonyd and a real Asterisk (AMI: telephonyd -> proxy -> 5038; FastAGI: Asterisk ->
proxy -> telephonyd) and every chunk is appended to a JSON-lines file as it passes::

    {"t": 12.345678, "conn": 1, "dir": "c2s", "data": "Action: Login\\r\\n..."}

``t`` is seconds since the proxy started, ``conn`` numbers connections from 1, ``dir`` is ``c2s``
(from the connecting side) or ``s2c``, ``open``/``close`` mark a connection's ends, and ``data`` is the
bytes decoded as Latin-1 (one character per byte, so the bytes come back with ``.encode("latin-1")``).
``redact`` replaces the value of header lines (``Secret``, ``Key``) in ``c2s`` data before it is written,
so no secret reaches a recording. `cut` resets every connection and refuses new ones until `restore`
(an AMI cut-and-back). Run as ``python -m tests.fakes.recording_proxy LISTEN_PORT TARGET_HOST:PORT OUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Self


class RecordingProxy:
    def __init__(self, target_host: str, target_port: int, out: Path, *, port: int = 0,
                 redact: tuple[str, ...] = ("Secret", "Key")) -> None:
        self.target_host, self.target_port, self.out = target_host, target_port, Path(out)
        self.port = port
        self.open = True
        self._redact = re.compile(rb"^(" + b"|".join(k.encode() for k in redact) + rb"): [^\r\n]*", re.M | re.I)
        self._started = time.monotonic()
        self._conns = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._file = None

    async def start(self) -> Self:
        self._file = self.out.open("a", encoding="utf-8")
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        await asyncio.sleep(0)
        if self._file is not None:
            self._file.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def cut(self) -> None:
        self.open = False
        for writer in list(self._writers):
            writer.transport.abort()

    def restore(self) -> None:
        self.open = True

    def _log(self, conn: int, direction: str, data: bytes = b"") -> None:
        if direction == "c2s":
            data = self._redact.sub(rb"\1: <redacted>", data)
        record = {"t": round(time.monotonic() - self._started, 6), "conn": conn, "dir": direction,
                  "data": data.decode("latin-1")}
        assert self._file is not None
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        self._conns += 1
        conn = self._conns
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), 5)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        self._log(conn, "open")

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    self._log(conn, direction, data)
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer, "c2s"), pump(up_reader, writer, "s2c"))
        finally:
            self._log(conn, "close")
            self._writers.difference_update((writer, up_writer))


def read_recording(path: Path) -> dict[int, dict[str, bytes]]:
    """{conn: {"c2s": bytes, "s2c": bytes}} of a recording, each direction concatenated in order."""
    conns: dict[int, dict[str, bytes]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["dir"] in ("c2s", "s2c"):
            entry = conns.setdefault(record["conn"], {"c2s": b"", "s2c": b""})
            entry[record["dir"]] += record["data"].encode("latin-1")
    return conns


async def _main(listen: int, target: str, out: str) -> None:
    host, _, port = target.rpartition(":")
    async with RecordingProxy(host, int(port), Path(out), port=listen):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
