#!/usr/bin/env python3
"""Soak: valid traffic while the listeners are flooded, against the daemon as a process.

The daemon runs as ``telephonyd run`` (tests/system/daemon.py) under a lowered open-file limit
(``--nofile``, default 1,024), with the Ameyo token set and TopS.II in dry run. Valid traffic comes
from this process on a fixed schedule (open loop: a late answer shows in the latency, which counts
from the scheduled start):

- FastAGI ``call_log`` hangup sessions (a fake Asterisk replaying Asterisk 22's rules, dial statuses
  NOANSWER, BUSY, CANCEL, CONGESTION, CHANUNAVAIL), each must answer ``QUEUED``;
- Ameyo callbacks (call start, connected, not answered, two-phone calls; bench/callbacks_load.py's
  mix), each must answer 200 with ``success: true``.

Two phases in one run, with the same valid traffic:

1. baseline (``--baseline-s``): the valid traffic alone;
2. flooded (``--duration-s``, default 600): the same, while two processes of their own flood the
   listeners: 1,100 HTTP connections from 127.0.0.2 that send half a request line and stall, each
   reopened when the daemon closes it (issue row 1), and 2,000 FastAGI connections from 127.0.0.1,
   Asterisk's own address, that send half an ``agi_*`` block, reopened as they are closed (row 2).
   The flood processes run at ``--flood-nice`` (10): on one machine they would otherwise take the CPU
   the daemon has against an attacker on another host.

Reported per phase: valid sessions and callbacks served and failed, p50/p99/max latency, rate; the
ratio flooded/baseline; the daemon's RSS at ready, after the baseline, after ``--warmup-s`` of the
flooded phase (the start of the RSS comparison, floods at steady state) and at the end, sampled every
10 s; the flood's counters from ``/metrics``. Exit status 1 when any valid session or callback failed
or when RSS grew by more than 20% from the start of the comparison to the end.

  .venv/bin/python bench/soak.py                      # 10 minutes flooded, 2 minutes baseline
  .venv/bin/python bench/soak.py --duration-s 180 --baseline-s 60 --nofile 4096
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.callbacks_load import callbacks_for  # noqa: E402
from tests.fakes.agi import FakeChannel, run_session  # noqa: E402
from tests.system.daemon import Daemon  # noqa: E402
from tests.system.floods import HALF_AGI_BLOCK, HALF_REQUEST_LINE, FloodProcess, metric, metric_values  # noqa: E402

AMEYO_TOKEN = "soak-callback-token"
DIAL_STATUSES = (("NOANSWER", "19"), ("BUSY", "17"), ("CANCEL", "16"), ("CONGESTION", "34"), ("CHANUNAVAIL", "20"))
RSS_LIMIT = 1.20


def channel(n: int) -> FakeChannel:
    status, cause = DIAL_STATUSES[n % len(DIAL_STATUSES)]
    return FakeChannel.synthetic(
        {"DIALSTATUS": status, "HANGUPCAUSE": cause, "DIALEDTIME": "", "ANSWEREDTIME": "", "campaign_id": "SOAK",
         "agent": "6001", "OPTIMIZER_DID": "15551230001", "lead_id": str(n)},
        args=[status, cause], uniqueid=f"1796000000.{n}", extension="h", priority="2",
        channel=f"PJSIP/1010-{n:08x}", name=f"soak-{n}",
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Phase:
    """Valid traffic results of one phase."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.agi: list[float] = []
        self.agi_failed: dict[str, int] = {}
        self.callbacks: list[float] = []
        self.callbacks_failed: dict[str, int] = {}
        self.seconds = 0.0

    def fail(self, table: dict[str, int], why: str) -> None:
        table[why] = table.get(why, 0) + 1

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, Any]:
            if not values:
                return {"served": 0}
            ordered = sorted(values)
            return {"served": len(ordered), "per_s": round(len(ordered) / self.seconds, 1),
                    "p50_ms": round(statistics.median(ordered) * 1000, 1),
                    "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
                    "max_ms": round(ordered[-1] * 1000, 1)}

        return {"phase": self.name, "seconds": round(self.seconds, 1),
                "agi": {**stats(self.agi), "failed": self.agi_failed},
                "callbacks": {**stats(self.callbacks), "failed": self.callbacks_failed}}


async def valid_traffic(daemon: Daemon, phase: Phase, seconds: float, agi_rate: float, callback_rate: float,
                        first: int) -> None:
    """Sessions and callback calls on a fixed schedule for ``seconds``; waits for the last answers."""
    import aiohttp

    tasks: set[asyncio.Task[None]] = set()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def session(n: int, scheduled: float) -> None:
        try:
            transcript = await run_session("127.0.0.1", daemon.agi_port, channel(n), timeout=15)
        except (OSError, TimeoutError) as exc:
            phase.fail(phase.agi_failed, type(exc).__name__)
            return
        if transcript.result == "QUEUED":
            phase.agi.append(time.monotonic() - scheduled)
        else:
            phase.fail(phase.agi_failed, str(transcript.result or transcript.error or "closed"))

    async def call(n: int, scheduled: float) -> None:
        for path, params in callbacks_for(n):
            try:
                async with http.get(daemon.base_url + path, params={**params, "token": AMEYO_TOKEN}) as resp:
                    body = await resp.json(content_type=None)
                    ok = resp.status == 200 and body.get("success") is True
                    why = str(resp.status)
            except (OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
                ok, why = False, type(exc).__name__
            if not ok:
                phase.fail(phase.callbacks_failed, why)
                return
            phase.callbacks.append(time.monotonic() - scheduled)

    def launch(coro: Any) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    started = time.monotonic()
    next_agi, next_call = started, started
    n_agi, n_call = first, first
    try:
        while (now := time.monotonic()) < started + seconds:
            while next_agi <= now:
                launch(session(n_agi, next_agi))
                n_agi, next_agi = n_agi + 1, next_agi + 1 / agi_rate
            while next_call <= now:
                launch(call(n_call, next_call))
                n_call, next_call = n_call + 1, next_call + 1 / callback_rate
            await asyncio.sleep(max(0.0, min(next_agi, next_call) - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    finally:
        phase.seconds = time.monotonic() - started
        await http.close()


async def sample_rss(pid: int, samples: list[tuple[float, int]], stop: asyncio.Event, origin: float) -> None:
    while not stop.is_set():
        samples.append((round(time.monotonic() - origin, 1), rss_kib(pid)))
        try:
            await asyncio.wait_for(stop.wait(), 10)
        except TimeoutError:
            pass


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="telephonyd-soak-"))
    daemon = Daemon(workdir / "daemon", {
        "ameyo": {"token": AMEYO_TOKEN},
        "logging": {"level": "INFO"},
    }, nofile=args.nofile)
    daemon.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    report: dict[str, Any] = {"nofile": args.nofile, "flood_nice": args.flood_nice, "agi_rate": args.agi_rate, "callback_rate": args.callback_rate,
                              "rss_kib": {"ready": rss_kib(pid)}}
    floods: list[FloodProcess] = []
    try:
        baseline = Phase("baseline")
        await valid_traffic(daemon, baseline, args.baseline_s, args.agi_rate, args.callback_rate, first=0)
        report["rss_kib"]["after_baseline"] = rss_kib(pid)

        floods = [FloodProcess("127.0.0.1", daemon.http_port, 1100, HALF_REQUEST_LINE, source="127.0.0.2",
                               nice=args.flood_nice),
                  FloodProcess("127.0.0.1", daemon.agi_port, 2000, HALF_AGI_BLOCK, source="127.0.0.1",
                               nice=args.flood_nice)]
        for flood in floods:
            await flood.start()
        flooded = Phase("flooded")
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()
        origin = time.monotonic()
        sampler = asyncio.create_task(sample_rss(pid, samples, stop, origin))
        warm = asyncio.create_task(asyncio.sleep(args.warmup_s))
        traffic = asyncio.create_task(valid_traffic(daemon, flooded, args.duration_s, args.agi_rate,
                                                    args.callback_rate, first=10_000_000))
        await warm
        report["rss_kib"]["flood_start"] = rss_kib(pid)
        await traffic
        report["rss_kib"]["end"] = rss_kib(pid)
        stop.set()
        await sampler
        report["rss_kib"]["samples"] = samples
        report["floods"] = [await flood.stop() for flood in floods]
        floods = []
        code, text = await daemon.get("/metrics")
        if code == 200:
            report["daemon_counters"] = {
                "agi_evicted": metric(text, "telephonyd_agi_sessions_evicted_total"),
                "agi_refused": {dict(k).get("reason", ""): v for k, v in
                                metric_values(text, "telephonyd_agi_connections_refused_total").items()},
                "http_refused": {dict(k).get("reason", ""): v for k, v in
                                 metric_values(text, "telephonyd_http_connections_refused_total").items()},
                "http_header_timeouts": metric(text, "telephonyd_http_timeouts_total", phase="header"),
                "accept_errors": {dict(k).get("errno", ""): v for k, v in
                                  metric_values(text, "telephonyd_accept_errors_total").items()},
            }
        report["log_lines"] = len(daemon.logs().splitlines())
        report["baseline"], report["flooded"] = baseline.summary(), flooded.summary()
    finally:
        for flood in floods:
            try:
                await flood.stop()
            except Exception:  # noqa: BLE001 - the run is ending anyway
                pass
        daemon.stop()
        daemon.close()

    b, f = report["baseline"], report["flooded"]
    ratios = {}
    for kind in ("agi", "callbacks"):
        if b[kind].get("p99_ms") and f[kind].get("p99_ms"):
            ratios[f"{kind}_p99_flooded_over_baseline"] = round(f[kind]["p99_ms"] / b[kind]["p99_ms"], 2)
            ratios[f"{kind}_rate_flooded_over_baseline"] = round(f[kind]["per_s"] / b[kind]["per_s"], 3)
    report["ratios"] = ratios
    rss = report["rss_kib"]
    growth = rss["end"] / rss["flood_start"] if rss.get("flood_start") else 0.0
    report["rss_growth"] = round(growth, 3)
    failed = sum(f["agi"]["failed"].values()) + sum(f["callbacks"]["failed"].values()) + \
        sum(b["agi"]["failed"].values()) + sum(b["callbacks"]["failed"].values())
    report["verdict"] = "ok" if failed == 0 and growth <= RSS_LIMIT else "FAIL"
    print(json.dumps(report, indent=2))
    for phase in (b, f):
        print(f"{phase['phase']:>9}: AGI {phase['agi']}  callbacks {phase['callbacks']}")
    print(f"ratios: {ratios}; RSS KiB ready {rss['ready']}, after baseline {rss['after_baseline']}, "
          f"flood start {rss['flood_start']}, end {rss['end']} (x{report['rss_growth']}); verdict {report['verdict']}")
    return 0 if report["verdict"] == "ok" else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=600.0, help="flooded phase, seconds (default 600)")
    parser.add_argument("--baseline-s", type=float, default=120.0, help="baseline phase, seconds (default 120)")
    parser.add_argument("--warmup-s", type=float, default=30.0,
                        help="seconds into the flooded phase where the RSS comparison starts (default 30)")
    parser.add_argument("--agi-rate", type=float, default=20.0, help="valid FastAGI sessions per second")
    parser.add_argument("--callback-rate", type=float, default=10.0, help="valid callback calls per second")
    parser.add_argument("--nofile", type=int, default=1024,
                        help="the daemon's RLIMIT_NOFILE (default 1024, as on a host without LimitNOFILE)")
    parser.add_argument("--flood-nice", type=int, default=10,
                        help="niceness of the flood processes (default 10: an attacker on another host "
                             "would not take this machine's CPU)")
    args = parser.parse_args(argv)
    args.warmup_s = min(args.warmup_s, args.duration_s / 2)
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
