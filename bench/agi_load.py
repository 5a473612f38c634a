#!/usr/bin/env python3
"""Load test of the ``call_log`` end stage: telephonyd against VICIdial's FastAGI_log.pl and a bare responder.

telephonyd runs in this process, wired like the daemon (FastAGIServer -> CallLogHandler ->
Outbox.enqueue with group commit -> Store), once per store under test: SQLite in a temporary
directory with each ``store.durability`` asked for (``full``: WAL + ``synchronous=FULL``, the
default; ``normal``: WAL + ``synchronous=NORMAL``) and, with ``--mariadb-url``, MariaDB (a fresh
database created on that server and dropped at the end). Fake Asterisk clients run in separate
processes (so their CPU is not the server's) and replay one recorded end-stage session with a
distinct uniqueid per session, answering every command by Asterisk's rules (tests/fakes/agi.py). By
default the session is VICIdial's own ``h`` line as its dialplan sends it
(``02_BUSY_agi2_h-vicidial_4577``: ``call_log--HVcauses--PRI-----NODEBUG-----17-----BUSY...``,
Asterisk 22.10.1). A session's time runs from the client's connect to the server closing the
socket, i.e. what the call's thread in Asterisk waits.

Baselines, measured in the same run, rep by rep interleaved with telephonyd:

* VICIdial's ``FastAGI_log.pl`` (``--vicidial-agi HOST:PORT``): the server VICIdial ships for this
  very line (Net::Server prefork as shipped, MyISAM tables on MariaDB), already running; it is not
  started here. Without the option that baseline is skipped and said so.
* a bare asyncio responder in this process that sends the same command lines telephonyd sends and
  closes, doing no other work: the ceiling of this machine and Python.

Goals (printed with the ratios): concurrency 1: >= 2x FastAGI_log.pl; concurrency 50: >= 4x
FastAGI_log.pl, >= 0.6x bare and p99 <= 1/5 of FastAGI_log.pl's; MariaDB store >= 1x SQLite.

Modes:
  comparison (default): for each ``--concurrency`` (default ``1,50``), ``--reps`` reps; in each rep
  every server gets ``--sessions`` closed-loop sessions, one after the other.
  fixed rate (``--rate R``): telephonyd on SQLite and the bare responder only; sessions start every
  1/R s whatever happens (open loop), a session's time counted from its scheduled start.

The server's CPU time per session (event loop thread, and all threads) is printed for the servers in
this process too: on a machine shared with other work it is the steadier figure.

  .venv/bin/python bench/agi_load.py --vicidial-agi 127.0.0.1:4577 \\
      --mariadb-url mysql+aiomysql://root@127.0.0.1:3306/ --durability full,normal
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

VICIDIAL_FIXTURES = REPO / "tests/fixtures/asterisk-22.10.1/vicidial"
#: VICIdial's ``h,1`` line as its dialplan sends it to port 4577 (the HVcauses script name).
RECORDING = VICIDIAL_FIXTURES / "02_BUSY_agi2_h-vicidial_4577.txt"
RECORDED_UNIQUEID = b"agi_uniqueid: 1795237857.3\n"


# ---------------------------------------------------------------------------------------------
# Client side (runs in its own process: ``agi_load.py --client '<json>'``)


class Replayer:
    """Answers commands like the recorded channel; answers are computed once per distinct line."""

    def __init__(self, recording: Path = RECORDING) -> None:
        from tests.fakes.agi import FakeChannel

        self.channel = FakeChannel.from_recording(recording)
        self.block = self.channel.env_block
        if RECORDED_UNIQUEID not in self.block:
            raise SystemExit(f"{recording.name}: uniqueid line not found")
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
    replayer = Replayer(Path(spec["recording"]))
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
    clients = args.clients if args.rate else max(1, min(args.clients, args.concurrency))
    per = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    procs = []
    for i, n in enumerate(per):
        spec = {
            "host": host,
            "port": port,
            "sessions": n,
            "concurrency": max(1, args.concurrency // clients),
            "rate": (args.rate / clients) if args.rate else 0,
            "uniqueid_prefix": f"{prefix}{i}",
            "recording": str(args.recording),
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


async def start_telephonyd(store_url: str, args: argparse.Namespace, durability: str = "full") -> tuple[Any, ...]:
    """telephonyd's call_log path on ``store_url`` wired as the daemon wires it (pool size and
    durability from the config, as `telephonyd.app.build_store` passes them)."""
    from telephonyd.calllog import CallLogHandler
    from telephonyd.config import Config
    from telephonyd.fastagi import FastAGIServer
    from telephonyd.outbox import Outbox
    from telephonyd.store import Store

    config = Config.model_validate(
        {
            "store": {"url": store_url, "durability": durability},
            "fastagi": {"listen": "127.0.0.1:0", "max_sessions": max(2000, args.concurrency * 4)},
        }
    )
    store = Store(config.store.url.get_secret_value(), schemas=[Outbox.metadata], pool_size=config.store.pool_size,
                  durability=config.store.durability)
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
    freeze(args)
    tasks = [asyncio.create_task(server.run())]
    timings = {"handler": handler_times, "enqueue": enqueue_times} if args.server_timings else {}
    return store, outbox, handler, server, tasks, timings


def freeze(args: argparse.Namespace) -> None:
    if not args.no_gc_freeze:
        # As the daemon does once READY (telephonyd.app): what start-up built lives as long as
        # the process, so the cyclic collector's full passes leave it alone.
        gc.collect()
        gc.freeze()


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


# ---------------------------------------------------------------------------------------------
# Comparison mode: every server, rep by rep interleaved, at each concurrency



async def stop_telephonyd(store: Any, outbox: Any, server: Any, tasks: list[asyncio.Task[Any]]) -> None:
    """Stop an in-process telephonyd (FastAGI server, outbox, its tasks, store), in that order."""
    await server.stop(5.0)
    await outbox.stop(5.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()

class Contender:
    """One server under test: ``name``, where it listens, and what to close at the end."""

    def __init__(self, name: str, host: str, port: int, *, in_process: bool, parts: tuple[Any, ...] = ()) -> None:
        self.name, self.host, self.port, self.in_process, self.parts = name, host, port, in_process, parts
        self.runs: dict[int, list[dict[str, Any]]] = {}

    async def close(self) -> None:
        if not self.parts:
            return
        store, outbox, _handler, server, tasks, _timings = self.parts
        await stop_telephonyd(store, outbox, server, tasks)

    def results(self) -> dict[str, int]:
        return dict(self.parts[2].health()["results"]) if self.parts else {}


async def reachable(host: str, port: int) -> str | None:
    """None when something accepts connections at host:port, else why not."""
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3.0)
    except (OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    writer.close()
    return None


async def create_mariadb(url_text: str) -> tuple[str, str]:
    """A fresh database on the server of ``url_text``: (its URL, its name)."""
    import secrets

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"td_agi_bench_{secrets.token_hex(4)}"
    engine = create_async_engine(make_url(url_text).set(database=""))
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE DATABASE {name}"))
    await engine.dispose()
    return make_url(url_text).set(database=name).render_as_string(hide_password=False), name


async def drop_mariadb(url_text: str, name: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(make_url(url_text).set(database=""))
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    await engine.dispose()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """median [min-max] of ``values``."""
    if not values:
        return "n/a"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


async def compare(args: argparse.Namespace) -> int:
    """Run every server rep by rep at each concurrency and print figures, ratios and goals."""
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    concurrencies = [int(c) for c in args.concurrencies.split(",")]
    durabilities = args.durability.split(",")
    contenders: list[Contender] = []
    notes: list[str] = []
    mariadb: tuple[str, str] | None = None
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="agi_load_", dir=args.db_dir) as tmp:
        try:
            for durability in durabilities:
                parts = await start_telephonyd(f"sqlite+aiosqlite:///{tmp}/bench_{durability}.db", args, durability)
                host, port = parts[3].bound_addresses[0][:2]
                contenders.append(Contender(f"telephonyd sqlite {durability}", host, port, in_process=True, parts=parts))
            if args.mariadb_url:
                mariadb = await create_mariadb(args.mariadb_url)
                parts = await start_telephonyd(mariadb[0], args, "full")
                host, port = parts[3].bound_addresses[0][:2]
                contenders.append(Contender("telephonyd mariadb", host, port, in_process=True, parts=parts))
            else:
                notes.append("MariaDB store skipped: no --mariadb-url")
            if args.vicidial_agi:
                vhost, _, vport = args.vicidial_agi.rpartition(":")
                why = await reachable(vhost, int(vport))
                if why is None:
                    contenders.append(Contender("FastAGI_log.pl", vhost, int(vport), in_process=False))
                else:
                    notes.append(f"FastAGI_log.pl baseline skipped: nothing answers at {args.vicidial_agi} ({why})")
            else:
                notes.append("FastAGI_log.pl baseline skipped: no --vicidial-agi HOST:PORT "
                             "(start VICIdial's bin/FastAGI_log.pl on MariaDB with VICIdial's schema and give its address)")
            # The command lines telephonyd sends for this session, for the bare responder.
            first = contenders[0]
            probe = await run_clients(argparse.Namespace(**{**vars(args), "concurrency": 1, "clients": 1}),
                                      first.host, first.port, "p", 1)
            bare, bare_port = await bare_responder(probe["commands"])
            contenders.append(Contender("bare responder", "127.0.0.1", bare_port, in_process=True))
            freeze(args)
            print(f"session: {args.recording.name}; {len(probe['commands'])} AGI commands from telephonyd; "
                  f"{args.sessions} sessions per server per rep, {args.reps} reps, {args.clients} client process(es); "
                  f"cpus={os.cpu_count()}; load average before: {load_before}")
            for note in notes:
                print(f"note: {note}")
            for concurrency in concurrencies:
                ns = argparse.Namespace(**{**vars(args), "concurrency": concurrency})
                for i, c in enumerate(contenders):
                    if args.warmup:
                        await run_clients(ns, c.host, c.port, f"w{concurrency}x{i}x", min(args.warmup, args.sessions))
                for rep in range(args.reps):
                    order = contenders[rep % len(contenders):] + contenders[:rep % len(contenders)]
                    for c in order:
                        tag = f"{concurrency}x{rep}x{contenders.index(c)}x"
                        run = await run_clients(ns, c.host, c.port, tag, args.sessions)
                        c.runs.setdefault(concurrency, []).append(summary(c.name, run))
                    if args.verbose:
                        print(f"  c={concurrency} rep {rep + 1}: " + ", ".join(
                            f"{c.name} {c.runs[concurrency][-1]['sessions_per_s']:.0f}/s" for c in contenders))
            bare.close()
            await bare.wait_closed()
            report(args, contenders, concurrencies)
            print(f"load average after: {loadavg()}")
            for c in contenders:
                if c.parts:
                    print(f"{c.name:>26}: handler results {c.results()}")
        finally:
            for c in contenders:
                await c.close()
            if mariadb is not None:
                await drop_mariadb(args.mariadb_url, mariadb[1])
    return 0


def report(args: argparse.Namespace, contenders: list[Contender], concurrencies: list[int]) -> None:
    by_name = {c.name: c for c in contenders}
    vici, bare = by_name.get("FastAGI_log.pl"), by_name["bare responder"]
    sqlite_full = next((c for c in contenders if c.name.startswith("telephonyd sqlite")), None)
    ours = [c for c in contenders if c.name.startswith("telephonyd")]
    out: dict[str, Any] = {}
    for conc in concurrencies:
        print(f"\n== concurrency {conc} (median [min-max] over {args.reps} reps) ==")
        for c in contenders:
            runs = c.runs[conc]
            errors = sum(sum(r["errors"].values()) for r in runs)
            cpu = (f"  CPU {spread([r['cpu_main_us'] for r in runs])} us/session loop, "
                   f"{spread([r['cpu_process_us'] for r in runs])} all threads") if c.in_process else ""
            print(f"{c.name:>26}: {spread([r['sessions_per_s'] for r in runs]):>18} sessions/s  "
                  f"p50 {spread([r['p50_ms'] for r in runs], '{:.2f}'):>20} ms  "
                  f"p99 {spread([r['p99_ms'] for r in runs], '{:.2f}'):>20} ms  errors {errors}{cpu}")
            out.setdefault(c.name, {})[conc] = runs

        def ratio(a: Contender, b: Contender, key: str = "sessions_per_s") -> list[float]:
            return [x[key] / y[key] for x, y in zip(a.runs[conc], b.runs[conc]) if y[key]]

        for c in ours:
            lines = []
            if vici is not None:
                r = ratio(c, vici)
                goal = 2.0 if conc == 1 else 4.0
                lines.append(f"{spread(r, '{:.2f}')}x FastAGI_log.pl (goal >= {goal:g}x: "
                             f"{'met' if statistics.median(r) >= goal else 'NOT met'})")
                if conc > 1:
                    p = ratio(c, vici, "p99_ms")
                    lines.append(f"p99 {spread(p, '{:.2f}')}x FastAGI_log.pl's (goal <= 0.2x: "
                                 f"{'met' if statistics.median(p) <= 0.2 else 'NOT met'})")
            r = ratio(c, bare)
            lines.append(f"{spread(r, '{:.2f}')}x bare" + (
                f" (goal >= 0.6x: {'met' if statistics.median(r) >= 0.6 else 'NOT met'})" if conc > 1 else ""))
            if c.name == "telephonyd mariadb" and sqlite_full is not None:
                r = ratio(c, sqlite_full)
                lines.append(f"{spread(r, '{:.2f}')}x {sqlite_full.name} (goal >= 1x: "
                             f"{'met' if statistics.median(r) >= 1 else 'NOT met'})")
            elif c is not sqlite_full and sqlite_full is not None:
                lines.append(f"{spread(ratio(c, sqlite_full), '{:.2f}')}x {sqlite_full.name}")
            print(f"{c.name:>26}: " + "; ".join(lines))
    if args.json:
        print(json.dumps({"load_average": loadavg(), "runs": out}))



async def main(args: argparse.Namespace) -> int:
    if not args.rate:
        return await compare(args)
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    count = args.sessions if not args.rate else int(args.rate * args.seconds)
    reports = []
    with tempfile.TemporaryDirectory(prefix="agi_load_", dir=args.db_dir) as tmp:
        store, outbox, handler, server, tasks, timings = await start_telephonyd(
            f"sqlite+aiosqlite:///{tmp}/bench.db", args, args.durability.split(",")[0])
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
            await stop_telephonyd(store, outbox, server, tasks)
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
    parser.add_argument("--sessions", type=int, default=1500, help="sessions per server per rep (default 1500)")
    parser.add_argument("--concurrencies", default="1,50", help="sessions in flight, closed loop (default 1,50)")
    parser.add_argument("--concurrency", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=3, help="reps per concurrency, servers interleaved (default 3)")
    parser.add_argument("--vicidial-agi", metavar="HOST:PORT",
                        help="an already running VICIdial FastAGI_log.pl to compare with (skipped when absent)")
    parser.add_argument("--mariadb-url", metavar="URL",
                        help="a MariaDB server (mysql+aiomysql://user:pass@host:port/) for the MariaDB store run; "
                             "a fresh database is created there and dropped at the end")
    parser.add_argument("--durability", default="full",
                        help="store.durability values for the SQLite runs, comma separated (default full)")
    parser.add_argument("--recording", type=Path, default=RECORDING,
                        help="the recorded session replayed (default: VICIdial's h line, 02_BUSY_agi2_h-vicidial_4577)")
    parser.add_argument("--verbose", action="store_true", help="print each rep's figures")
    parser.add_argument("--rate", type=float, default=0.0, help="fixed-rate mode: sessions started per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="fixed-rate mode: how long (default 10)")
    parser.add_argument("--clients", type=int, default=1, help="client processes (default 1)")
    parser.add_argument("--warmup", type=int, default=200,
                        help="sessions before measuring, per server and concurrency (default 200, 0: none)")
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
    if args.sessions < 1 or args.reps < 1 or args.clients < 1 or args.rate < 0 or args.seconds <= 0:
        parser.error("counts must be positive")
    return args


if __name__ == "__main__":
    ns = parse_args(sys.argv[1:])
    if ns.client:
        client_main(ns.client)
    else:
        sys.exit(asyncio.run(main(ns)))
