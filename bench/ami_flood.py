#!/usr/bin/env python3
"""AMI flood: full ps_contacts resync of 10,000 contacts into MariaDB, then event floods.

The daemon side runs in this process, wired like the daemon (AMIClient -> ContactsSync ->
ContactsWriter -> Store on MariaDB, a fresh database dropped afterwards), plus a DeviceStateChange
subscriber standing for the presence engine. The fake Asterisk runs in a separate process (so its
CPU is not the client's): tests/fakes/ami.py with N contacts registered before we connect, and a
bench-only ``BenchFlood`` action that makes it stream prebuilt events in the recorded wire format
(ContactStatus alternating Reachable/Unreachable across the contacts, so every one is a real
change to write, each followed by ``--dsc-per-status`` DeviceStateChange events).

Phases and goals:
1. resync: login -> PJSIPShowContacts (10,000 ContactList items) -> one reconcile transaction that
   inserts every row. Goal < 2 s.
2. throughput: ``--flood`` ContactStatus events (plus DeviceStateChange) as fast as the fake can
   send; events/s from the first event sent to the last row committed. Goal >= 20,000 events/s.
3. latency: ContactStatus at ``--rate`` events/s for ``--seconds``; the delay from an event's
   arrival on the AMI socket to the commit of its row (p50/p99/max). Goal p99 < 100 ms at 5,000/s.

  .venv/bin/python bench/ami_flood.py
  .venv/bin/python bench/ami_flood.py --contacts 10000 --flood 200000 --rate 5000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.common import mysql_admin  # noqa: E402

SECRET = "bench-secret"


# ---------------------------------------------------------------------------------------------
# Fake Asterisk (its own process: ``ami_flood.py --server N``)


def _server_main(contacts: int) -> None:
    from tests.fakes.ami import FakeAMIServer, FakeContact

    class BenchAMIServer(FakeAMIServer):
        async def _answer(self, s, pairs):  # type: ignore[no-untyped-def]
            fields = {k.lower(): v for k, v in pairs}
            if fields.get("action", "").lower() != "benchflood":
                return await super()._answer(s, pairs)
            count, rate = int(fields["count"]), float(fields.get("rate", "0"))
            dsc = int(fields.get("dscperstatus", "1"))
            events = self._build(count, dsc)
            s.send(f"Response: Success\r\nActionID: {fields.get('actionid', '')}\r\n\r\n".encode())
            await s.writer.drain()
            asyncio.create_task(self._stream(s, events, rate, 1 + dsc))
            return True

        def _build(self, count: int, dsc: int) -> list[bytes]:
            contacts = list(self.contacts.values())
            out = []
            for i in range(count):
                c = contacts[i % len(contacts)]
                c.status = "Unreachable" if c.status == "Reachable" else "Reachable"
                rtt = 400 + i % 300 if c.status == "Reachable" else 0
                event = (f"Event: ContactStatus\r\nPrivilege: system,all\r\nURI: {c.uri}\r\nContactStatus: "
                         f"{c.status}\r\nAOR: {c.aor}\r\nEndpointName: {c.endpoint}\r\nRoundtripUsec: {rtt}\r\n\r\n")
                state = "NOT_INUSE" if c.status == "Reachable" else "UNAVAILABLE"
                event += (f"Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: PJSIP/{c.endpoint}\r\n"
                          f"State: {state}\r\n\r\n") * dsc
                out.append(event.encode())
            return out

        async def _stream(self, s, events: list[bytes], rate: float, per: int) -> None:  # type: ignore[no-untyped-def]
            if rate <= 0:
                for start in range(0, len(events), 400):
                    s.send(b"".join(events[start:start + 400]))
                    await s.writer.drain()
                return
            tick = 0.005
            started = time.monotonic()
            sent = 0
            while sent < len(events):
                due = min(len(events), int((time.monotonic() - started) * rate) + 1)
                if due > sent:
                    s.send(b"".join(events[sent:due]))
                    sent = due
                    await s.writer.drain()
                await asyncio.sleep(tick)

    async def main() -> None:
        server = BenchAMIServer(secret=SECRET)
        server.add_contacts_silently(
            FakeContact(f"{10000 + n}", f"{10000 + n}", f"sip:{10000 + n}@10.{n // 65536 % 256}.{n // 256 % 256}."
                        f"{n % 256}:5060", status="Reachable", rtt_usec=500,
                        expiration_time=int(time.time()) + 3600, via_addr="10.0.0.1", via_port=5060,
                        call_id=f"{uuid.uuid4()}@bench")
            for n in range(contacts))
        await server.start()
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await server.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# Daemon side


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


async def run(args: argparse.Namespace, port: int, db_url: str) -> dict[str, Any]:
    from telephonyd.ami import AMIClient
    from telephonyd.config import AMIConfig, PSContactsConfig
    from telephonyd.contacts import ContactsSync
    from telephonyd.contacts.schema import metadata
    from telephonyd.store import Store

    store = Store(db_url, schemas=[metadata])
    await store.start()
    client = AMIClient(AMIConfig(enabled=True, port=port, secret=SECRET, events="system,call",
                                 action_timeout_s=30.0, ping_interval_s=60.0))
    sync = ContactsSync(store, client, PSContactsConfig(coalesce_s=args.coalesce), node_id="bench")
    device_states = {"n": 0}
    client.subscribe("DeviceStateChange", lambda _m: device_states.__setitem__("n", device_states["n"] + 1))
    await client.start()
    await sync.start()
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(sync.run())]
    report: dict[str, Any] = {"contacts": args.contacts}
    try:
        await _until(lambda: sync.last_resync is not None, 60, "the first resync")
        first = dict(sync.last_resync or {})
        again = await sync.resync()
        report["resync"] = {"first_s": first["duration_s"], "added": first["added"],
                            "unchanged_s": again["duration_s"], "goal_s": 2.0}

        async def flood(count: int, rate: float) -> tuple[float, float]:
            target = sync.counters["events"] + count
            dsc_target = device_states["n"] + count * args.dsc_per_status
            started = time.monotonic()
            await client.action({"Action": "BenchFlood", "Count": count, "Rate": rate,
                                 "DscPerStatus": args.dsc_per_status}, timeout=60)
            await _until(lambda: sync.counters["events"] >= target and device_states["n"] >= dsc_target,
                         600, "the flood to arrive")
            arrived = time.monotonic()
            await _until(lambda: sync.health()["pending_writes"] == 0 and sync.health()["queued_events"] == 0,
                         600, "the rows to be written")
            return arrived - started, time.monotonic() - started

        written = sync.counters["rows_written"]
        arrived_s, done_s = await flood(args.flood, 0)
        total = args.flood * (1 + args.dsc_per_status)
        report["throughput"] = {
            "contact_status_events": args.flood, "device_state_events": args.flood * args.dsc_per_status,
            "events_per_s": round(total / done_s), "contact_status_per_s": round(args.flood / done_s),
            "seconds": round(done_s, 2), "received_s": round(arrived_s, 2),
            "row_writes": sync.counters["rows_written"] - written, "goal_events_per_s": 20_000,
        }
        sync.latency.clear()
        count = int(args.rate * args.seconds)
        await flood(count, args.rate)
        report["latency"] = {"rate_contact_status_per_s": args.rate,
                             "rate_events_per_s": args.rate * (1 + args.dsc_per_status),
                             "seconds": args.seconds, **sync.latency.summary_ms(), "goal_p99_ms": 100}
        report["health"] = {k: v for k, v in sync.health().items() if k in ("batches", "rows_written", "superseded",
                                                                              "write_failures", "overflows")}
    finally:
        await sync.stop(10)
        await client.stop(5)
        await asyncio.wait(tasks, timeout=10)
        await store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", type=int, metavar="CONTACTS", help=argparse.SUPPRESS)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--flood", type=int, default=100_000, help="ContactStatus events in the throughput phase")
    parser.add_argument("--dsc-per-status", type=int, default=1, help="DeviceStateChange events per ContactStatus")
    parser.add_argument("--rate", type=float, default=5000.0, help="ContactStatus events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--coalesce", type=float, default=0.05, help="ps_contacts.coalesce_s")
    parser.add_argument("--mysql", default=os.environ.get("TELEPHONYD_BENCH_MYSQL", "mysql+aiomysql://root@127.0.0.1:3306"))
    args = parser.parse_args()
    if args.server is not None:
        _server_main(args.server)
        return
    server = subprocess.Popen([sys.executable, __file__, "--server", str(args.contacts)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    db = "td_bench_" + uuid.uuid4().hex[:10]
    mysql_admin(args.mysql, f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    try:
        report = asyncio.run(run(args, port, f"{args.mysql}/{db}"))
    finally:
        mysql_admin(args.mysql, f"DROP DATABASE IF EXISTS {db}")
        server.stdin.close()
        server.wait(timeout=10)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
