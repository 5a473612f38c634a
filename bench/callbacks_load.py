#!/usr/bin/env python3
"""Load test of the Ameyo callbacks: HTTP listener + AmeyoService + outbox on SQLite -> fake TopS.II.

The relay runs in this process, wired like the daemon (HTTPServer with the callback routes ->
AmeyoService with group commit -> Store on SQLite in a temporary directory; the Outbox delivers to
TopsSender with real sending on). The fake TopS.II (tests/fakes/tops.py) runs in its own process,
and so do the clients, so neither takes the relay's CPU. A callback's time runs from the client's
request to the relay's answer, which comes only after the callback, its decision and the outbox row
are committed (SQLite WAL, synchronous=FULL).

The callbacks are a mix with a distinct unique_id per call: a call start, a connected call end, a
one-phone not answered, and two-phone calls (phone 1 stored, then phone 2: one combined send).

The relay and a bare aiohttp handler (on this process's event loop, answering the same JSON and
recording nothing: the ceiling of this machine and Python) are both up for the whole run and the
same client load runs against each, ``--reps`` times in alternating order (relay first on even
reps), so both see the same machine load. Each rep prints callbacks/s, p99, this process's CPU per
callback (in total and by thread: the event loop, the store writer) for both, the ratio relay/bare
and the load average. After each relay rep the run waits for the outbox to drain (its CPU per
TopS.II request, the outbox alone, is printed as ``drain_cpu_us_per_send``). At the end it checks
that the fake received exactly one request per logical send and that every callback has its
request log row. ``--no-delivery`` registers the TopS.II target disabled: the intake alone (HTTP,
routing, group commit), rows left pending. ``--relay-only`` skips the bare handler (profiling).

Modes:
  closed loop (default): ``--concurrency`` callbacks in flight, as fast as they are answered.
  fixed rate (``--rate R`` callbacks/s): calls start on a fixed schedule (open loop; the mix makes
  1.25 callbacks per call, a phone 2 following its phone 1's answer); a callback's time counts from
  its scheduled start, so a relay falling behind shows in p99.

``--gc-freeze`` calls ``gc.freeze()`` once the relay is up, as a daemon may after its start: the
~80k objects of the imported libraries then leave the collector's generations, and a full
collection no longer stalls the event loop for tens of milliseconds (a p99 effect).

Goals: >= 0.5x the bare handler's callbacks/s closed loop, p99 < 20 ms at 500 callbacks/s.

  .venv/bin/python bench/callbacks_load.py --callbacks 4000 --reps 4 --gc-freeze
  .venv/bin/python bench/callbacks_load.py --callbacks 4000 --reps 4 --gc-freeze --no-delivery
  .venv/bin/python bench/callbacks_load.py --rate 500 --seconds 10
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

TWO = '{"phoneList":["09011112222","08033334444"]}'
CALLBACKS_PER_CALL = 1.25  # the mix of `callbacks_for`
WARM_UP_CALLS = 400


# ---------------------------------------------------------------------------------------------
# Callbacks (shared by client and checks)


def callbacks_for(call: int) -> list[tuple[str, dict[str, str]]]:
    """The callbacks of call number ``call`` (its kind is ``call % 4``)."""
    uid = str(10_000_000 + call)
    base = {"unique_id": uid, "customerId": str(call), "crtObjectId": f"crt{call}", "userId": "agent7",
            "dialledPhone": "09011112222", "callTime": "2026-03-06 13:50:00"}
    kind = call % 4
    if kind == 0:
        return [("/call_start.php", {"callId": uid, "userId": "agent7", "displayPhone": "09011112222"})]
    if kind == 1:
        return [("/index.php", {**base, "systemDisposition": "CONNECTED", "customerCRTId": f"d{call}",
                                "callConnectedTime": "2026/03/06 13:52:00 +0900", "callEndTime": "2026-03-06 13:55:00"})]
    if kind == 2:
        return [("/index.php", {**base, "systemDisposition": "NO_ANSWER"})]
    return [("/index.php", {**base, "systemDisposition": "BUSY", "phoneList": TWO, "shareablePhonesDialIndex": "0"}),
            ("/index.php", {**base, "systemDisposition": "NO_ANSWER", "phoneList": TWO, "shareablePhonesDialIndex": "1"})]


# ---------------------------------------------------------------------------------------------
# Client side (own process: ``callbacks_load.py --client '<json>'``)


async def client_main(spec: dict[str, Any]) -> None:
    import aiohttp

    base, first, calls = spec["base_url"], spec["first_call"], spec["calls"]
    latencies: list[float] = []
    errors = 0
    ssl_context: Any = None
    if spec.get("ca_file"):  # HTTPS (bench/https_callbacks.py)
        import ssl

        ssl_context = ssl.create_default_context(cafile=spec["ca_file"])
    connector = aiohttp.TCPConnector(limit=spec["connections"], ssl=ssl_context,
                                     force_close=bool(spec.get("force_close")))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one_call(call: int, scheduled: float | None) -> None:
            nonlocal errors
            for path, params in callbacks_for(call):  # phone 2 goes after phone 1 is answered
                started = scheduled if scheduled is not None else time.perf_counter()
                try:
                    async with session.get(base + path, params=params) as resp:
                        body = await resp.json()
                        if resp.status != 200 or not body.get("success"):
                            errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - started)
                scheduled = None

        t0 = time.perf_counter()
        if spec["rate"]:
            interval = 1.0 / spec["rate"]
            tasks = []
            for i in range(calls):
                due = t0 + i * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # open loop: start on schedule whatever happens
                tasks.append(asyncio.create_task(one_call(first + i, due)))
            await asyncio.gather(*tasks)
        else:
            queue = iter(range(first, first + calls))

            async def worker() -> None:
                for call in queue:
                    await one_call(call, None)

            await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        elapsed = time.perf_counter() - t0
    print(json.dumps({"latencies": latencies, "errors": errors, "elapsed": elapsed}))


# ---------------------------------------------------------------------------------------------
# Fake TopS.II (own process: ``callbacks_load.py --fake-tops``)


async def fake_tops_main() -> None:
    from tests.fakes.tops import FakeTops

    fake = FakeTops()
    print(await fake.start(), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (line := (await reader.readline()).strip()) != b"quit":  # "count" -> the counts so far
        if not line:
            break
        print(json.dumps({"sends": sum(fake.sends_by_call.values()), "calls": len(fake.sends_by_call),
                          "max_per_call": max(fake.sends_by_call.values(), default=0),
                          "violations": fake.violations[:5]}), flush=True)
    await fake.close()


# ---------------------------------------------------------------------------------------------
# Relay side


async def start_relay(db_dir: str, tops_url: str, http_config: dict[str, Any] | None = None,
                      deliver: bool = True) -> tuple[Any, ...]:
    """The relay; ``http_config``: HTTPConfig fields over the loopback default (``tls``); without
    ``deliver`` the TopS.II target is registered disabled (rows stay pending: the intake alone)."""
    import aiohttp

    from telephonyd.ameyo import AmeyoService
    from telephonyd.ameyo.routes import callback_routes
    from telephonyd.ameyo.schema import metadata
    from telephonyd.config import (
        AmeyoConfig,
        HTTPConfig,
        OutboxConfig,
        TopsConfig,
        TopsTarget,
    )
    from telephonyd.outbox import Outbox
    from telephonyd.store import Store
    from telephonyd.upstream.tops import TopsSender
    from telephonyd.web import HTTPServer
    from tests.fakes.tops import FakeTops

    store = Store(f"sqlite+aiosqlite:///{db_dir}/telephonyd.db", schemas=[Outbox.metadata, metadata])
    await store.start()
    outbox = Outbox(store, node_id="bench", config=OutboxConfig())
    tops = TopsConfig(real_send=True, test=TopsTarget(base_url=tops_url, api_key=FakeTops().api_key))
    service = AmeyoService(AmeyoConfig(), tops, store, outbox, node_id="bench")
    session = aiohttp.ClientSession()
    outbox.register_sender("tops", TopsSender(tops, session, on_result=service.record_upstream), enabled=deliver)

    async def status() -> dict[str, Any]:
        return {}

    async def ready() -> bool:
        return True

    http = HTTPServer(HTTPConfig(**{"listen": "127.0.0.1:0", **(http_config or {})}), status=status, ready=ready)
    http.add_routes(callback_routes(service), auth="none")  # as the daemon mounts them (app.py)
    await http.start()
    await outbox.start()
    await service.start()
    tasks = [asyncio.create_task(service.run()), asyncio.create_task(outbox.run()), asyncio.create_task(http.run())]
    host, port = http.bound_addresses[0][:2]
    scheme = "https" if http.config.tls is not None else "http"
    return f"{scheme}://{host}:{port}", store, outbox, service, http, session, tasks


async def stop_relay(store: Any, outbox: Any, service: Any, http: Any, session: Any, tasks: list[Any]) -> None:
    await http.stop(5.0)
    await service.stop(5.0)
    await outbox.stop(5.0)
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    await store.close()


async def start_ceiling() -> tuple[str, Any]:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        dict(request.query)
        return web.json_response({"success": True, "message": "Data Received", "request_id": "0" * 16})

    app = web.Application()
    app.add_routes([web.get("/call_start.php", answer), web.get("/index.php", answer)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", runner


async def run_clients(base_url: str, args: argparse.Namespace, first_call: int,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``extra``: client spec keys (``ca_file`` for HTTPS, ``force_close`` for a connection per callback)."""
    processes = args.clients
    per = args.calls // processes
    procs = []
    for n in range(processes):
        spec = {"base_url": base_url, "first_call": first_call + n * per, "calls": per,
                "rate": args.rate / CALLBACKS_PER_CALL / processes if args.rate else 0, "concurrency": max(1, args.concurrency // processes),
                "connections": max(8, args.concurrency // processes), **(extra or {})}
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", json.dumps(spec), stdout=asyncio.subprocess.PIPE))
    outputs = [json.loads((await p.communicate())[0]) for p in procs]
    latencies = sorted(x for o in outputs for x in o["latencies"])
    elapsed = max(o["elapsed"] for o in outputs)
    return {
        "callbacks": len(latencies),
        "errors": sum(o["errors"] for o in outputs),
        "per_s": round(len(latencies) / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


async def open_rows(store: Any) -> int:
    """Outbox rows pending or in flight: one count on the claim index (`Outbox.stats` scans the
    whole table, which grows with every rep, and would weigh on the relay's CPU figures)."""
    import sqlalchemy as sa

    from telephonyd.outbox.model import IN_FLIGHT, PENDING
    from telephonyd.outbox.schema import outbox as table

    async with store.connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(table).where(table.c.state.in_((PENDING, IN_FLIGHT)))
        return int((await conn.execute(stmt)).scalar_one())


async def drained(outbox: Any, timeout_s: float, store: Any = None) -> bool:
    """Poll until no outbox row is pending or in flight; False when ``timeout_s`` passed first.
    With ``store``, by `open_rows` (cheap) instead of `Outbox.stats`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store is not None:
            if not await open_rows(store):
                return True
        else:
            by_state = (await outbox.stats())["by_state"]
            if not by_state.get("pending", 0) and not by_state.get("in_flight", 0):
                return True
        await asyncio.sleep(0.2)
    return False


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process by Python thread name (Linux
    /proc; threads Python did not start, such as aiosqlite's, are summed as ``other``)."""
    import threading

    names = {t.native_id: t.name.split(" (")[0] for t in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        if name.startswith("Thread-"):
            name = "other"
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def loadavg() -> str:
    """The first three fields of /proc/loadavg (the machine's load during the run)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


async def main(args: argparse.Namespace) -> None:
    """Relay and bare handler both up for the whole run, measured rep by rep in alternating order
    (relay first on even reps, bare first on odd ones) so both see the same machine load."""
    import sqlalchemy as sa

    from telephonyd.ameyo.schema import request_log

    fake = await asyncio.create_subprocess_exec(sys.executable, __file__, "--fake-tops", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    tops_url = (await fake.stdout.readline()).decode().strip()
    results: dict[str, Any] = {"mode": f"fixed rate {args.rate}/s" if args.rate else f"closed loop, {args.concurrency} in flight",
                               "cpus": os.cpu_count(), "gc_freeze": args.gc_freeze, "reps": args.reps,
                               "loadavg_before": loadavg()}
    per_rep = args.calls - args.calls % args.clients
    reps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as db_dir:
        base_url, *relay = await start_relay(db_dir, tops_url, deliver=not args.no_delivery)
        store, outbox = relay[0], relay[1]
        ceiling_url, runner = await start_ceiling()
        try:
            warm_up = argparse.Namespace(**{**vars(args), "calls": WARM_UP_CALLS, "rate": 0, "clients": 1})
            await run_clients(base_url, warm_up, 9_000_000)
            await run_clients(ceiling_url, warm_up, 9_000_000)
            if not args.no_delivery:
                await drained(outbox, timeout_s=120, store=store)
            if args.gc_freeze:
                gc.collect()
                gc.freeze()
            for rep in range(args.reps):
                row: dict[str, Any] = {}
                order = ["relay", "bare"] if rep % 2 == 0 else ["bare", "relay"]
                for side in order if not args.relay_only else ["relay"]:
                    cpu0, threads0 = time.process_time(), thread_cpu()
                    if side == "relay":
                        row["relay"] = await run_clients(base_url, args, rep * per_rep)
                        if not args.no_delivery:
                            t0 = time.perf_counter()
                            backlog = await open_rows(store)
                            drain_cpu0 = time.process_time()
                            row["relay"]["drained"] = await drained(outbox, timeout_s=120, store=store)
                            # the outbox alone (no callbacks coming): its cost per TopS.II request
                            row["relay"]["drain_backlog"] = backlog
                            row["relay"]["drain_cpu_us_per_send"] = round(
                                (time.process_time() - drain_cpu0) * 1e6 / backlog, 1) if backlog else None
                            row["relay"]["drain_s"] = round(time.perf_counter() - t0, 2)
                    else:
                        row["bare"] = await run_clients(ceiling_url, args, rep * per_rep)
                    # this process's CPU (every thread; the relay's includes the outbox draining
                    # to the fake TopS.II) per callback answered
                    row[side]["cpu_us_per_callback"] = round((time.process_time() - cpu0) * 1e6
                                                             / row[side]["callbacks"], 1)
                    threads1 = thread_cpu()
                    row[side]["thread_cpu_us_per_callback"] = {
                        name: round((sec - threads0.get(name, 0.0)) * 1e6 / row[side]["callbacks"], 1)
                        for name, sec in threads1.items() if sec - threads0.get(name, 0.0) > 0}
                if args.relay_only:
                    row["bare"] = {"per_s": 0, "p99_ms": 0}
                row["ratio"] = round(row["relay"]["per_s"] / max(1, row["bare"]["per_s"]), 3)
                row["loadavg"] = loadavg()
                reps.append(row)
                print(f"rep {rep}: relay {row['relay']['per_s']}/s (p99 {row['relay']['p99_ms']} ms, "
                      f"errors {row['relay']['errors']}, {row['relay']['cpu_us_per_callback']} us CPU/callback), "
                      f"bare {row['bare']['per_s']}/s (p99 {row['bare']['p99_ms']} ms, "
                      f"{row['bare'].get('cpu_us_per_callback')} us CPU/callback), ratio {row['ratio']}, loadavg {row['loadavg']}",
                      file=sys.stderr, flush=True)
            async with store.connect() as conn:
                logged = (await conn.execute(sa.select(sa.func.count()).select_from(request_log))).scalar_one()
            results["request_log_rows"] = logged
            results["expected_request_log_rows"] = args.reps * sum(len(callbacks_for(c)) for c in range(per_rep)) \
                + sum(len(callbacks_for(9_000_000 + c)) for c in range(WARM_UP_CALLS))
            results["batches"] = relay[2].committer.batches
        finally:
            await runner.cleanup()
            await stop_relay(*relay)
    fake.stdin.write(b"count\n")
    counts = json.loads(await fake.stdout.readline())
    fake.stdin.write(b"quit\n")
    await asyncio.wait_for(fake.wait(), 10)
    results["tops"] = {**counts, "expected_sends": 0 if args.no_delivery else args.reps * per_rep + WARM_UP_CALLS}  # one request per call
    results["runs"] = reps
    ratios = sorted(r["ratio"] for r in reps)
    results["summary"] = {
        "relay_per_s": [r["relay"]["per_s"] for r in reps],
        "bare_per_s": [r["bare"]["per_s"] for r in reps],
        "ratios": [r["ratio"] for r in reps],
        "median_ratio": statistics.median(ratios),
        "loadavg_after": loadavg(),
    }
    print(json.dumps(results, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callbacks", dest="calls", type=int, default=10000,
                        help="calls to run (a two-phone call makes two callbacks)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0, help="callbacks per second (open loop); 0 = closed loop")
    parser.add_argument("--seconds", type=float, default=0, help="with --rate: run this long")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--reps", type=int, default=3, help="relay/bare rounds, alternating order")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after start-up (see above)")
    parser.add_argument("--relay-only", action="store_true",
                        help="skip the bare handler (to profile the relay, e.g. under py-spy)")
    parser.add_argument("--no-delivery", action="store_true",
                        help="TopS.II target disabled: the callback intake alone (HTTP, routing, commit)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--fake-tops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rate and args.seconds:
        args.calls = int(args.rate / CALLBACKS_PER_CALL * args.seconds)
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.client:
        asyncio.run(client_main(json.loads(ARGS.client)))
    elif ARGS.fake_tops:
        asyncio.run(fake_tops_main())
    else:
        asyncio.run(main(ARGS))
