#!/usr/bin/env python3
"""Load test of the ``did_select`` route: FastAGI server + DIDSelectService against a fake API.

Everything on loopback. The fake DID Optimizer runs in its own process and answers
``GET /api/v1/dids/next`` after ``--api-delay-ms`` (20 ms: the API's own latency); fake Asterisk
clients run in their own processes, ``--concurrency`` sessions in flight (200), each a synthetic
``did_select`` channel with its own uniqueid, answered by Asterisk's rules (tests/fakes/agi.py). A
session's time runs from the client's connect to the server closing the socket (what the call's
thread in Asterisk waits); "added" is that time minus the API's own delay.

Each server runs three series: closed loop (``--concurrency`` in flight, as fast as they complete:
sessions/s), waves (``--concurrency`` sessions started at once, ``--waves`` times, one per
``--wave-gap-s``), and open loop at ``--rate`` sessions/s (each session timed from its scheduled start).

Servers, in one run:
  1. telephonyd, API up: FastAGIServer -> DIDSelectService (breaker, metrics, recorder to SQLite).
  2. bare, API up (baseline): an asyncio responder on the same loop doing the same AGI commands and
     the same GET over one keep-alive aiohttp session, nothing else.
  3. telephonyd, API down (a black hole: accepts, never answers), after ``breaker_failures``
     sessions opened the breaker: every session should be answered in < 10 ms.
  4. bare, API down (baseline): the AGI commands of a failure, no request.

Goals: p99 added latency < 5 ms with the API up; every session < 10 ms once the breaker is open.

  /work/venv/bin/python bench/did_select_load.py --sessions 4000 --concurrency 200
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.agi_load import percentile  # noqa: E402

DIDS_NEXT = "/api/v1/dids/next"


# ---------------------------------------------------------------------------------------------
# The fake API (own process: ``--api '<json>'``; prints its port, then serves until stdin closes)


async def api_main(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    if spec["mode"] == "blackhole":
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):
                pass
            writer.close()

        server = await asyncio.start_server(swallow, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    else:
        from aiohttp import web

        delay = spec["delay_s"]
        body = json.dumps({"success": True, "did": {"number": "+14155550100", "description": "bench", "carrier": "lab",
                                                    "location": "CA", "is_fallback": False}, "metadata": {}})  # fmt: skip

        async def next_did(_request: web.Request) -> web.Response:
            await asyncio.sleep(delay)
            return web.Response(text=body, content_type="application/json")

        app = web.Application()
        app.router.add_get(DIDS_NEXT, next_did)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # until the parent closes stdin


async def start_api(mode: str, delay_s: float) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--api", json.dumps({"mode": mode, "delay_s": delay_s}),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(REPO),
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return proc, int(line)


async def stop_api(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


# ---------------------------------------------------------------------------------------------
# Fake Asterisk clients (own processes: ``--client '<json>'``)


async def client_load(spec: dict[str, Any]) -> dict[str, Any]:
    from tests.fakes.agi import FakeChannel

    template = FakeChannel.synthetic({"campaign_id": "BENCH", "agent": "6666", "lead_id": "1"}, script="did_select",
                                     extension="914155550123", callerid="5550001111")  # fmt: skip
    marker = b"agi_uniqueid: 1795237838.1\n"
    latencies: list[float] = []
    results: dict[str, int] = {}
    errors: dict[str, int] = {}
    counter = iter(range(spec["sessions"]))

    async def one(i: int, scheduled: float | None) -> None:
        chan = template.copy()
        block = chan.env_block.replace(marker, f"agi_uniqueid: {spec['prefix']}.{i}\n".encode())
        started = time.perf_counter() if scheduled is None else scheduled
        reader, writer = await asyncio.wait_for(asyncio.open_connection(spec["host"], spec["port"]), 10)
        result = "?"
        try:
            writer.write(block)
            while True:
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line.endswith(b"\n"):
                    break
                command = line[:-1].decode()
                if command.startswith("SET VARIABLE TELEPHONYD_RESULT"):
                    result = command.rsplit(" ", 1)[-1].strip('"')
                writer.write(("\n".join(chan.answer(command)) + "\n").encode())
        finally:
            writer.close()
        latencies.append(time.perf_counter() - started)
        results[result] = results.get(result, 0) + 1

    async def guarded(i: int, scheduled: float | None = None) -> None:
        try:
            await one(i, scheduled)
        except (OSError, TimeoutError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    async def worker() -> None:
        for i in counter:
            await guarded(i)

    wall_start = time.time()
    if spec["rate"] or spec.get("wave"):
        t0, tasks = time.perf_counter(), []
        for i in range(spec["sessions"]):
            if spec.get("wave"):  # ``wave`` sessions at once, every ``gap_s``
                scheduled = t0 + (i // spec["wave"]) * spec["gap_s"]
            else:
                scheduled = t0 + i / spec["rate"]
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing of the load generator
            tasks.append(asyncio.create_task(guarded(i, scheduled)))
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    return {"latencies": latencies, "results": results, "errors": errors, "wall_start": wall_start,
            "wall_end": time.time()}  # fmt: skip


async def run_clients(
    args: argparse.Namespace, port: int, prefix: str, count: int, concurrency: int, rate: float = 0.0,
    wave: int = 0,
) -> dict[str, Any]:
    per = [count // args.clients + (1 if i < count % args.clients else 0) for i in range(args.clients)]
    procs = []
    for i, n in enumerate(per):
        spec = {"host": "127.0.0.1", "port": port, "sessions": n, "prefix": f"{prefix}{i}",
                "concurrency": max(1, concurrency // args.clients), "rate": rate / args.clients,
                "wave": wave // args.clients, "gap_s": args.wave_gap_s}  # fmt: skip
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", json.dumps(spec), stdout=asyncio.subprocess.PIPE, cwd=str(REPO)))
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    parts = [json.loads(out) for out, _ in outs]
    merged: dict[str, Any] = {"latencies": sorted(x for p in parts for x in p["latencies"]), "results": {}, "errors": {}}
    for p in parts:
        for key in ("results", "errors"):
            for k, v in p[key].items():
                merged[key][k] = merged[key].get(k, 0) + v
    merged["wall"] = max(p["wall_end"] for p in parts) - min(p["wall_start"] for p in parts)
    return merged


# ---------------------------------------------------------------------------------------------
# Servers (this process)


async def start_telephonyd(
    tmp: Path, api_port: int, args: argparse.Namespace, did_select: dict[str, Any] | None = None
) -> tuple[Any, Any, Any]:
    from telephonyd.config import Config
    from telephonyd.didselect import DIDSelectService
    from telephonyd.didselect.schema import metadata
    from telephonyd.fastagi import FastAGIServer
    from telephonyd.store import Store

    config = Config.model_validate({
        "store": {"url": f"sqlite+aiosqlite:///{tmp}/bench.db"},
        "fastagi": {"listen": "127.0.0.1:0", "max_sessions": 4000},
        "did_optimizer": {"base_url": f"http://127.0.0.1:{api_port}", "api_key": "did_" + "ab" * 32},
        "did_select": {"enabled": True, "max_connections": args.concurrency, **(did_select or {})},
    })  # fmt: skip
    store = Store(config.store.url.get_secret_value(), schemas=[metadata])
    await store.start()
    service = DIDSelectService(config.did_select, config.did_optimizer, store, node_id="bench")
    # Server-side figures per session: the handler's whole time, and the API request inside it.
    api_s: dict[str, float] = {}
    overhead: list[float] = []
    select = service.client.select

    async def timed_select(query: Any, request_id: str, timeout_s: float) -> Any:
        started = time.perf_counter()
        try:
            return await select(query, request_id, timeout_s)
        finally:
            api_s[request_id] = time.perf_counter() - started

    async def timed_handler(session: Any) -> str:
        started = time.perf_counter()
        try:
            return await service.handler(session)
        finally:
            uniqueid = session.env.get("uniqueid", "")
            overhead.append(time.perf_counter() - started - api_s.pop(uniqueid, 0.0))

    service.client.select = timed_select  # type: ignore[method-assign]
    service.overhead = overhead  # type: ignore[attr-defined]
    server = FastAGIServer(config.fastagi, {"did_select": timed_handler})
    await service.start()
    await server.start()
    tasks = [asyncio.create_task(service.run()), asyncio.create_task(server.run())]
    gc.collect()
    gc.freeze()
    return service, server, (store, tasks)


async def stop_telephonyd(service: Any, server: Any, extra: Any) -> None:
    store, tasks = extra
    await server.stop(5.0)
    await service.stop(10.0)
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()


async def bare_responder(api_port: int | None, concurrency: int) -> tuple[asyncio.Server, int, Any]:
    """The same AGI exchange and (with ``api_port``) the same GET, with nothing else."""
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    url = f"http://127.0.0.1:{api_port}{DIDS_NEXT}"
    expression = 'GET FULL VARIABLE "${CAMPCUST}\x1f${campaign_id}\x1f${agent}\x1f${CUSTOMER_PHONE}"\n'.encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()) not in (b"\n", b""):
                pass
            writer.write(expression)
            await reader.readline()
            commands = ['SET VARIABLE OPTIMIZER_STATUS "FAILURE"', 'SET VARIABLE TELEPHONYD_RESULT "FAILED"']
            if api_port is not None:
                async with session.get(url, params={"campaign_id": "BENCH"}, headers={"X-Request-ID": "1"}) as resp:
                    did = json.loads(await resp.read())["did"]["number"].lstrip("+")
                commands = [f'EXEC MSet "OPTIMIZER_DID={did},OPTIMIZER_STATUS=SUCCESS,OPTIMIZER_FALLBACK=NO,'
                            f'CALLERID(num)={did}"', 'SET VARIABLE TELEPHONYD_RESULT "SELECTED"']  # fmt: skip
            for command in commands:
                writer.write((command + "\n").encode())
                await reader.readline()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    return server, server.sockets[0].getsockname()[1], session


def report(name: str, run: dict[str, Any], api_s: float) -> dict[str, Any]:
    lat = run["latencies"]
    added = [x - api_s for x in lat]
    return {
        "name": name, "sessions": len(lat), "per_s": len(lat) / run["wall"] if run["wall"] else 0.0,
        "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3, "max_ms": lat[-1] * 1e3 if lat else 0,
        "added_p50_ms": percentile(added, 50) * 1e3, "added_p99_ms": percentile(added, 99) * 1e3,
        "over_10ms": sum(1 for x in lat if x >= 0.010), "results": run["results"], "errors": run["errors"],
    }  # fmt: skip


def show(r: dict[str, Any], added: bool) -> None:
    line = (f"  {r['name']:>36}: {r['per_s']:6.0f} sessions/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
            f"max {r['max_ms']:7.2f} ms")  # fmt: skip
    if added:
        line += f"  added p50 {r['added_p50_ms']:6.2f} ms  p99 {r['added_p99_ms']:6.2f} ms"
    else:
        line += f"  >=10 ms: {r['over_10ms']}"
    if "server_p50_ms" in r:
        line += f"  server p50 {r['server_p50_ms']:.2f} ms  p99 {r['server_p99_ms']:.2f} ms"
    line += f"  CPU/session {r['cpu_main_us']:.0f} us loop, {r['cpu_all_us']:.0f} us all threads"
    print(line + f"  results {r['results']}  errors {r['errors'] or 0}")


async def series(args: argparse.Namespace, port: int, name: str, prefix: str, api_s: float,
                 service: Any = None) -> list[dict[str, Any]]:
    """The closed-loop series (``--concurrency`` in flight) and the fixed-rate one (``--rate``)."""
    out = []
    for label, concurrency, rate, wave, count in (
        (f"{args.concurrency} in flight", args.concurrency, 0.0, 0, args.sessions),
        (f"waves of {args.concurrency}", args.concurrency, 0.0, args.concurrency, args.concurrency * args.waves),
        (f"{args.rate:g}/s", args.concurrency, args.rate, 0, int(args.rate * args.seconds)),
    ):
        if service is not None:
            service.overhead.clear()
        cpu_main, cpu_all = time.thread_time(), time.process_time()
        run = await run_clients(args, port, f"{prefix}{len(out)}", count, concurrency, rate, wave)
        r = report(f"{name}, {label}", run, api_s)
        done = max(1, r["sessions"])
        r["cpu_main_us"] = (time.thread_time() - cpu_main) / done * 1e6
        r["cpu_all_us"] = (time.process_time() - cpu_all) / done * 1e6
        if service is not None:
            over = sorted(service.overhead)
            r["server_p50_ms"], r["server_p99_ms"] = percentile(over, 50) * 1e3, percentile(over, 99) * 1e3
        out.append(r)
    return out


async def main(args: argparse.Namespace) -> int:
    api_s = args.api_delay_ms / 1000
    load_before = f"{os.getloadavg()[0]:.1f}"
    up: list[dict[str, Any]] = []
    down: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="did_select_load_") as tmp:
        # -- API up ---------------------------------------------------------------------------------
        api, api_port = await start_api("ok", api_s)
        try:
            # The whole path with the answer used: a machine this loaded must not open the breaker
            # (its own queueing past the budget looks like a slow API); the down series keeps defaults.
            up_config = {"budget_s": args.up_budget_s, "breaker_failures": 1_000_000}
            service, server, extra = await start_telephonyd(Path(tmp) / "up", api_port, args, up_config)
            port = server.bound_addresses[0][1]
            await run_clients(args, port, "w", min(args.warmup, args.sessions), args.concurrency)
            up += await series(args, port, "telephonyd, API up", "r", api_s, service)
            await stop_telephonyd(service, server, extra)
            bare, bare_port, session = await bare_responder(api_port, args.concurrency)
            async with bare:
                await run_clients(args, bare_port, "w", min(args.warmup, args.sessions), args.concurrency)
                up += await series(args, bare_port, "bare, API up", "b", api_s)
            await session.close()
        finally:
            await stop_api(api)
        # -- API down (black hole) ------------------------------------------------------------------
        api, api_port = await start_api("blackhole", 0)
        try:
            service, server, extra = await start_telephonyd(Path(tmp) / "down", api_port, args)
            port = server.bound_addresses[0][1]
            opening = await run_clients(args, port, "o", service.config.breaker_failures, 1)
            state = service.breaker.state
            down += await series(args, port, "telephonyd, breaker open", "d", 0.0, service)
            failures = service.config.breaker_failures
            await stop_telephonyd(service, server, extra)
            bare, bare_port, session = await bare_responder(None, args.concurrency)
            async with bare:
                down += await series(args, bare_port, "bare, no request", "n", 0.0)
            await session.close()
        finally:
            await stop_api(api)
    print(f"did_select: {args.sessions} sessions closed loop ({args.concurrency} in flight), {args.rate:g}/s for "
          f"{args.seconds:g} s open loop; {args.clients} client processes; API delay {args.api_delay_ms:g} ms; "
          f"cpus={os.cpu_count()}")  # fmt: skip
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.1f}")
    print(f"API up (budget_s {args.up_budget_s:g}, breaker off; 'added' = session time minus the API's own "
          f"{args.api_delay_ms:g} ms; 'server' = handler time minus its request):")  # fmt: skip
    for r in up:
        show(r, True)
    print(f"breaker: {state} after {failures} opening sessions (each {max(opening['latencies']) * 1e3:.0f} ms at most: "
          "the budget); then, API still down:")  # fmt: skip
    for r in down:
        show(r, False)
    print(f"ratio sessions/s to baseline, closed loop: {up[0]['per_s'] / up[3]['per_s']:.2f} (API up), "
          f"{down[0]['per_s'] / down[3]['per_s']:.2f} (breaker open)")  # fmt: skip
    for r, b in ((up[1], up[4]), (up[2], up[5])):
        print(f"goal p99 added < 5 ms ({r['name'].split(', ')[-1]}): {'met' if r['added_p99_ms'] < 5 else 'NOT met'} "
              f"({r['added_p99_ms']:.2f} ms; baseline {b['added_p99_ms']:.2f} ms)")  # fmt: skip
    for r, b in ((down[0], down[3]), (down[1], down[4]), (down[2], down[5])):
        print(f"goal every session < 10 ms with the breaker open ({r['name'].split(', ')[-1]}): "
              f"{'met' if r['over_10ms'] == 0 else 'NOT met'} ({r['over_10ms']} of {r['sessions']} at or over 10 ms; "
              f"baseline {b['over_10ms']})")  # fmt: skip
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--api-delay-ms", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=300.0, help="sessions/s of the open-loop series")
    p.add_argument("--seconds", type=float, default=8.0, help="length of the open-loop series")
    p.add_argument("--up-budget-s", type=float, default=1.0, help="did_select.budget_s of the API-up series")
    p.add_argument("--waves", type=int, default=10, help="waves of --concurrency sessions started at once")
    p.add_argument("--wave-gap-s", type=float, default=1.0, help="seconds between waves")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--api", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    ns = parse(sys.argv[1:])
    if ns.client:
        sys.stdout.write(json.dumps(asyncio.run(client_load(json.loads(ns.client)))))
    elif ns.api:
        asyncio.run(api_main(json.loads(ns.api)))
    else:
        sys.exit(asyncio.run(main(ns)))
