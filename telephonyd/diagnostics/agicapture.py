"""``telephonyd capture --agi DURATION FILE``: record live FastAGI sessions, secrets masked.

A recording proxy: for DURATION seconds it listens on ``--listen`` (default ``127.0.0.1:4574``) and
passes every connection through to the daemon's first ``fastagi.listen`` address, byte for byte,
writing each line of both directions to FILE (JSON lines: a header ``{"capture": "agi", "format":
1, "started_at", "upstream"}``, then ``{"t": <s since start>, "session": n, "from": "asterisk" |
"daemon", "line": "..."}``). Point a test dialplan's ``AGI(agi://<listen>/call_log)`` at it.
Masked before anything is written: ``agi_*`` block values whose name looks secret
(`capture.mask_value`), the value of ``SET VARIABLE``/``GET VARIABLE`` lines and replies about such
a name, and URL passwords anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .capture import MASK, _SECRET_KEYS, mask_value

#: Seconds a proxied read or the connect to the daemon may take.
IO_TIMEOUT_S = 30.0
_VARIABLE = re.compile(r'^(SET|GET) (?:FULL )?VARIABLE "?([^" ]+)"?', re.IGNORECASE)


class AGIRecorder:
    """The proxy. ``upstream``: (host, port) of the daemon's FastAGI listener."""

    def __init__(self, upstream: tuple[str, int], out: IO[str]) -> None:
        self.upstream = upstream
        self.out = out
        self.started = time.monotonic()
        self.sessions = 0
        self.lines = 0

    def record(self, session: int, source: str, line: str, secret_pending: list[bool]) -> None:
        text = line.rstrip("\r\n")
        if source == "asterisk" and ": " in text:
            key, _, value = text.partition(": ")
            text = f"{key}: {mask_value(key.removeprefix('agi_'), value)}"
        else:
            text = mask_value("", text)
        if source == "daemon":
            match = _VARIABLE.match(text)
            if match and _SECRET_KEYS.match(match.group(2)):
                secret_pending[0] = True
                if match.group(1).upper() == "SET":
                    text = f"SET VARIABLE {match.group(2)} {MASK}"
        elif secret_pending[0] and text.startswith("200 result="):
            secret_pending[0] = False
            text = re.sub(r"\(.*\)$", f"({MASK})", text)
        self.lines += 1
        self.out.write(json.dumps({"t": round(time.monotonic() - self.started, 3), "session": session,
                                   "from": source, "line": text}) + "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        session = self.sessions
        secret_pending = [False]
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.upstream), IO_TIMEOUT_S)
        except (OSError, TimeoutError):
            writer.close()
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pipe(reader, up_writer, session, "asterisk", secret_pending))
                group.create_task(self._pipe(up_reader, writer, session, "daemon", secret_pending))
        except* (OSError, TimeoutError, ValueError):  # reset, silent peer, a line over 64 KiB
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: int, source: str,
                    secret_pending: list[bool]) -> None:
        while True:
            line = await asyncio.wait_for(reader.readline(), IO_TIMEOUT_S)
            if not line:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            self.record(session, source, line.decode("utf-8", "replace"), secret_pending)
            writer.write(line)
            await writer.drain()


async def capture_agi(upstream: tuple[str, int], listen: tuple[str, int], duration_s: float, path: Path,
                      say: Callable[[str], None], on_listening: Callable[[int], Any] | None = None) -> tuple[int, int]:
    """Proxy and record for ``duration_s``; returns (sessions, lines). ``on_listening(port)`` is
    called once bound (port 0 picks a free one)."""
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"capture": "agi", "format": 1, "started_at": round(time.time(), 3),
                              "upstream": f"{upstream[0]}:{upstream[1]}"}) + "\n")
        recorder = AGIRecorder(upstream, out)
        server = await asyncio.start_server(recorder.handle, listen[0], listen[1])
        port = server.sockets[0].getsockname()[1]
        say(f"recording FastAGI on {listen[0]}:{port} -> {upstream[0]}:{upstream[1]} for {duration_s:g} s")
        if on_listening is not None:
            on_listening(port)
        try:
            await asyncio.sleep(duration_s)
        finally:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5.0)
    return recorder.sessions, recorder.lines
