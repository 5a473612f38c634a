"""Asterisk's side of a recorded FastAGI dialogue (tests.fakes.recording_proxy JSON lines), replayed.

In the recording ``c2s`` is what Asterisk sent (the ``agi_*`` block, then one reply per command, an
unsolicited ``HANGUP`` line where it came) and ``s2c`` what telephonyd sent (its commands). `replay`
connects to a FastAGI server the way Asterisk did, sends the recorded block, and answers each command
with the recorded reply only if the command is the recorded one, byte for byte; anything else stops
the replay and is returned as a divergence (no reply is made up for a command Asterisk never saw).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class AGIReplayResult:
    commands: list[str] = field(default_factory=list)   # what the server under test sent
    divergence: str | None = None
    closed_by_server: bool = False


def split_dialogue(c2s: bytes, s2c: bytes) -> tuple[bytes, list[list[bytes]], list[bytes]]:
    """(block, replies per command, commands): each reply list holds the recorded lines (``HANGUP``
    lines included, in place) up to and including the reply line."""
    block, sep, rest = c2s.partition(b"\n\n")
    block += sep
    commands = [line + b"\n" for line in s2c.split(b"\n") if line]
    lines = [line + b"\n" for line in rest.split(b"\n") if line]
    replies: list[list[bytes]] = []
    current: list[bytes] = []
    for line in lines:
        current.append(line)
        if line != b"HANGUP\n" and not line.startswith(b"100 "):
            replies.append(current)
            current = []
    if current:
        replies.append(current)
    return block, replies, commands


async def replay(host: str, port: int, c2s: bytes, s2c: bytes, *, timeout: float = 10.0) -> AGIReplayResult:
    block, replies, commands = split_dialogue(c2s, s2c)
    result = AGIReplayResult()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(block)
        for index, expected in enumerate(commands):
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                result.closed_by_server = True
                result.divergence = f"closed before command {index + 1} ({expected!r})"
                return result
            result.commands.append(line.decode("utf-8", "replace").rstrip("\n"))
            if line != expected:
                result.divergence = f"command {index + 1}: sent {line!r}, recorded {expected!r}"
                return result
            if index < len(replies):
                writer.write(b"".join(replies[index]))
        result.closed_by_server = await asyncio.wait_for(reader.read(), timeout) == b""
    finally:
        writer.close()
    return result
