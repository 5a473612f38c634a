"""Hostile clients on loopback, for the fault tests and ``bench/soak.py``: connections that stall
(a slowloris with half a request line, FastAGI connections that never finish their block), held
open or reopened as the server closes them, from a chosen loopback source address."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

#: Half a request line: the head never completes.
HALF_REQUEST_LINE = b"GET /healthz HT"
#: The start of an agi_ block: the block never completes.
HALF_AGI_BLOCK = b"agi_network: yes\nagi_network_script: call_log\n"


@dataclass
class FloodStats:
    opened: int = 0
    closed_by_server: int = 0
    connect_errors: int = 0
    open_now: int = 0


@dataclass
class Flood:
    """``connections`` stalled connections to ``host:port`` from ``source``, each sending
    ``payload`` then waiting; with ``reopen`` each is opened again as soon as the server closes it
    (after ``pause_s``). Run with ``async with``; ``stats`` counts what happened."""

    host: str
    port: int
    connections: int
    payload: bytes
    source: str = "127.0.0.1"
    reopen: bool = True
    pause_s: float = 0.0
    connect_timeout_s: float = 5.0
    stats: FloodStats = field(default_factory=FloodStats)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Flood:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.connections)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, local_addr=(self.source, 0)), self.connect_timeout_s)
            except (OSError, TimeoutError):
                self.stats.connect_errors += 1
                await asyncio.sleep(0.1)
                continue
            self.stats.opened += 1
            self.stats.open_now += 1
            try:
                with contextlib.suppress(OSError):
                    writer.write(self.payload)
                with contextlib.suppress(OSError):
                    while await reader.read(65536):
                        pass
                self.stats.closed_by_server += 1
            finally:
                self.stats.open_now -= 1
                writer.transport.abort()
            if not self.reopen:
                return
            if self.pause_s:
                await asyncio.sleep(self.pause_s)


def metric_values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples named ``name`` in a Prometheus text exposition: sorted label items -> value."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return metric_values(text, name).get(tuple(sorted(labels.items())), 0.0)


class FloodProcess:
    """A `Flood` in a process of its own (``python -m tests.system.floods``), so that its load does
    not delay the valid clients of the test, as a real attacker's would not delay Asterisk.

    ``start()`` returns once every connection was attempted once; ``stop()`` ends it and returns its
    `FloodStats` as a dict. ``nice``: the process's niceness (on one machine, a flood at nice 10 takes
    less of the CPU the daemon would have against an attacker on another host).
    """

    def __init__(self, host: str, port: int, connections: int, payload: bytes, *, source: str = "127.0.0.1",
                 reopen: bool = True, nice: int = 0) -> None:
        self.args = [host, str(port), str(connections), payload.hex(), source, "1" if reopen else "0"]
        self.nice = nice
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 60.0) -> None:
        import sys

        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.system.floods", *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if line.strip() != b"connected":
            raise AssertionError(f"flood did not start: {line!r}")

    async def stop(self, timeout: float = 30.0) -> dict[str, int]:
        import json

        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        return json.loads(line)


async def _flood_main(host: str, port: str, connections: str, payload_hex: str, source: str, reopen: str) -> None:
    import json
    import sys
    from dataclasses import asdict

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with Flood(host, int(port), int(connections), bytes.fromhex(payload_hex), source=source,
                     reopen=reopen == "1") as flood:
        while flood.stats.opened + flood.stats.connect_errors < int(connections):
            await asyncio.sleep(0.05)
        print("connected", flush=True)
        await reader.read()  # until the parent closes our stdin
    print(json.dumps(asdict(flood.stats)), flush=True)


if __name__ == "__main__":
    import sys

    asyncio.run(_flood_main(*sys.argv[1:7]))
