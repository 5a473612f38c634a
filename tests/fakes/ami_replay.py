"""Asterisk's side of a recorded AMI dialogue (tests.fakes.recording_proxy JSON lines), played to a client.

Each recorded connection is played to one accepted connection, in order: the banner, then every message
Asterisk sent, with the recorded gaps (capped at ``max_gap_s``). A reply (or list item) to a recorded
action is held until the client has sent an action with the same name and fields (ActionID aside; the
concurrent contacts and presence listings may come in another order than recorded) and goes out with
the client's ActionID; events go out as recorded. When the recorded connection ends, the connection
is closed, as Asterisk (or the proxy cutting it) did. A ``Ping`` is answered with a recorded Ping reply
whenever it comes (the keepalive is clocked, not part of the scenario); a recorded Logoff (the daemon
stopping in the recorded run) is not waited for.

What the client sent is kept per connection (`sent`); `unexpected` holds actions with no recorded
counterpart (they get no reply: a real Asterisk was never asked), `missing` recorded actions the
client never sent within ``wait_s``. ``prompt(fields)``, when given, is called once for a recorded action
the client has not sent ``grace_s`` after the replay reached it: how a test plays what made telephonyd
send it in the recorded run (``telephonyd refresh``), which is not in Asterisk's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Self

from tests.fakes.ami_replies import fill, frame, key_of, messages

Fields = tuple[tuple[str, str], ...]
_IGNORED = {"actionid", "secret", "key"}


def _parse_actions(data: bytes) -> list[tuple[str, Fields]]:
    """(ActionID, fields without ActionID/Secret/Key) of every action in a client's byte stream."""
    out = []
    for block in data.split(b"\r\n\r\n"):
        pairs = [ln.partition(": ") for ln in block.decode("latin-1").split("\r\n") if ln]
        if not pairs:
            continue
        aid = next((v for k, _, v in pairs if k.lower() == "actionid"), "")
        out.append((aid, tuple((k, v) for k, _, v in pairs if k.lower() not in _IGNORED)))
    return out


def _name(fields: Fields) -> str:
    return next((v for k, v in fields if k.lower() == "action"), "")


@dataclass
class RecordedConnection:
    banner: bytes
    actions: dict[str, Fields]                      # recorded ActionID -> fields
    s2c: list[tuple[float, bytes]]                  # (time, message) after the banner


def load(path: Path) -> list[RecordedConnection]:
    chunks: dict[int, dict[str, list[tuple[float, bytes]]]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["dir"] in ("c2s", "s2c"):
            chunks.setdefault(record["conn"], {"c2s": [], "s2c": []})[record["dir"]].append(
                (record["t"], record["data"].encode("latin-1")))
    conns = []
    for conn in sorted(chunks):
        c2s = b"".join(d for _, d in chunks[conn]["c2s"])
        actions = dict(_parse_actions(c2s))
        timed: list[tuple[float, bytes]] = []
        buffer, banner = b"", b""
        for t, data in chunks[conn]["s2c"]:
            buffer += data
            if not banner:
                banner, _, buffer = buffer.partition(b"\r\n")
                banner += b"\r\n"
            *complete, buffer = buffer.split(b"\r\n\r\n")
            timed.extend((t, m) for m in complete if m.strip(b"\r\n"))
        conns.append(RecordedConnection(banner, actions, timed))
    return conns


@dataclass
class PlayedConnection:
    sent: list[Fields] = field(default_factory=list)


class AMIReplay:
    def __init__(self, recording: Path, *, max_gap_s: float = 0.3, wait_s: float = 5.0, grace_s: float = 1.0,
                 prompt: Callable[[Fields], None] | None = None) -> None:
        self.recorded = load(recording)
        self.max_gap_s, self.wait_s, self.grace_s = max_gap_s, wait_s, grace_s
        self.prompt = prompt
        self.prompted: list[Fields] = []
        self.port = 0
        self.played: list[PlayedConnection] = []
        self.unexpected: list[Fields] = []
        self.missing: list[Fields] = []
        self.finished = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        ping = next((m for c in self.recorded for _, m in c.s2c if b"\r\nPing: Pong" in m), None)
        self._ping = ping

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = len(self.played)
        if index >= len(self.recorded):
            writer.transport.abort()  # the recording has no further connection: Asterisk stays away
            self._tasks.discard(task)
            return
        conn, played = self.recorded[index], PlayedConnection()
        self.played.append(played)
        waiting: list[tuple[str, Fields]] = []  # live (ActionID, fields) in arrival order
        assigned: dict[str, str] = {}           # recorded ActionID -> the live one it answers
        given_up: set[str] = set()              # recorded ActionIDs the client never sent
        arrived = asyncio.Event()

        async def read() -> None:
            buffer = b""
            while data := await reader.read(65536):
                buffer += data
                *blocks, buffer = buffer.split(b"\r\n\r\n")
                for aid, fields in _parse_actions(b"\r\n\r\n".join(blocks)):
                    played.sent.append(fields)
                    if _name(fields).lower() == "ping" and self._ping is not None:
                        writer.write(frame([fill(messages(self._ping)[0], {"ActionID": aid})]))
                    else:
                        waiting.append((aid, fields))
                        arrived.set()

        reading = asyncio.create_task(read())
        try:
            writer.write(conn.banner)
            previous: float | None = None
            for t, message in conn.s2c:
                if previous is not None:
                    await asyncio.sleep(min(self.max_gap_s, max(0.0, t - previous)))
                previous = t
                recorded_aid = key_of(message, "ActionID")
                fields = conn.actions.get(recorded_aid)
                if fields is None:
                    writer.write(message + b"\r\n\r\n")
                    continue
                if _name(fields).lower() in ("ping", "logoff"):
                    continue  # the keepalive is clocked; Logoff is the recorded daemon stopping
                if recorded_aid in given_up:
                    continue
                live = assigned.get(recorded_aid)
                if live is None:
                    live = await self._match(waiting, set(assigned.values()), arrived, fields)
                    if live is not None:
                        assigned[recorded_aid] = live
                if live is None:
                    given_up.add(recorded_aid)
                    self.missing.append(fields)
                    continue
                writer.write(fill(message, {"ActionID": live}) + b"\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            used = set(assigned.values())
            self.unexpected.extend(f for aid, f in waiting if aid not in used and _name(f).lower() != "logoff")
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await reading
            writer.transport.abort()
            if index == len(self.recorded) - 1:
                self.finished.set()
            self._tasks.discard(task)

    async def _match(self, waiting: list[tuple[str, Fields]], used: set[str], arrived: asyncio.Event,
                     fields: Fields) -> str | None:
        """The live ActionID of the first unanswered client action equal to ``fields``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        prompt_at = loop.time() + self.grace_s
        while True:
            for aid, live in waiting:
                if live == fields and aid not in used:
                    return aid
            if self.prompt is not None and loop.time() >= prompt_at:
                self.prompted.append(fields)
                self.prompt(fields)
                prompt_at = deadline + 1
            remaining = min(deadline, prompt_at) - loop.time()
            if remaining <= 0:
                return None
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)
