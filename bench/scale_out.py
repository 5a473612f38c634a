#!/usr/bin/env python3
"""Outbox drain rate with 1, 2, 3... instances sharing one MariaDB.

For each instance count N: a fresh database gets ``--rows`` pending DID Optimizer rows; N worker
processes (each one `Outbox` with its own node_id, Store and DIDOptimizerSender, as the daemon wires
them) start together and drain it through a fake DID Optimizer in its own process
(tests/fakes/did_optimizer.py: it answers at once and counts every uniqueid it confirmed). The
time runs from the start signal until the last row is delivered (the shared table, polled).

Reported per N: rows/s, the scaling factor against one instance, and where the CPU went during the
drain (seconds used by the workers, mariadbd and the fake; their sum against the machine's cores as
"ours busy"; the whole machine's use as "machine busy", so other load shows): when the machine is
busy near 100 %, the CPU, not the claim protocol, is the bound.
The fake must have confirmed every row exactly once, or the run fails.

  .venv/bin/python bench/scale_out.py                      # 1, 2 and 3 instances, 6000 rows
  .venv/bin/python bench/scale_out.py --instances 1,2,4 --rows 10000 --concurrency 64

  .venv/bin/python bench/scale_out.py --galera --rows 3000  # on a 3-node Galera cluster (galera-4)

``--galera`` starts a 3-node cluster on loopback (tests/system/galera.py) and runs 1, 2 and 3
instances each on its own node ("spread") and all on one node, with rows/s and write conflicts/s
(transactions restarted on deadlock or certification failure), beside a baseline in the same run:
one instance on the plain MariaDB of ``--url``.

``--url`` names the MariaDB server (a database ``td_bench_<random>`` is created and dropped on it;
default mysql+aiomysql://root@127.0.0.1:3306).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.common import mysql_admin  # noqa: E402

TARGET = "did_optimizer"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def payload(n: int) -> dict[str, Any]:
    uid = f"1795400000.{n}"
    return {"uniqueid": uid, "linkedid": uid, "phoneNumber": "15551230001", "customerPhone": "915555550001",
            "campaignId": "BENCH", "dialStatus": "ANSWER", "disposition": "ANSWER", "duration": 2,
            "hangupCause": 16, "timestamp": 1795400000, "source": "telephonyd"}


def outbox_config(args: argparse.Namespace) -> Any:
    from telephonyd.config import OutboxConfig

    return OutboxConfig(concurrency=args.concurrency, claim_batch=args.claim_batch, poll_interval_s=0.05,
                        lease_s=60.0, write_batch_max=256, backoff_base_s=0.1, backoff_max_s=1.0)


# ---------------------------------------------------------------------------------------------
# Worker process (``scale_out.py --worker '<json>'``): one Outbox, started on "go", stopped on "stop"


async def worker_main(spec: dict[str, Any]) -> None:
    import aiohttp

    from telephonyd.config import DIDOptimizerConfig
    from telephonyd.outbox import Outbox, metadata
    from telephonyd.store import Store
    from telephonyd.upstream.did_optimizer import DIDOptimizerSender

    args = argparse.Namespace(**spec["args"])
    store = Store(spec["url"], schemas=[metadata], pool_size=4)
    await store.start()
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        outbox = Outbox(store, node_id=spec["node_id"], config=outbox_config(args))
        did = DIDOptimizerConfig(enabled=True, base_url=spec["fake_url"], timeout_s=10.0)
        sender = DIDOptimizerSender(did, session)
        outbox.register_sender(TARGET, sender)
        await outbox.start()
        lines = await _stdin_lines()
        print("ready", flush=True)
        assert await lines.readline() == b"go\n"
        before = resource.getrusage(resource.RUSAGE_SELF)
        runner = asyncio.create_task(outbox.run())
        await lines.readline()  # "stop" (or EOF)
        after = resource.getrusage(resource.RUSAGE_SELF)
        sent = dict(outbox.health()["sent"])
        conflicts = sum(store.conflicts.snapshot()["by_op"].values())
        await outbox.stop(5.0)
        await runner
    await store.close()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(json.dumps({"node_id": spec["node_id"], "cpu_s": cpu, "sent": sent, "conflicts": conflicts}), flush=True)


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


# ---------------------------------------------------------------------------------------------
# Fake DID Optimizer (``scale_out.py --fake``): prints its URL; on "report" prints its counts


async def fake_main() -> None:
    from tests.fakes.did_optimizer import FakeDIDOptimizer

    async with FakeDIDOptimizer() as fake:
        lines = await _stdin_lines()
        print(fake.base_url, flush=True)
        await lines.readline()
        counts = fake.deliveries
        print(json.dumps({"confirmed": counts.total(), "uniqueids": len(counts),
                          "twice": sum(1 for n in counts.values() if n > 1)}), flush=True)


# ---------------------------------------------------------------------------------------------
# Orchestration


def spawn(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO)


def send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def read(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"child {proc.args} exited with {proc.wait()}")
    return line.strip()


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


def _cpu_sum(pids: list[int]) -> float | None:
    values = [proc_cpu_s(p) for p in pids]
    return None if not values or any(v is None for v in values) else sum(v for v in values if v is not None)


def mariadb_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("mariadbd", "mysqld"):
                    return int(entry.name)
            except OSError:
                continue
    return None


async def fill(url: str, rows: int, args: argparse.Namespace) -> None:
    from telephonyd.outbox import Outbox, metadata
    from telephonyd.store import Store

    store = Store(url, schemas=[metadata])
    await store.start()
    outbox = Outbox(store, node_id="loader", config=outbox_config(args))
    await outbox.start()
    for first in range(0, rows, 1000):
        await asyncio.gather(*(outbox.enqueue(TARGET, f"1795400000.{n}", payload(n))
                               for n in range(first, min(rows, first + 1000))))
    await outbox.stop(10.0)
    await store.close()


async def wait_drained(url: str, rows: int, timeout: float) -> float:
    """Poll the shared table until every row is delivered; returns the monotonic time it was seen."""
    import sqlalchemy as sa

    from telephonyd.outbox import metadata
    from telephonyd.outbox.schema import outbox
    from telephonyd.store import Store

    store = Store(url, schemas=[metadata], pool_size=1)
    await store.start()
    stmt = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state == "delivered")
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with store.connect() as conn:
                if int((await conn.execute(stmt)).scalar_one()) >= rows:
                    return time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not drained within {timeout}s")
            await asyncio.sleep(0.02)  # polling interval of the drain check
    finally:
        await store.close()


def run_one(args: argparse.Namespace, instances: int, servers: list[str] | None = None,
            db_pids: list[int] | None = None, layout: str = "") -> dict[str, Any]:
    """One drain with ``instances`` workers; worker i uses ``servers[i % len(servers)]`` (default:
    ``--url``), all of them servers of one database (Galera nodes)."""
    servers = servers or [args.url]
    name = "td_bench_" + uuid.uuid4().hex[:10]
    mysql_admin(servers[0], f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    url = f"{servers[0].rstrip('/')}/{name}"
    fake = spawn("--fake")
    workers: list[subprocess.Popen[str]] = []
    try:
        fake_url = read(fake)
        asyncio.run(fill(url, args.rows, args))
        spec = {"url": url, "fake_url": fake_url, "args": vars(args)}
        workers = [spawn("--worker", json.dumps({**spec, "node_id": f"w{i + 1}",
                                                 "url": f"{servers[i % len(servers)].rstrip('/')}/{name}"}))
                   for i in range(instances)]
        for worker in workers:
            assert read(worker) == "ready"
        pids = db_pids if db_pids is not None else [p for p in [mariadb_pid()] if p]
        cpu0 = {"mariadbd": _cpu_sum(pids), "fake": proc_cpu_s(fake.pid)}
        machine0 = machine_cpu_s()
        started = time.monotonic()
        for worker in workers:
            send(worker, "go")
        done = asyncio.run(wait_drained(url, args.rows, args.timeout))
        wall = done - started
        cpu1 = {"mariadbd": _cpu_sum(pids), "fake": proc_cpu_s(fake.pid)}
        machine1 = machine_cpu_s()
        for worker in workers:
            send(worker, "stop")
        reports = [json.loads(read(worker)) for worker in workers]
        send(fake, "report")
        confirmed = json.loads(read(fake))
    finally:
        for proc in [*workers, fake]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        mysql_admin(servers[0], f"DROP DATABASE IF EXISTS `{name}`")
    if confirmed["confirmed"] != args.rows or confirmed["twice"]:
        raise SystemExit(f"the fake confirmed {confirmed}: expected each of {args.rows} rows exactly once")
    cpu = {"workers": sum(r["cpu_s"] for r in reports)}
    for key in ("mariadbd", "fake"):
        cpu[key] = None if cpu0[key] is None or cpu1[key] is None else cpu1[key] - cpu0[key]
    return {
        "layout": layout,
        "instances": instances,
        "conflicts": sum(r.get("conflicts", 0) for r in reports),
        "conflicts_per_s": round(sum(r.get("conflicts", 0) for r in reports) / wall, 1),
        "rows": args.rows,
        "seconds": round(wall, 3),
        "rows_per_s": round(args.rows / wall, 1),
        "per_node": {r["node_id"]: r["sent"].get("delivered", 0) for r in reports},
        "cpu_s": {k: None if v is None else round(v, 2) for k, v in cpu.items()},
        "cpu_busy": round(sum(v for v in cpu.values() if v is not None) / (wall * (os.cpu_count() or 1)), 2),
        # The whole machine, this run's processes and everything else: other load skews the figures.
        "machine_busy": round((machine1[0] - machine0[0]) / (machine1[1] - machine0[1]), 2),
    }


def main(args: argparse.Namespace) -> int:
    counts = [int(n) for n in args.instances.split(",")]
    results = []
    for n in counts:
        result = run_one(args, n)
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    base = results[0]["rows_per_s"] / results[0]["instances"]
    cores = os.cpu_count() or 1
    print(f"{args.rows} rows, concurrency {args.concurrency} per instance, claim_batch {args.claim_batch}, "
          f"{cores} cores")
    print(f"{'instances':>9} {'rows/s':>8} {'scaling':>8} {'workers cpu':>11} {'mariadbd cpu':>12} "
          f"{'fake cpu':>8} {'ours busy':>9} {'machine busy':>12}  rows per instance")
    for r in results:
        cpu = r["cpu_s"]
        print(f"{r['instances']:>9} {r['rows_per_s']:>8.0f} {r['rows_per_s'] / base:>7.2f}x "
              f"{cpu['workers']:>10.1f}s {_s(cpu['mariadbd']):>12} {_s(cpu['fake']):>8} {r['cpu_busy']:>9.0%} "
              f"{r['machine_busy']:>12.0%}  {' '.join(str(v) for v in r['per_node'].values())}")
    if any(r["machine_busy"] - r["cpu_busy"] > 0.15 for r in results):
        print("note: other processes used a good share of the CPU during the run; the figures are skewed")
    if args.json:
        print(json.dumps(results))
    return 0


def galera_main(args: argparse.Namespace) -> int:
    """``--galera``: the same drain on a 3-node Galera cluster started on loopback
    (tests/system/galera.py), with the instances each on its own node ("spread") and all on one
    node ("one node"); the baseline, in the same run, is one instance on the plain MariaDB ``--url``."""
    import tempfile

    from tests.system.galera import GaleraCluster, missing

    reason = missing()
    if reason is not None:
        raise SystemExit(f"--galera: {reason}")
    counts = [int(n) for n in args.instances.split(",")]
    results = [run_one(args, 1, layout="plain MariaDB (baseline)")]
    print(json.dumps(results[0]), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="telephonyd-bench-galera-") as base:
        cluster = GaleraCluster(Path(base))
        try:
            cluster.start()
            nodes = [f"mysql+aiomysql://root@127.0.0.1:{n.port}" for n in cluster.nodes]
            pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
            for n in counts:
                layouts = [("spread", nodes), ("one node", nodes[:1])] if n > 1 else [("galera", nodes[:1])]
                for layout, servers in layouts:
                    result = run_one(args, n, servers, pids, layout)
                    results.append(result)
                    print(json.dumps(result), file=sys.stderr, flush=True)
        finally:
            cluster.close()
    base_rate = results[0]["rows_per_s"]
    print(f"{args.rows} rows, concurrency {args.concurrency} per instance, claim_batch {args.claim_batch}, "
          f"{os.cpu_count() or 1} cores; 3-node Galera on this machine; baseline: 1 instance, plain MariaDB")
    print(f"{'layout':>26} {'instances':>9} {'rows/s':>8} {'vs base':>8} {'conflicts':>9} {'conflicts/s':>11} "
          f"{'machine busy':>12}  rows per instance")
    for r in results:
        print(f"{r['layout']:>26} {r['instances']:>9} {r['rows_per_s']:>8.0f} {r['rows_per_s'] / base_rate:>7.2f}x "
              f"{r['conflicts']:>9} {r['conflicts_per_s']:>11.1f} {r['machine_busy']:>12.0%}  "
              f"{' '.join(str(v) for v in r['per_node'].values())}")
    if args.json:
        print(json.dumps(results))
    return 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", default="1,2,3", help="instance counts to run, comma separated")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32, help="outbox.concurrency of each instance")
    parser.add_argument("--claim-batch", type=int, default=64, help="outbox.claim_batch of each instance")
    parser.add_argument("--url", default="mysql+aiomysql://root@127.0.0.1:3306", help="MariaDB server URL")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--galera", action="store_true",
                        help="run on a 3-node Galera cluster started on loopback (galera-4), spread and on one node")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    parsed = parse_args(sys.argv[1:])
    if parsed.worker:
        asyncio.run(worker_main(json.loads(parsed.worker)))
    elif parsed.fake:
        asyncio.run(fake_main())
    else:
        sys.exit(galera_main(parsed) if parsed.galera else main(parsed))
