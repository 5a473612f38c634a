"""Floods against the daemon as a process, under a small open-file limit, while Asterisk's valid
FastAGI sessions must still be answered:

- a slowloris (half a request line, then nothing) from one address: every such connection is
  closed after ``http.header_timeout_s``, the ones beyond the per-client cap at once; ``/healthz``
  answers to other clients throughout; the log has a handful of lines, no traceback;
- stalled HTTP connections from many addresses, more than the open-file limit allows: HTTP stops
  at its descriptor budget, FastAGI keeps its reserve and answers every valid session;
- 2,000 idle FastAGI connections from the address Asterisk uses, reopened as they are closed:
  idle sessions are evicted for the valid ones, which are all served.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.fakes.agi import run_session
from telephonyd.descriptors import ACCEPT_IN_FLIGHT
from tests.helpers import wait_until

from .daemon import Daemon
from .floods import HALF_AGI_BLOCK, HALF_REQUEST_LINE, Flood, FloodProcess, metric
from .test_faults import hangup_channel

pytestmark = pytest.mark.system

NOFILE = 1024
#: Descriptors this test process (and its flood processes) needs for the floods' client ends.
CLIENT_NOFILE = 8192


@pytest.fixture(autouse=True)
def client_descriptors() -> None:
    """Raise this process's soft open-file limit so that the floods' client ends fit in it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CLIENT_NOFILE if hard == resource.RLIM_INFINITY else min(hard, CLIENT_NOFILE)
    assert wanted >= 4096, f"the hard open-file limit ({hard}) is too low for these flood tests (4096 needed)"
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def valid_sessions(daemon: Daemon, count: int, base: str, pace_s: float = 0.0) -> list[tuple[str | None, float]]:
    """Play ``count`` hangup sessions one after the other: (TELEPHONYD_RESULT, seconds) each."""
    out = []
    for i in range(count):
        started = time.monotonic()
        try:
            transcript = await run_session("127.0.0.1", daemon.agi_port, hangup_channel(i, base), timeout=10)
            out.append((transcript.result, time.monotonic() - started))
        except (OSError, TimeoutError) as exc:
            out.append((f"{type(exc).__name__}", time.monotonic() - started))
        if pace_s:
            await asyncio.sleep(pace_s)
    return out


async def healthz(daemon: Daemon) -> int:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(daemon.base_url + "/healthz") as resp:
            return resp.status


async def metrics_text(daemon: Daemon) -> str:
    code, text = await daemon.get("/metrics")
    assert code == 200
    return text


def records_of(daemon: Daemon, logger_prefix: str) -> list[dict]:
    return [r for r in daemon.log_records() if r.get("logger", "").startswith(logger_prefix)]


async def test_slowloris_from_one_address_is_closed_and_healthz_and_fastagi_answer(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory({"http": {"header_timeout_s": 2}}, nofile=NOFILE)
    daemon.start()
    async with Flood("127.0.0.1", daemon.http_port, 1100, HALF_REQUEST_LINE, source="127.0.0.2",
                     reopen=False) as flood:
        await wait_until(lambda: flood.stats.opened + flood.stats.connect_errors >= 1100, timeout=30,
                         what="the flood connected")
        # Beyond the per-client cap (128) the connections are reset at once; the rest stall.
        assert await healthz(daemon) == 200
        results = await valid_sessions(daemon, 10, "1795500000")
        assert [r for r, _ in results] == ["QUEUED"] * 10, results
        assert await healthz(daemon) == 200
        # Every stalled connection is closed by the server within the head timeout (plus slack).
        await wait_until(lambda: flood.stats.open_now == 0, timeout=15, what="every slowloris closed")
        assert flood.stats.closed_by_server == flood.stats.opened

    text = await metrics_text(daemon)
    refused = metric(text, "telephonyd_http_connections_refused_total", reason="client_cap")
    timed_out = metric(text, "telephonyd_http_timeouts_total", phase="header")
    assert refused >= 1100 - 128 - flood.stats.connect_errors
    assert timed_out >= 100
    assert refused + timed_out >= flood.stats.opened
    records = records_of(daemon, "telephonyd.web")
    assert len(records) <= 10, records  # one line per kind and interval, with the count held back
    assert not [r for r in daemon.log_records() if "exc" in r], "no traceback logged"
    assert daemon.stop() == 0


async def test_http_flood_from_many_addresses_cannot_take_fastagi_descriptors(
    daemon_factory: Callable[..., Daemon],
) -> None:
    # The configured HTTP cap is above what the limit allows: the descriptor budget must win.
    daemon = daemon_factory({"http": {"header_timeout_s": 60, "max_connections": 5000}}, nofile=NOFILE)
    daemon.start()
    budget = next(r for r in daemon.log_records() if r["msg"].startswith("open-file limit too low"))
    http_cap, fastagi_cap = budget["http_max_connections"], budget["fastagi_max_sessions"]
    assert http_cap + ACCEPT_IN_FLIGHT + 256 <= NOFILE - budget["fds_in_use"]  # connections, accepts, reserve
    assert fastagi_cap + ACCEPT_IN_FLIGHT >= 256  # the reserve: sessions and their accepts in flight
    floods = [Flood("127.0.0.1", daemon.http_port, 50, HALF_REQUEST_LINE, source=f"127.0.1.{i}")
              for i in range(1, 25)]  # 1,200 connections, 50 per address, reopened when reset
    for flood in floods:
        await flood.__aenter__()
    try:
        await wait_until(lambda: sum(f.stats.open_now for f in floods) >= http_cap, timeout=30,
                         what="HTTP at its connection cap")
        results = await valid_sessions(daemon, 20, "1795600000")
        assert [r for r, _ in results] == ["QUEUED"] * 20, results
    finally:
        for flood in floods:
            await flood.__aexit__(None, None, None)
    assert await healthz(daemon) == 200  # the flood's connections are gone with it
    text = await metrics_text(daemon)
    assert metric(text, "telephonyd_http_connections_refused_total", reason="overload") > 0
    assert metric(text, "telephonyd_accept_errors_total", errno="EMFILE") == 0
    assert not [r for r in daemon.log_records() if "exc" in r], "no traceback logged"
    assert daemon.stop() == 0


async def test_idle_fastagi_flood_from_the_asterisk_address_does_not_refuse_valid_sessions(
    daemon_factory: Callable[..., Daemon],
) -> None:
    # A long block timeout: without eviction the idle connections would hold every slot throughout.
    daemon = daemon_factory({"fastagi": {"block_timeout_s": 30}})
    daemon.start()
    # The flood runs in a process of its own (in this one it would delay the valid clients' writes),
    # at nice 10 (an attacker on another host would not take this machine's CPU).
    flood = FloodProcess("127.0.0.1", daemon.agi_port, 2000, HALF_AGI_BLOCK, nice=10)
    await flood.start()
    try:
        results = await valid_sessions(daemon, 7, "1795700000", pace_s=0.5)
    finally:
        stats = await flood.stop()
    assert [r for r, _ in results] == ["QUEUED"] * 7, results
    print("valid session seconds under the idle flood:", [round(s, 3) for _, s in results])
    text = await metrics_text(daemon)
    evicted = metric(text, "telephonyd_agi_sessions_evicted_total")
    assert evicted >= stats["opened"] - 1000 - 7  # max_sessions_per_client: 1000 by default
    assert metric(text, "telephonyd_agi_sessions_total", script="-", result="EVICTED") >= 1
    lines = [r for r in records_of(daemon, "telephonyd.fastagi") if r["msg"].startswith("FastAGI idle session")]
    assert 1 <= len(lines) <= 10
    assert daemon.stop() == 0
