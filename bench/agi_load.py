#!/usr/bin/env python3
"""Load test of the ``call_log`` end stage: FastAGI server + handler + outbox on SQLite.

The server runs in this process, wired like the daemon (FastAGIServer -> CallLogHandler ->
Outbox.enqueue with group commit -> Store on SQLite in a temporary directory). Fake Asterisk
clients run in separate processes (so their CPU is not the server's) and replay the recorded
end-stage session of a busy call (``02_BUSY_agi3_h-modern_4573``: the argument-form ``h`` line of
Asterisk 22.10.1) with a distinct uniqueid per session, answering every command by Asterisk's rules
(tests/fakes/agi.py). A session's time runs from the client's connect to the server closing the
socket, i.e. what the call's thread in Asterisk waits.

The same clients then run against a bare asyncio responder on the same event loop that sends the
same command lines and closes, doing no other work: the ceiling of this machine and Python.

Modes:
  closed loop (default): ``--concurrency`` sessions in flight, as fast as they complete.
  fixed rate (``--rate R``): sessions start every 1/R s whatever happens (open loop); the time of a
  session is counted from its scheduled start, so a server falling behind shows in p99.

Goals: >= 2,000 sessions/s closed loop, >= half the ceiling, p99 < 20 ms at 500 sessions/s.

The server's CPU time per session (event loop thread, and all threads) is printed for both servers
too: on a machine shared with other work it is the steadier figure of the two.

  .venv/bin/python bench/agi_load.py --sessions 20000 --concurrency 64
  .venv/bin/python bench/agi_load.py --rate 500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RECORDING = REPO / "tests/fixtures/asterisk-22.10.1/vicidial/02_BUSY_agi3_h-modern_4573.txt"
RECORDED_UNIQUEID = b"agi_uniqueid: 1795237857.3\n"


# ---------------------------------------------------------------------------------------------
# Client side (runs in its own process: ``agi_load.py --client '<json>'``)


class Replayer:
    """Answers commands like the recorded channel; answers are computed once per distinct line."""

    def __init__(self) -> None:
        from tests.fakes.agi import FakeChannel

        self.channel = FakeChannel.from_recording(RECORDING)
        self.block = self.channel.env_block
        if RECORDED_UNIQUEID not in self.block:
            raise SystemExit(f"{RECORDING.name}: uniqueid line not found")
        self._answers: dict[bytes, bytes] = {}

    def block_for(self, uniqueid: str) -> bytes:
        return self.block.replace(RECORDED_UNIQUEID, f"agi_uniqueid: {uniqueid}\n".encode())

    def answer(self, line: bytes) -> bytes:
        cached = self._answers.get(line)
        if cached is None:
            text = line.decode("utf-8", "replace")
            cached = ("\n".join(self.channel.copy().answer(text)) + "\n").encode()
            self._answers[line] = cached
        return cached


async def one_session(host: str, port: int, block: bytes, replayer: Replayer, timeout: float) -> list[bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    commands: list[bytes] = []
    try:
        writer.write(block)
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line.endswith(b"\n"):
                return commands  # the server closed the socket: the session is over
            commands.append(line[:-1])
            writer.write(replayer.answer(line[:-1]))
    finally:
        writer.close()


async def client_load(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, count = spec["host"], spec["port"], spec["sessions"]
    rate, concurrency, prefix = spec["rate"], spec["concurrency"], spec["uniqueid_prefix"]
    replayer = Replayer()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    first_commands: list[str] = []

    async def run(i: int, scheduled: float | None) -> None:
        started = time.perf_counter() if scheduled is None else scheduled
        try:
            commands = await one_session(host, port, replayer.block_for(f"{prefix}.{i}"), replayer, 30.0)
        except (OSError, TimeoutError, EOFError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        latencies.append(time.perf_counter() - started)
        if not first_commands:
            first_commands.extend(c.decode("utf-8", "replace") for c in commands)

    wall_start = time.time()
    t0 = time.perf_counter()
    if rate:
        tasks = []
        for i in range(count):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing of the load generator
            tasks.append(asyncio.create_task(run(i, scheduled)))
        await asyncio.gather(*tasks)
    else:
        counter = iter(range(count))

        async def worker() -> None:
            for i in counter:
                await run(i, None)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "wall_start": wall_start,
        "wall_end": time.time(),
        "latencies": latencies,
        "errors": errors,
        "commands": first_commands,
    }


def client_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = asyncio.run(client_load(spec))
    sys.stdout.write(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Orchestration (server side, this process)


async def run_clients(args: argparse.Namespace, host: str, port: int, prefix: str, count: int) -> dict[str, Any]:
    """Start ``--clients`` client processes, wait for them without blocking the server's loop.

    Also measures the CPU time this process spent meanwhile (``cpu_main_s``: the event loop's
    thread; ``cpu_process_s``: all threads, e.g. the SQLite driver's): on a machine shared with
    other work, CPU per session moves far less than sessions per second.
    """
    cpu_main, cpu_process = time.thread_time(), time.process_time()
    per = [count // args.clients + (1 if i < count % args.clients else 0) for i in range(args.clients)]
    procs = []
    for i, n in enumerate(per):
        spec = {
            "host": host,
            "port": port,
            "sessions": n,
            "concurrency": max(1, args.concurrency // args.clients),
            "rate": (args.rate / args.clients) if args.rate else 0,
            "uniqueid_prefix": f"{prefix}{i}",
        }
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", json.dumps(spec),
                stdout=asyncio.subprocess.PIPE, cwd=str(REPO),
            )
        )  # fmt: skip
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    results = []
    for proc, (out, _err) in zip(procs, outputs):
        if proc.returncode != 0:
            raise SystemExit(f"client process failed with {proc.returncode}")
        results.append(json.loads(out))
    latencies = sorted(x for r in results for x in r["latencies"])
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    wall = max(r["wall_end"] for r in results) - min(r["wall_start"] for r in results)
    return {
        "latencies": latencies,
        "errors": errors,
        "wall": wall,
        "commands": results[0]["commands"],
        "cpu_main_s": time.thread_time() - cpu_main,
        "cpu_process_s": time.process_time() - cpu_process,
    }


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def summary(name: str, run: dict[str, Any]) -> dict[str, Any]:
    lat = run["latencies"]
    done = len(lat)
    return {
        "server": name,
        "sessions": done,
        "errors": run["errors"],
        "sessions_per_s": done / run["wall"] if run["wall"] > 0 else 0.0,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": (lat[-1] * 1000) if lat else float("nan"),
        "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
        "cpu_main_us": run["cpu_main_s"] / done * 1e6 if done else float("nan"),
        "cpu_process_us": run["cpu_process_s"] / done * 1e6 if done else float("nan"),
    }


async def start_telephonyd(tmp: Path, args: argparse.Namespace) -> tuple[Any, ...]:
    from telephonyd.calllog import CallLogHandler
    from telephonyd.config import Config
    from telephonyd.fastagi import FastAGIServer
    from telephonyd.outbox import Outbox
    from telephonyd.store import Store

    config = Config.model_validate(
        {
            "store": {"url": f"sqlite+aiosqlite:///{tmp}/bench.db"},
            "fastagi": {"listen": "127.0.0.1:0", "max_sessions": max(2000, args.concurrency * 4)},
        }
    )
    store = Store(config.store.url.get_secret_value(), schemas=[Outbox.metadata])
    await store.start()
    outbox = Outbox(store, node_id=config.node_id, config=config.outbox)
    await outbox.start()
    enqueue_times: list[float] = []
    handler_times: list[float] = []

    async def timed_enqueue(target: str, key: str, payload: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return await outbox.enqueue(target, key, payload)
        finally:
            enqueue_times.append(time.perf_counter() - started)

    handler = CallLogHandler(
        config.call_log, timed_enqueue if args.server_timings else outbox.enqueue, target="did_optimizer"
    )

    async def timed_handler(session: Any) -> str:
        started = time.perf_counter()
        try:
            return await handler(session)
        finally:
            handler_times.append(time.perf_counter() - started)

    server = FastAGIServer(config.fastagi, {"call_log": timed_handler if args.server_timings else handler})
    await server.start()
    if not args.no_gc_freeze:
        # As the daemon does once READY (telephonyd.app): what start-up built lives as long as
        # the process, so the cyclic collector's full passes leave it alone.
        gc.collect()
        gc.freeze()
    tasks = [asyncio.create_task(server.run())]
    timings = {"handler": handler_times, "enqueue": enqueue_times} if args.server_timings else {}
    return store, outbox, handler, server, tasks, timings


async def bare_responder(command_lines: list[str]) -> tuple[asyncio.Server, int]:
    """Reads the block, sends ``command_lines`` one by one reading each reply, closes. No work."""
    commands = [(line + "\n").encode() for line in command_lines]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()) not in (b"\n", b""):
                pass
            for command in commands:
                writer.write(command)
                await reader.readline()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def main(args: argparse.Namespace) -> int:
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    count = args.sessions if not args.rate else int(args.rate * args.seconds)
    reports = []
    with tempfile.TemporaryDirectory(prefix="agi_load_", dir=args.db_dir) as tmp:
        store, outbox, handler, server, tasks, timings = await start_telephonyd(Path(tmp), args)
        try:
            host, port = server.bound_addresses[0][:2]
            if args.warmup:
                await run_clients(args, host, port, "w", min(args.warmup, count))
            for series in timings.values():
                series.clear()
            real = await run_clients(args, host, port, "r", count)
            reports.append(summary("telephonyd", real))
            queued = await outbox.stats()
            results = handler.health()["results"]
        finally:
            await server.stop(5.0)
            await outbox.stop(5.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
    if not args.skip_ceiling:
        bare, bare_port = await bare_responder(real["commands"])
        async with bare:
            if args.warmup:
                await run_clients(args, "127.0.0.1", bare_port, "w", min(args.warmup, count))
            reports.append(summary("bare responder (ceiling)", await run_clients(args, "127.0.0.1", bare_port, "b", count)))
    mode = f"fixed rate {args.rate}/s for {args.seconds}s" if args.rate else f"closed loop, concurrency {args.concurrency}"
    print(f"mode: {mode}; {count} sessions; {args.clients} client process(es); cpus={os.cpu_count()}")
    print(f"commands per session: {len(real['commands'])} ({', '.join(c.split(' ', 3)[0] + ' ' + c.split(' ', 3)[1] for c in real['commands'])})")
    for r in reports:
        print(
            f"{r['server']:>26}: {r['sessions_per_s']:8.0f} sessions/s  p50 {r['p50_ms']:6.2f} ms  "
            f"p99 {r['p99_ms']:6.2f} ms  max {r['max_ms']:7.2f} ms  errors {r['errors'] or 0}"
        )
    if len(reports) == 2 and reports[1]["sessions_per_s"]:
        print(f"{'ratio to ceiling':>26}: {reports[0]['sessions_per_s'] / reports[1]['sessions_per_s']:.2f}")
    for r in reports:
        print(f"{'server CPU, ' + r['server'].split(' ')[0]:>26}: {r['cpu_main_us']:6.0f} us/session event loop thread, "
              f"{r['cpu_process_us']:6.0f} us/session all threads")  # fmt: skip
    if len(reports) == 2 and reports[0]["cpu_main_us"]:
        print(f"{'CPU ratio (ceiling/ours)':>26}: {reports[1]['cpu_main_us'] / reports[0]['cpu_main_us']:.2f}")
    for name, series in timings.items():
        series.sort()
        print(f"{'server-side ' + name:>26}: p50 {percentile(series, 50) * 1000:6.2f} ms  "
              f"p99 {percentile(series, 99) * 1000:6.2f} ms  max {percentile(series, 100) * 1000:7.2f} ms")  # fmt: skip
    print(f"{'handler results':>26}: {results}")
    print(f"{'outbox':>26}: {json.dumps(queued, default=str)}")
    if args.json:
        print(json.dumps({"mode": mode, "reports": reports, "handler": results}))
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10000, help="sessions in closed-loop mode (default 10000)")
    parser.add_argument("--concurrency", type=int, default=64, help="sessions in flight, closed loop (default 64)")
    parser.add_argument("--rate", type=float, default=0.0, help="fixed-rate mode: sessions started per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="fixed-rate mode: how long (default 10)")
    parser.add_argument("--clients", type=int, default=1, help="client processes (default 1)")
    parser.add_argument("--warmup", type=int, default=500, help="sessions before measuring (default 500, 0: none)")
    parser.add_argument("--db-dir", help="where the temporary SQLite database goes (default: the system temp dir)")
    parser.add_argument("--switch-interval-ms", type=float, default=0.0,
                        help="sys.setswitchinterval for the server process (default: Python's 5 ms)")
    parser.add_argument("--server-timings", action="store_true",
                        help="also time the handler and the outbox enqueue inside the server")
    parser.add_argument("--skip-ceiling", action="store_true", help="do not measure the bare responder")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="skip the daemon's gc.freeze() after start-up (default: do it, as telephonyd.app does)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--client", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.concurrency < 1 or args.clients < 1 or args.rate < 0 or args.seconds <= 0:
        parser.error("counts must be positive")
    return args


if __name__ == "__main__":
    ns = parse_args(sys.argv[1:])
    if ns.client:
        client_main(ns.client)
    else:
        sys.exit(asyncio.run(main(ns)))
