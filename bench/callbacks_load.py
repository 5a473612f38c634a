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

After the load, the run waits for the outbox to drain and checks that the fake received exactly one
request per logical send and that every callback has its request log row.

The same clients then run against a bare aiohttp handler on this process's event loop that answers
the same JSON and records nothing: the ceiling of this machine and Python.

Modes:
  closed loop (default): ``--concurrency`` callbacks in flight, as fast as they are answered.
  fixed rate (``--rate R`` callbacks/s): calls start on a fixed schedule (open loop; the mix makes
  1.25 callbacks per call, a phone 2 following its phone 1's answer); a callback's time counts from
  its scheduled start, so a relay falling behind shows in p99.

``--gc-freeze`` calls ``gc.freeze()`` once the relay is up, as a daemon may after its start: the
~80k objects of the imported libraries then leave the collector's generations, and a full
collection no longer stalls the event loop for tens of milliseconds (a p99 effect).

Goals: >= 1,500 callbacks/s closed loop, p99 < 20 ms at 500 callbacks/s.

  .venv/bin/python bench/callbacks_load.py --callbacks 20000 --concurrency 64
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


async def start_relay(db_dir: str, tops_url: str, http_config: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """The relay; ``http_config``: HTTPConfig fields over the loopback default (``tls``)."""
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
    outbox.register_sender("tops", TopsSender(tops, session, on_result=service.record_upstream), enabled=True)

    async def status() -> dict[str, Any]:
        return {}

    async def ready() -> bool:
        return True

    http = HTTPServer(HTTPConfig(**{"listen": "127.0.0.1:0", **(http_config or {})}), status=status, ready=ready)
    http.add_routes(callback_routes(service), auth="none")
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


async def drained(outbox: Any, timeout_s: float) -> bool:
    """Poll until no outbox row is pending or in flight; False when ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        by_state = (await outbox.stats())["by_state"]
        if not by_state.get("pending", 0) and not by_state.get("in_flight", 0):
            return True
        await asyncio.sleep(0.2)
    return False


async def main(args: argparse.Namespace) -> None:
    import sqlalchemy as sa

    from telephonyd.ameyo.schema import request_log

    fake = await asyncio.create_subprocess_exec(sys.executable, __file__, "--fake-tops", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    tops_url = (await fake.stdout.readline()).decode().strip()
    results: dict[str, Any] = {"mode": f"fixed rate {args.rate}/s" if args.rate else f"closed loop, {args.concurrency} in flight",
                               "cpus": os.cpu_count(), "gc_freeze": args.gc_freeze}
    with tempfile.TemporaryDirectory() as db_dir:
        base_url, *relay = await start_relay(db_dir, tops_url)
        store, outbox = relay[0], relay[1]
        try:
            warm_up = argparse.Namespace(**{**vars(args), "calls": WARM_UP_CALLS, "rate": 0, "clients": 1})
            await run_clients(base_url, warm_up, 9_000_000)
            if args.gc_freeze:
                gc.collect()
                gc.freeze()
            results["relay"] = await run_clients(base_url, args, 0)
            results["relay"]["drained"] = await drained(outbox, timeout_s=120)
            async with store.connect() as conn:
                logged = (await conn.execute(sa.select(sa.func.count()).select_from(request_log))).scalar_one()
            results["relay"]["request_log_rows"] = logged
            results["relay"]["batches"] = relay[2].committer.batches
        finally:
            await stop_relay(*relay)
    fake.stdin.write(b"count\n")
    counts = json.loads(await fake.stdout.readline())
    fake.stdin.write(b"quit\n")
    await asyncio.wait_for(fake.wait(), 10)
    calls = args.calls - args.calls % args.clients
    results["tops"] = {**counts, "expected_sends": calls + WARM_UP_CALLS}  # one TopS.II request per call
    ceiling_url, runner = await start_ceiling()
    try:
        results["ceiling"] = await run_clients(ceiling_url, args, 0)
    finally:
        await runner.cleanup()
    print(json.dumps(results, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callbacks", dest="calls", type=int, default=10000,
                        help="calls to run (a two-phone call makes two callbacks)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0, help="callbacks per second (open loop); 0 = closed loop")
    parser.add_argument("--seconds", type=float, default=0, help="with --rate: run this long")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after start-up (see above)")
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
