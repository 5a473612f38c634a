#!/usr/bin/env python3
"""Calls as events under load: AMI call traffic in, call events out through webhooks.

Traffic: the recorded Asterisk 22.10.1 call streams (tests/fixtures/.../vicidial/*_ami_events.txt:
answered, busy, AMD abort, caller cancel), byte for byte except that every Uniqueid/Linkedid is
renamed per synthetic call, interleaved so ``--concurrency`` calls are open at once.

Phase 1 (live, real sockets): a fake Asterisk in its own process (tests/fakes/ami.py, login from the
recordings, plus a bench-only ``BenchCalls`` action that starts the stream) sends the calls at a pace
giving ``--rate`` call events/s; the daemon side is wired like the daemon (AMIClient -> CallService
-> CallSink -> Store (SQLite file) -> Outbox -> WebhookSender) and posts to a fake receiver living in
the fake Asterisk's process. Measured: call events/s delivered, end-to-end delay from the AMI event's
arrival on the socket to the webhook's arrival at the receiver (p50/p99/max; goal p99 < 50 ms), and
CPU seconds of this process; the delay is split at the commit of the event's rows (AMI -> stored,
stored -> received). Baseline, same run: the same stream over the same socket into an
AMIClient with no call tracking.

Phase 2 (memory, in process): ``--calls`` calls (default 1,000,000) as bytes through the AMI parser
and the call tracker (every event's schema-1 document built, as the sink does); RSS sampled every
10 % (goal: flat - growth between 10 % and 100 % of the calls). Baseline, same run: the same bytes
through the parser only. Both report AMI events/s.

  /work/venv/bin/python bench/call_events.py
  /work/venv/bin/python bench/call_events.py --rate 200 --seconds 20 --concurrency 500 --calls 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SECRET = "bench-secret"
RECORDINGS = REPO / "tests/fixtures/asterisk-22.10.1/vicidial"
TEMPLATES = ["01_ANSWER_ami_events.txt", "02_BUSY_ami_events.txt", "07_AMD_SILENCE_ami_events.txt",
             "08_CALLER_HANGUP_DURING_START_ami_events.txt"]
_ID = re.compile(rb"^((?:Dest)?(?:Uniqueid|Linkedid)|UniqueID): (\S+)\r$", re.MULTILINE)


class CallTemplates:
    """The recorded calls as lists of raw events whose ids can be renamed per call."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[bytes, list[tuple[int, bytes]]]]] = []
        for name in TEMPLATES:
            data = (RECORDINGS / name).read_bytes()
            ids = sorted({m.group(2) for m in _ID.finditer(data)}, key=len, reverse=True)
            events = [block + b"\r\n\r\n" for block in data.split(b"\r\n\r\n") if block.strip()]
            self.calls.append([(event, [(n, i) for n, i in enumerate(ids) if i in event]) for event in events])

    def call(self, k: int) -> list[bytes]:
        """The events of synthetic call ``k`` (template ``k % 4``), ids renamed ``9<k>.<n>``."""
        template = self.calls[k % len(self.calls)]
        out = []
        for event, ids in template:
            for n, old in ids:
                event = event.replace(old, b"B%d.%d" % (k, n))
            out.append(event)
        return out

    @property
    def call_events_per_call(self) -> float:
        return (3 + 1 + 2 + 1) / 4  # answered, busy, AMD abort, cancel (see tests/unit/test_calls_tracker.py)

    @property
    def ami_events_per_call(self) -> float:
        return sum(len(c) for c in self.calls) / len(self.calls)


def schedule(templates: CallTemplates, first: int, count: int, calls_per_s: float, duration_s: float,
             ) -> list[tuple[float, bytes]]:
    """(send time s, event bytes) of calls ``first..first+count``: call k starts at k/calls_per_s and
    its events are spread evenly over ``duration_s``."""
    out: list[tuple[float, bytes]] = []
    for k in range(first, first + count):
        events = templates.call(k)
        start = (k - first) / calls_per_s
        step = duration_s / max(1, len(events) - 1)
        out.extend((start + i * step, event) for i, event in enumerate(events))
    out.sort(key=lambda item: item[0])
    return out


# ---------------------------------------------------------------------------------------------
# Fake Asterisk and fake webhook receiver (own process: ``call_events.py --server``)


def _server_main(args: argparse.Namespace) -> None:
    from aiohttp import web

    from tests.fakes.ami import FakeAMIServer

    received: dict[str, float] = {}
    templates = CallTemplates()

    class BenchAMIServer(FakeAMIServer):
        async def _answer(self, s, pairs):  # type: ignore[no-untyped-def]
            fields = {k.lower(): v for k, v in pairs}
            if fields.get("action", "").lower() != "benchcalls":
                return await super()._answer(s, pairs)
            s.send(f"Response: Success\r\nActionID: {fields.get('actionid', '')}\r\n\r\n".encode())
            await s.writer.drain()
            plan = schedule(templates, int(fields["first"]), int(fields["count"]), float(fields["callspers"]),
                            float(fields["durations"]))
            asyncio.create_task(self._stream(s, plan))
            return True

        async def _stream(self, s, plan: list[tuple[float, bytes]]) -> None:  # type: ignore[no-untyped-def]
            started = time.monotonic()
            sent = 0
            while sent < len(plan):
                now = time.monotonic() - started
                due = sent
                while due < len(plan) and plan[due][0] <= now:
                    due += 1
                if due > sent:
                    s.send(b"".join(event for _, event in plan[sent:due]))
                    sent = due
                    await s.writer.drain()
                await asyncio.sleep(0.002)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.monotonic()
        event_id = json.loads(body)["event_id"]
        received.setdefault(event_id, arrived)
        return web.Response(text="ok")

    async def results(_request: web.Request) -> web.Response:
        return web.json_response(received)

    async def main() -> None:
        server = BenchAMIServer(secret=SECRET)
        await server.start()
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_get("/results", results)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(server.port, http_port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()
        await server.stop()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# Phase 1: live


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2),
            "max_ms": round(values[-1] * 1000, 2), "n": len(values)}


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def live(args: argparse.Namespace, ami_port: int, http_port: int) -> dict[str, Any]:
    import aiohttp

    from telephonyd.ami import AMIClient
    from telephonyd.calls.records import metadata as calls_metadata
    from telephonyd.calls.service import CallService
    from telephonyd.calls.settings import CallsConfig
    from telephonyd.calls.sink import CallSink
    from telephonyd.calls.webhooks import WebhookSender
    from telephonyd.config import AMIConfig, OutboxConfig
    from telephonyd.outbox import Outbox
    from telephonyd.outbox import metadata as outbox_metadata
    from telephonyd.store import Store

    templates = CallTemplates()
    calls_per_s = args.rate / templates.call_events_per_call
    duration_s = args.concurrency / calls_per_s
    count = int(calls_per_s * args.seconds)
    report: dict[str, Any] = {"rate_call_events_per_s": args.rate, "concurrency": args.concurrency,
                              "durability": args.durability,
                              "calls": count, "call_duration_s": round(duration_s, 2),
                              "ami_events_per_s": round(calls_per_s * templates.ami_events_per_call)}
    ami_config = AMIConfig(enabled=True, port=ami_port, secret=SECRET, events="system,call",
                           action_timeout_s=30.0, ping_interval_s=60.0)

    # ``BenchCalls`` is the bench server's own control action (not Asterisk's): the daemon's client
    # refuses any action outside SENT_ACTIONS, so the bench allows this one for its own process.
    from telephonyd.ami import actions as ami_actions

    ami_actions.SENT_ACTIONS = ami_actions.SENT_ACTIONS | {"BenchCalls"}

    async def stream(client: AMIClient, first: int, seen: dict[str, int]) -> float:
        target = seen["n"] + sum(len(templates.call(k)) for k in range(first, first + count))
        cpu = time.process_time()
        await client.action({"Action": "BenchCalls", "First": first, "Count": count, "CallsPerS": calls_per_s,
                             "DurationS": duration_s}, timeout=30)
        await _until(lambda: seen["n"] >= target, args.seconds + duration_s + 60, "the AMI stream")
        return time.process_time() - cpu

    # Baseline: the same stream into an AMI client that tracks nothing.
    bare = AMIClient(ami_config)
    seen = {"n": 0}
    bare.subscribe("*", lambda _m: seen.__setitem__("n", seen["n"] + 1))
    await bare.start()
    task = asyncio.create_task(bare.run())
    await _until(lambda: bare.connected, 30, "the baseline login")
    bare_cpu = await stream(bare, 0, seen)
    await bare.stop(5)
    await asyncio.wait({task}, timeout=10)
    report["baseline"] = {"what": "same stream, AMI parse only", "cpu_s": round(bare_cpu, 2)}

    tmp = tempfile.mkdtemp(prefix="td-bench-calls-")
    store = Store(f"sqlite+aiosqlite:///{tmp}/bench.db", schemas=[outbox_metadata, calls_metadata],
                  durability=args.durability)
    await store.start()
    config = CallsConfig.model_validate({"enabled": True, "records": True, "webhooks": [
        {"name": "bench", "url": f"http://127.0.0.1:{http_port}/hook", "secret": "bench-webhook-secret"}]})
    outbox = Outbox(store, node_id="bench", config=OutboxConfig(poll_interval_s=0.5, concurrency=32))
    session = aiohttp.ClientSession()
    outbox.register_sender(config.webhooks[0].target, WebhookSender(config.webhooks[0], session, store))
    client = AMIClient(ami_config)
    arrival: dict[str, float] = {}
    latest = {"t": 0.0}
    seen = {"n": 0}

    def on_ami(message: Any) -> None:
        seen["n"] += 1
        latest["t"] = message.received_at

    client.subscribe("*", on_ami)  # before the tracker's subscriptions: runs first for each event
    service = CallService(config, ami=client)
    class TimedSink(CallSink):
        """Notes when each event's rows were written (the end of its transaction, writer thread)."""

        stored_at: dict[str, float] = {}

        def _write(self, conn: Any, batch: list[Any]) -> int:
            added = super()._write(conn, batch)
            now = time.monotonic()
            for event, _ in batch:
                self.stored_at.setdefault(event.event_id, now)
            return added

    sink = TimedSink(config, store=store, outbox=outbox, node_id="bench")
    service.add_listener(lambda event: arrival.setdefault(event.event_id, latest["t"]))
    service.add_listener(lambda event: sink.push(event) if sink.wanted(event) else None)
    components = [service, sink, outbox, client]
    for c in components:
        await c.start()
    tasks = [asyncio.create_task(c.run()) for c in components]
    # Like the daemon: start-up objects out of the cyclic collector's full passes.
    gc.collect()
    gc.freeze()
    try:
        await _until(lambda: client.connected, 30, "the login")
        started = time.monotonic()
        cpu = await stream(client, 1_000_000, seen)
        await _until(lambda: len(arrival) > 0 and sink.health()["queued"] == 0, 60, "the sink")

        async def results() -> dict[str, float]:
            async with session.get(f"http://127.0.0.1:{http_port}/results") as reply:
                return await reply.json()

        got: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = await results()
            if len(got) >= len(arrival):
                break
            await asyncio.sleep(0.5)
        elapsed = max(got.values()) - started if got else 0.0
        delays = [got[k] - arrival[k] for k in arrival if k in got]
        report["tracked"] = {
            "call_events": len(arrival), "delivered": len(got), "seconds": round(elapsed, 2),
            "call_events_per_s": round(len(got) / elapsed, 1) if elapsed else None,
            "end_to_end": _percentiles(delays), "goal_p99_ms": 50,
            "ami_to_stored": _percentiles([sink.stored_at[k] - arrival[k] for k in arrival if k in sink.stored_at]),
            "stored_to_received": _percentiles([got[k] - sink.stored_at[k] for k in got if k in sink.stored_at]),
            "cpu_s": round(cpu, 2),
            "cpu_ratio_vs_baseline": round(cpu / bare_cpu, 2) if bare_cpu else None,
            "sink": sink.health(), "live_calls_left": len(service.tracker.calls),
        }
    finally:
        for c in reversed(components):
            await c.stop(5)
        await asyncio.wait(tasks, timeout=10)
        await session.close()
        await store.close()
    return report


# ---------------------------------------------------------------------------------------------
# Phase 2: memory over many calls


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _chunks(templates: CallTemplates, calls: int, concurrency: int) -> Iterator[tuple[int, bytes]]:
    """(calls done so far, bytes) in chunks of 10 x concurrency calls, ``concurrency`` open at once."""
    size = concurrency * 2
    for first in range(0, calls, size):
        n = min(size, calls - first)
        plan = schedule(templates, first, n, 1.0, float(concurrency))
        yield first + n, b"".join(event for _, event in plan)


def memory(args: argparse.Namespace) -> dict[str, Any]:
    from telephonyd.ami.framing import parse_messages
    from telephonyd.calls.documents import document
    from telephonyd.calls.service import rules_for
    from telephonyd.calls.settings import CallsConfig
    from telephonyd.calls.tracker import CallTracker

    templates = CallTemplates()
    out: dict[str, Any] = {"calls": args.calls, "concurrency": args.concurrency}
    for mode in ("baseline", "tracked"):
        config = CallsConfig(enabled=True)
        tracker = CallTracker(rules_for(config), max_age_s=config.max_age_s, max_calls=config.max_calls)
        samples: list[tuple[int, float]] = []
        step = max(1, args.calls // 10)
        next_sample = step
        ami_events = call_events = 0
        seconds = 0.0
        now = 1_800_000_000.0
        for done, data in _chunks(templates, args.calls, args.concurrency):
            started = time.perf_counter()  # the stream's generation is not timed
            messages, rest = parse_messages(data, max_message_bytes=len(data) + 1)
            assert not rest
            ami_events += len(messages)
            if mode == "tracked":
                for message in messages:
                    now += 0.001
                    for event in tracker.feed(message, now):
                        document(event, "bench")
                        call_events += 1
            seconds += time.perf_counter() - started
            del messages, data
            if done >= next_sample:
                samples.append((done, round(_rss_mb(), 1)))
                next_sample += step
        first_rss, last_rss = samples[0][1], samples[-1][1]
        out[mode] = {"ami_events": ami_events, "call_events": call_events, "seconds": round(seconds, 1),
                     "ami_events_per_s": round(ami_events / seconds), "rss_mb": samples,
                     "rss_growth_mb_10pct_to_100pct": round(last_rss - first_rss, 1),
                     "live_calls_left": len(tracker.calls)}
        print(json.dumps({mode: out[mode]}), file=sys.stderr, flush=True)
    out["tracked_vs_baseline_time_ratio"] = round(out["tracked"]["seconds"] / out["baseline"]["seconds"], 2)
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=200.0, help="call events/s in the live phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the live phase's call starts")
    parser.add_argument("--concurrency", type=int, default=500, help="calls open at once")
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls in the memory phase (0: skip)")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--durability", choices=("full", "normal"), default="full",
                        help="store.durability of the live phase's SQLite store")
    args = parser.parse_args()
    if args.server:
        _server_main(args)
        return
    report: dict[str, Any] = {}
    if not args.skip_live:
        server = subprocess.Popen([sys.executable, __file__, "--server"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdin is not None
        ami_port, http_port = map(int, server.stdout.readline().split())
        try:
            report["live"] = asyncio.run(live(args, ami_port, http_port))
        finally:
            server.stdin.close()
            server.wait(timeout=10)
        print(json.dumps(report, indent=2), file=sys.stderr, flush=True)
    if args.calls:
        report["memory"] = memory(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
