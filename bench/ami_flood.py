#!/usr/bin/env python3
"""AMI flood: ps_contacts and agent presence at 10,000 and 50,000 contacts, resync and event floods.

The daemon side runs wired like the daemon (AMIClient -> ContactsSync -> ContactsWriter -> Store on
MariaDB, a fresh database dropped afterwards; PresenceService on the same AMI client and contacts).
The fake Asterisk runs in a separate process (so its CPU is not the client's): tests/fakes/ami.py
with N contacts registered before we connect, told over its stdin (never over AMI) to
stream prebuilt events in the recorded wire format (ContactStatus alternating Reachable/Unreachable
across the contacts, so every one is a real change to write, each followed by ``--dsc-per-status``
DeviceStateChange events). Every scenario runs in its own process (clean RSS).

For each ``--sizes`` entry, two scenarios in the same run: the baseline (contacts only, presence not
attached, as the bench measured before) and ``presence`` (the daemon's full AMI side); ratios
presence/baseline are printed. Per scenario:
1. resync: login -> PJSIPShowContacts (N ContactList items) -> one reconcile transaction inserting
   every row; with presence, until presence also holds all N agents online (its DeviceStateList
   seed and the contact changes). Goal < 2 s at 10,000. Event-loop lag (a 5 ms sleeper's overshoot)
   p99/max during it, and the longest single loop step in CPU ms (``longest_step_cpu_ms``: unlike the
   lag, not inflated when other processes hold the cores).
2. flood: ContactStatus + DeviceStateChange at ``--rate`` events/s (both kinds counted) for
   ``--seconds``; events/s applied (sent -> every row written and every presence event handled),
   event-loop lag p99/max. Goal max lag < 100 ms at 20,000 events/s.
3. (``--flood N``) unpaced throughput and (``--latency-seconds``) the event -> row commit latency
   at ``--latency-rate`` ContactStatus/s, as before.
4. (``--parse N``) parse and dispatch only: N ContactStatus events sent unpaced to a subscriber that
   counts them, events/s from the first to the last one received, each reader in its own process
   against the same fake Asterisk: telephonyd's `AMIClient`; a minimal Python asyncio reader (split
   on the blank line, one dict per event, a handler looked up by event name); and, when ``node`` and
   the npm package asterisk-manager 0.2.0 are installed (``npm install --prefix /tmp/ami-node
   asterisk-manager@0.2.0``; ``--node-modules`` names the ``node_modules``), Node's reader counting
   its ``managerevent``s. A missing Node baseline is reported and skipped. ``--parse-before DIR``
   adds telephonyd's reader from another checkout (say ``git archive <commit>`` unpacked in DIR),
   interleaved with the others, to measure a change against what it replaces in the same run.
RSS (VmRSS and peak VmHWM of the daemon-side process) after the scenario. Per phase also the number of
full (generation-2) collections and the longest one in CPU ms, and after the resync the objects the
collector still walks (``gc_tracked``) and those frozen (``gc_frozen``). The heap is handled as in
the daemon: ``gc.collect(); gc.freeze()`` once the components started (`telephonyd.app`), then what
the resync and the seed build is frozen by themselves (`telephonyd.heap`).

  .venv/bin/python bench/ami_flood.py
  .venv/bin/python bench/ami_flood.py --sizes 10000 --rate 20000 --seconds 10 --flood 100000 --latency-seconds 10
  .venv/bin/python bench/ami_flood.py --scenario presence --contacts 50000 --trace-stalls 50  # where the loop stalls
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
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
        def flood(self, count: int, rate: float, dsc: int) -> None:
            """Stream prebuilt events to every session (driven over stdin: the daemon's AMI client
            only sends the actions telephonyd declares)."""
            events = self._build(count, dsc)
            for session in self.sessions:
                asyncio.create_task(self._stream(session, events, rate, 1 + dsc))

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
            if rate <= 0:  # as fast as the socket takes it (big writes: the sender is not the limit)
                for start in range(0, len(events), 20_000):
                    s.send(b"".join(events[start:start + 20_000]))
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
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):  # until the parent closes it
            count, rate, dsc = line.split()
            server.flood(int(count), float(rate), int(dsc))
            print("ok", flush=True)
        await server.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# Daemon side


class LagMonitor:
    """Event-loop lag: how late a 5 ms sleep wakes up, sampled continuously (seconds)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.samples: list[tuple[float, float]] = []  # (monotonic time, lag)
        self.turns: list[tuple[float, float]] = []  # (monotonic time, CPU s of one callback > 1 ms)
        self.collections: list[tuple[float, float]] = []  # (monotonic time, CPU s of a full collection)
        self.long_steps: list[tuple[float, float, str]] = []  # (monotonic time, CPU s, what) over 50 ms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._patch_turns()

    def _patch_turns(self) -> None:
        """Also time every callback (one loop step) in this thread's CPU seconds: unlike the
        sleeper's lag, that does not grow when other processes take the cores (a shared machine)."""
        turns = self.turns = []  # type: list[tuple[float, float]]
        original = asyncio.events.Handle._run

        def timed(handle: asyncio.Handle) -> None:
            began = time.thread_time()
            original(handle)
            spent = time.thread_time() - began
            if spent > 0.001:
                turns.append((time.monotonic(), spent))
                if spent > 0.05:  # which step: the callback or the task's coroutine
                    callback = handle._callback  # type: ignore[attr-defined]
                    owner = getattr(callback, "__self__", None)
                    name = owner.get_coro().__qualname__ if isinstance(owner, asyncio.Task) else callback.__qualname__
                    self.long_steps.append((time.monotonic(), spent, name))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        collections = self.collections = []  # type: list[tuple[float, float]]
        began = [0.0]

        def gc_timer(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                began[0] = time.thread_time()
            elif info.get("generation") == 2:
                collections.append((time.monotonic(), time.thread_time() - began[0]))

        gc.callbacks.append(gc_timer)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.period)
            now = time.monotonic()
            self.samples.append((now, max(0.0, now - before - self.period)))

    def summary(self, start: float, end: float) -> dict[str, Any]:
        lags = sorted(lag for at, lag in self.samples if start <= at <= end + 1.0)
        longest = max((spent for at, spent in self.turns if start <= at <= end + 1.0), default=0.0)
        gcs = [spent for at, spent in self.collections if start <= at <= end + 1.0]
        steps = {"longest_step_cpu_ms": round(longest * 1000, 1), "full_gc": len(gcs),
                 "longest_full_gc_cpu_ms": round(max(gcs, default=0.0) * 1000, 1),
                 "steps_over_50ms": [f"{name} {spent * 1000:.0f}" for at, spent, name in self.long_steps
                                     if start <= at <= end + 1.0][:8]}
        if not lags:
            return {"p99_ms": 0.0, "max_ms": 0.0, **steps}
        return {"p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 1),
                "max_ms": round(lags[-1] * 1000, 1), **steps}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StallTracer:
    """Where the event loop stalls: a thread samples the loop thread's stack whenever the loop has
    not ticked for ``threshold`` seconds; the most frequent stacks go to stderr (``--trace-stalls``)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.stacks: dict[str, int] = {}
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        target = threading.get_ident()

        def beat() -> None:
            self._beat = time.monotonic()
            if not self._stop.is_set():
                loop.call_later(0.002, beat)

        def watch() -> None:
            while not self._stop.wait(0.005):
                if time.monotonic() - self._beat > self.threshold:
                    frame = sys._current_frames().get(target)
                    if frame is not None:
                        key = "".join(traceback.format_stack(frame)[-8:])
                        self.stacks[key] = self.stacks.get(key, 0) + 1

        beat()
        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for key, count in sorted(self.stacks.items(), key=lambda kv: -kv[1])[:12]:
            print(f"--- {count} samples (x5 ms) past {self.threshold * 1000:g} ms without a loop turn\n{key}",
                  file=sys.stderr)


def _rss_mb() -> dict[str, float]:
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return {"rss_mb": out.get("VmRSS", 0.0), "peak_rss_mb": out.get("VmHWM", 0.0)}


async def _until(predicate, timeout: float, what: str, poll: float = 0.002) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            print(f"timed out after {timeout:g} s waiting for {what}", file=sys.stderr, flush=True)
            return False
        await asyncio.sleep(poll)
    return True


async def run(args: argparse.Namespace, port: int, db_url: str, control: subprocess.Popen[str]) -> dict[str, Any]:
    from telephonyd.ami import AMIClient
    from telephonyd.config import AMIConfig, PresenceConfig, PSContactsConfig
    from telephonyd.contacts import ContactsSync
    from telephonyd.contacts.schema import metadata
    from telephonyd.presence import PresenceService
    from telephonyd.store import Store

    lag = LagMonitor()
    lag.start()
    tracer = StallTracer(args.trace_stalls / 1000) if args.trace_stalls else None
    if tracer is not None:
        tracer.start()
    store = Store(db_url, schemas=[metadata])
    await store.start()
    client = AMIClient(AMIConfig(enabled=True, port=port, secret=SECRET, events="system,call",
                                 action_timeout_s=60.0, ping_interval_s=120.0))
    sync = ContactsSync(store, client, PSContactsConfig(coalesce_s=args.coalesce), node_id="bench")
    device_states = {"n": 0}
    online: dict[str, bool] = {}
    presence = None
    components: list[Any] = [sync]
    if args.scenario == "presence":
        presence = PresenceService(PresenceConfig(seed_timeout_s=120.0), ami=client, contacts=sync, node_id="bench")

        def listen(event: Any) -> None:
            if event.kind == "status":
                online[event.endpoint] = event.online
            elif event.kind == "retired":
                online.pop(event.endpoint, None)

        presence.add_listener(listen)
        components.append(presence)
    else:  # a DeviceStateChange subscriber standing for the presence engine, as before
        client.subscribe("DeviceStateChange", lambda _m: device_states.__setitem__("n", device_states["n"] + 1))

    def dsc_handled() -> int:
        return presence.events_handled if presence is not None else device_states["n"]

    def presence_holds_all() -> bool:
        return presence is None or (len(online) >= args.contacts and all(online.values()))

    report: dict[str, Any] = {"scenario": args.scenario, "contacts": args.contacts}
    started = time.monotonic()
    await client.start()
    for component in components:
        await component.start()
    gc.collect()  # as App.run does once every component started, before their run loops
    gc.freeze()
    tasks = [asyncio.create_task(client.run())] + [asyncio.create_task(c.run()) for c in components]
    try:
        ok = await _until(lambda: sync.last_resync is not None and presence_holds_all(), args.timeout,
                          "the first resync", poll=0.01)
        resynced = time.monotonic()
        report["resync"] = {"seconds": round(resynced - started, 3) if ok else None,
                            "timed_out_after_s": None if ok else args.timeout,
                            "ps_contacts_s": (sync.last_resync or {}).get("duration_s"),
                            "rows": len(sync.table), "presence_online": sum(online.values()) if presence else None,
                            "lag": lag.summary(started, resynced), "goal_s": 2.0,
                            "gc_tracked": len(gc.get_objects()), "gc_frozen": gc.get_freeze_count()}
        if not ok:
            return report

        async def flood(count: int, rate: float) -> tuple[float, float, bool]:
            target = sync.counters["events"] + count
            dsc_target = dsc_handled() + count * args.dsc_per_status
            began = time.monotonic()
            assert control.stdin is not None and control.stdout is not None
            control.stdin.write(f"{count} {rate} {args.dsc_per_status}\n")
            control.stdin.flush()
            reply = await asyncio.get_running_loop().run_in_executor(None, control.stdout.readline)
            assert reply.strip() == "ok"
            ok = await _until(lambda: sync.counters["events"] >= target and dsc_handled() >= dsc_target,
                              args.timeout, "the flood to arrive", poll=0.01)
            arrived = time.monotonic()
            ok = ok and await _until(lambda: not sync._pending and not sync._queue, args.timeout,
                                     "the rows to be written", poll=0.01)
            return arrived - began, time.monotonic() - began, ok

        per = 1 + args.dsc_per_status
        count = int(args.rate / per * args.seconds)
        began = time.monotonic()
        arrived_s, done_s, ok = await flood(count, args.rate / per)
        report["flood"] = {"rate_events_per_s": args.rate, "events": count * per, "completed": ok,
                           "events_per_s_applied": round(count * per / done_s), "seconds": round(done_s, 2),
                           "lag": lag.summary(began, time.monotonic()), "goal_max_lag_ms": 100}
        if args.flood and ok:
            written = sync.counters["rows_written"]
            arrived_s, done_s, ok = await flood(args.flood, 0)
            total = args.flood * per
            report["throughput"] = {
                "contact_status_events": args.flood, "device_state_events": args.flood * args.dsc_per_status,
                "events_per_s": round(total / done_s), "seconds": round(done_s, 2), "completed": ok,
                "received_s": round(arrived_s, 2), "row_writes": sync.counters["rows_written"] - written,
            }
        if args.latency_seconds and ok:
            sync.latency.clear()
            await flood(int(args.latency_rate * args.latency_seconds), args.latency_rate)
            report["latency"] = {"rate_contact_status_per_s": args.latency_rate, "seconds": args.latency_seconds,
                                 **sync.latency.summary_ms(), "goal_p99_ms": 100}
        report["health"] = {k: v for k, v in sync.health().items() if k in ("batches", "rows_written", "superseded",
                                                                              "write_failures", "overflows")}
    finally:
        report.update(_rss_mb())
        for component in reversed(components):
            await component.stop(10)
        await client.stop(5)
        await asyncio.wait(tasks, timeout=10)
        # What freezing cost: unreachable cycles that sat in the frozen heap (they would stay
        # until exit in the daemon), found by one full collection of everything.
        gc.collect()
        gc.unfreeze()
        report["frozen_cycles_objects"] = gc.collect()
        await store.close()
        await lag.stop()
        if tracer is not None:
            tracer.stop()
    return report


# ---------------------------------------------------------------------------------------------
# Parse + dispatch only (``--parse N``)

_NODE_READER = r"""
const AsteriskManager = require('asterisk-manager');
const [port, total, secret] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const ami = new AsteriskManager(port, '127.0.0.1', 'telephonyd', secret, true);
let count = 0, first = 0n, ready = false;
ami.on('response', () => { if (!ready) { ready = true; console.log('ready'); } });
ami.on('managerevent', (event) => {
  if (event.event !== 'ContactStatus') return;
  if (count++ === 0) first = process.hrtime.bigint();
  if (count === total) {
    console.log(JSON.stringify({seconds: Number(process.hrtime.bigint() - first) / 1e9}));
    process.exit(0);
  }
});
"""


async def _parse_telephonyd(port: int, total: int, started: asyncio.Future[None]) -> tuple[float, float]:
    from telephonyd.ami import AMIClient
    from telephonyd.config import AMIConfig

    client = AMIClient(AMIConfig(enabled=True, port=port, secret=SECRET, events="system,call",
                                 action_timeout_s=60.0, ping_interval_s=120.0))
    times: list[float] = []
    done = asyncio.get_running_loop().create_future()

    seen = [0]

    def count(_message: Any) -> None:
        seen[0] += 1
        if seen[0] == 1 or seen[0] == total:
            times.append(time.monotonic())
            if seen[0] == total:
                done.set_result(None)

    client.subscribe("ContactStatus", count)
    await client.start()
    task = asyncio.create_task(client.run())
    await _until(lambda: client.connected, 30, "the AMI login")
    started.set_result(None)
    await asyncio.wait_for(done, 300)
    await client.stop(5)
    await asyncio.wait({task}, timeout=10)
    return times[0], times[-1]


async def _parse_minimal(port: int, total: int, started: asyncio.Future[None]) -> tuple[float, float]:
    """The least a Python asyncio reader does: blocks split on the blank line, a dict per event,
    a handler looked up by its name."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # the banner
    writer.write(f"Action: Login\r\nActionID: 1\r\nUsername: telephonyd\r\nSecret: {SECRET}\r\n\r\n".encode())
    times: list[float] = []
    seen = [0]

    def on_contact_status(_fields: dict[str, str]) -> None:
        seen[0] += 1
        if seen[0] == 1 or seen[0] == total:
            times.append(time.monotonic())

    handlers = {"ContactStatus": on_contact_status}
    rest = b""
    while seen[0] < total:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the fake Asterisk closed the connection")
        *blocks, rest = (rest + data).split(b"\r\n\r\n")
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line)
            if not started.done() and fields.get("Response") == "Success":
                started.set_result(None)
            handler = handlers.get(fields.get("Event", ""))
            if handler is not None:
                handler(fields)
    writer.close()
    return times[0], times[-1]


def _parse_main(args: argparse.Namespace) -> None:
    """One parse reader (``--parse-reader``) in this process against its own fake Asterisk."""
    server = subprocess.Popen([sys.executable, __file__, "--server", "1000"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())

    def flood() -> None:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(f"{args.parse} 0 0\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "ok"

    report: dict[str, Any] = {"reader": args.parse_reader, "events": args.parse}
    try:
        if args.parse_reader == "node":
            script = Path(tempfile.mkdtemp()) / "reader.js"
            script.write_text(_NODE_READER)
            node = subprocess.Popen(["node", str(script), str(port), str(args.parse), SECRET], stdout=subprocess.PIPE,
                                    text=True, env={**os.environ, "NODE_PATH": args.node_modules})
            assert node.stdout is not None
            if node.stdout.readline().strip() != "ready":
                raise RuntimeError("the Node reader did not log in")
            flood()
            seconds = json.loads(node.stdout.readline())["seconds"]
            node.wait(timeout=30)
        else:
            async def main() -> float:
                started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                reader = _parse_telephonyd if args.parse_reader == "telephonyd" else _parse_minimal
                task = asyncio.create_task(reader(port, args.parse, started))
                await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
                await asyncio.get_running_loop().run_in_executor(None, flood)
                first, last = await task
                return last - first

            seconds = asyncio.run(main())
        report.update(events_per_s=round((args.parse - 1) / seconds), seconds=round(seconds, 3))
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print(json.dumps(report), flush=True)


def _parse_compare(args: argparse.Namespace) -> dict[str, Any]:
    """The three readers, ``--parse-reps`` times interleaved; the best rate of each and the ratios."""
    readers = ["telephonyd", "asyncio_minimal"]
    node_ok = shutil.which("node") is not None and (Path(args.node_modules) / "asterisk-manager").is_dir()
    if node_ok:
        readers.append("node")
    else:
        print(f"Node baseline skipped: node or asterisk-manager missing (looked in {args.node_modules})",
              file=sys.stderr, flush=True)
    if args.parse_before:
        readers.append("telephonyd_before")
    rates: dict[str, list[int]] = {r: [] for r in readers}
    argv = []  # this run's options, less --parse-before (the other checkout may not know it)
    skip = False
    for a in sys.argv[1:]:
        if skip or a.startswith("--parse-before"):
            skip = a == "--parse-before"
            continue
        argv.append(a)
    for _ in range(args.parse_reps):
        for reader in readers:
            script, env = __file__, dict(os.environ)
            if reader == "telephonyd_before":
                script = str(Path(args.parse_before) / "bench" / "ami_flood.py")
                env["PYTHONPATH"] = args.parse_before
            out = subprocess.run([sys.executable, script, *argv, "--parse-reader", reader.removesuffix("_before")],
                                 stdout=subprocess.PIPE, text=True, check=True, env=env)
            rates[reader].append(json.loads(out.stdout.strip().splitlines()[-1])["events_per_s"])
    best = {r: max(v) for r, v in rates.items()}
    result: dict[str, Any] = {"parse_events": args.parse, "events_per_s": rates, "best": best,
                              "ratio_to_asyncio_minimal": _ratio(best["telephonyd"], best["asyncio_minimal"]),
                              "ratio_to_node": _ratio(best["telephonyd"], best.get("node")),
                              "ratio_to_before": _ratio(best["telephonyd"], best.get("telephonyd_before")),
                              "before_ratio_to_asyncio_minimal": _ratio(best.get("telephonyd_before"),
                                                                        best["asyncio_minimal"]),
                              "goal": ">= 300,000 events/s and >= 1.5x Node", "loadavg": _loadavg()}
    print(json.dumps(result), flush=True)
    return result


def _loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def _scenario_main(args: argparse.Namespace) -> None:
    """One scenario: the fake Asterisk in its own process, a fresh database, the report on stdout."""
    server = subprocess.Popen([sys.executable, __file__, "--server", str(args.contacts)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    db = "td_bench_" + uuid.uuid4().hex[:10]
    mysql_admin(args.mysql, f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    try:
        report = asyncio.run(run(args, port, f"{args.mysql}/{db}", server))
    finally:
        mysql_admin(args.mysql, f"DROP DATABASE IF EXISTS {db}")
        server.stdin.close()
        server.wait(timeout=30)
    print(json.dumps(report), flush=True)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", type=int, metavar="CONTACTS", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=("baseline", "presence"), help=argparse.SUPPRESS)
    parser.add_argument("--contacts", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,50000", help="contact counts, comma-separated")
    parser.add_argument("--rate", type=float, default=20_000.0, help="flood events/s (ContactStatus + DeviceStateChange)")
    parser.add_argument("--seconds", type=float, default=5.0, help="flood length")
    parser.add_argument("--flood", type=int, default=0, help="ContactStatus events in an unpaced throughput phase")
    parser.add_argument("--dsc-per-status", type=int, default=1, help="DeviceStateChange events per ContactStatus")
    parser.add_argument("--latency-rate", type=float, default=5000.0, help="ContactStatus/s in the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=0.0)
    parser.add_argument("--coalesce", type=float, default=0.05, help="ps_contacts.coalesce_s")
    parser.add_argument("--trace-stalls", type=float, default=0.0, metavar="MS",
                        help="print (stderr) the stacks the event loop was in when it stalled longer than MS")
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for one phase (s)")
    parser.add_argument("--parse", type=int, default=0, metavar="N",
                        help="parse + dispatch only: N ContactStatus events to each reader (see 4. above)")
    parser.add_argument("--parse-reps", type=int, default=3, help="interleaved repetitions of the parse phase")
    parser.add_argument("--parse-reader", choices=("telephonyd", "asyncio_minimal", "node"), help=argparse.SUPPRESS)
    parser.add_argument("--node-modules",
                        default=os.environ.get("TELEPHONYD_BENCH_NODE_MODULES", "/tmp/ami-node/node_modules"),
                        help="node_modules holding asterisk-manager 0.2.0 for the Node baseline")
    parser.add_argument("--parse-before", metavar="DIR",
                        help="also run telephonyd's parse reader from the checkout in DIR (before a change)")
    parser.add_argument("--mysql", default=os.environ.get("TELEPHONYD_BENCH_MYSQL", "mysql+aiomysql://root@127.0.0.1:3306"))
    args = parser.parse_args()
    if args.server is not None:
        _server_main(args.server)
        return
    if args.scenario is not None:
        _scenario_main(args)
        return
    if args.parse_reader is not None:
        _parse_main(args)
        return
    parse = _parse_compare(args) if args.parse else None
    results: list[dict[str, Any]] = []
    for size in (int(x) for x in args.sizes.split(",") if x.strip()):
        pair: dict[str, Any] = {}
        for scenario in ("baseline", "presence"):
            argv = [a for a in sys.argv[1:]]
            out = subprocess.run([sys.executable, __file__, *argv, "--scenario", scenario, "--contacts", str(size)],
                                 stdout=subprocess.PIPE, text=True, check=True, env={**os.environ})
            pair[scenario] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(pair[scenario]), flush=True)
        base, pres = pair["baseline"], pair["presence"]
        pair["ratio_presence_to_baseline"] = {
            "resync_s": _ratio(pres["resync"]["seconds"], base["resync"]["seconds"]),
            "flood_events_per_s": _ratio((pres.get("flood") or {}).get("events_per_s_applied"),
                                         (base.get("flood") or {}).get("events_per_s_applied")),
            "rss_mb": _ratio(pres["rss_mb"], base["rss_mb"]),
        }
        results.append(pair)
    print(json.dumps({"sizes": results, "parse": parse, "loadavg": _loadavg()}, indent=2))


if __name__ == "__main__":
    main()
