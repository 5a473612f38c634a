"""``telephonyd capture --ami DURATION FILE``: record live AMI events, secrets masked.

A second AMI login (the ``ami`` section's user, `telephonyd.ami.AMIClient`, so TLS and MD5 login
as the daemon does) records every event it receives for DURATION seconds. The file is JSON lines:
a header ``{"capture": "ami", "format": 1, "started_at": <epoch s>, "host": ...}`` then one
``{"t": <s since start>, "fields": [[key, value], ...]}`` per event, in wire order. Masked before
anything is written (`mask_pairs`): the value of every ``Secret``, ``Key``, ``Password``,
``MD5Secret`` or ``*token*`` field, and the password of any ``scheme://user:password@host`` in a
value. `telephonyd.diagnostics.replay` plays such a file back offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MASK = "********"
_SECRET_KEYS = re.compile(r"^(secret|key|password|passwd|md5secret|.*token.*|.*secret.*)$", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)", re.IGNORECASE)
#: Seconds to wait for the capture's AMI login.
LOGIN_TIMEOUT_S = 10.0


def mask_value(key: str, value: str) -> str:
    """``value`` with its secret parts replaced by `MASK` (see the module docstring)."""
    if _SECRET_KEYS.match(key.strip()):
        return MASK
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), value)


def mask_pairs(pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    return [[key, mask_value(key, value)] for key, value in pairs]


async def capture_ami(ami_config: Any, duration_s: float, path: Path, say: Callable[[str], None]) -> int:
    """Record events for ``duration_s`` into ``path``; returns how many. Raises `TimeoutError`
    when the login does not succeed within `LOGIN_TIMEOUT_S`."""
    from ..ami import AMIClient

    client = AMIClient(ami_config)
    started = time.monotonic()
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"capture": "ami", "format": 1, "started_at": round(time.time(), 3),
                              "host": f"{ami_config.host}:{ami_config.port}"}) + "\n")

        def record(message: Any) -> None:
            nonlocal count
            count += 1
            out.write(json.dumps({"t": round(time.monotonic() - started, 3), "fields": mask_pairs(message.pairs)})
                      + "\n")

        client.subscribe("*", record)
        await client.start()
        task = asyncio.create_task(client.run(), name="capture-ami")
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT_S):
                while not client.connected:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.05)
            say(f"logged in to AMI at {ami_config.host}:{ami_config.port}; recording for {duration_s:g} s")
            started = time.monotonic()
            await asyncio.sleep(duration_s)
        finally:
            await client.stop(2.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return count


def read_capture(path: Path) -> tuple[dict[str, Any], list[tuple[float, list[tuple[str, str]]]]]:
    """(header, [(t, pairs)]) of a capture file; raises ValueError when it is not one."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path}: empty file")
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("capture") != "ami":
        raise ValueError(f"{path}: not an AMI capture (first line must be its header)")
    events = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            events.append((float(item["t"]), [(str(k), str(v)) for k, v in item["fields"]]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a captured event ({exc})") from None
    return header, events
