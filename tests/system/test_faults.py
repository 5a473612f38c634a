"""The daemon as a process under faults of its peers, counting that nothing was lost:

- MariaDB "restarts" under FastAGI load (a TCP proxy cuts every connection and refuses new ones
  for a while): the process lives on, sessions answer ERROR or QUEUED in time, every QUEUED outcome
  reaches the DID Optimizer exactly once, /readyz follows the store, the outbox settles;
- the MQTT broker "restarts" while presence changes: the retained presence comes back current for
  every agent and AMI processing never waited for the broker;
- a flood of bad input on the FastAGI port, the HTTP port and from AMI while valid traffic flows:
  every valid session and callback succeeds, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.ami import FakeAMIServer
from tests.fakes.did_optimizer import FakeDIDOptimizer
from tests.fakes.mqtt_consumer import retained
from tests.fakes.tcp_proxy import TCPProxy
from tests.fakes.tops import FakeTops

from .scale_rig import one_phone, until

pytestmark = pytest.mark.system

SESSION_TIMEOUT_S = 8.0  # fastagi.session_timeout_s in these tests; run_session waits a bit longer


def hangup_channel(i: int, base: str = "1795400000") -> FakeChannel:
    return FakeChannel.synthetic(
        {
            "DIALSTATUS": "NOANSWER", "HANGUPCAUSE": "16", "DIALEDTIME": "", "ANSWEREDTIME": "",
            "campaign_id": "FAULTS", "agent": "6001", "OPTIMIZER_DID": "15551230001", "lead_id": str(5000 + i),
        },
        args=["NOANSWER", "16"], uniqueid=f"{base}.{i}", extension="h", priority="2",
        channel=f"PJSIP/1010-{i:08x}", name=f"fault-{i}",
    )


class Played:
    """Results of hangup sessions: uniqueid -> (TELEPHONYD_RESULT or None, seconds, error)."""

    def __init__(self) -> None:
        self.results: dict[str, tuple[str | None, float, str | None]] = {}
        self.ended: dict[str, float] = {}

    def with_result(self, word: str) -> set[str]:
        return {uid for uid, (result, _, _) in self.results.items() if result == word}

    def words(self) -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        for result, _, _ in self.results.values():
            counts[result] = counts.get(result, 0) + 1
        return counts


async def play(port: int, channels: list[FakeChannel], played: Played, concurrency: int = 8,
               pace_s: float = 0.0) -> None:
    """Play every channel's hangup session (``pace_s`` between sessions of one worker)."""
    queue = list(reversed(channels))

    async def worker() -> None:
        while queue:
            chan = queue.pop()
            started = time.monotonic()
            try:
                transcript = await run_session("127.0.0.1", port, chan, timeout=SESSION_TIMEOUT_S + 4)
                outcome = (transcript.result, time.monotonic() - started, transcript.error)
            except (OSError, TimeoutError) as exc:
                outcome = (None, time.monotonic() - started, type(exc).__name__)
            played.results[chan.env["uniqueid"]] = outcome
            played.ended[chan.env["uniqueid"]] = time.monotonic()
            if pace_s:
                await asyncio.sleep(pace_s)  # load shape: spreads the sessions over the outage

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def outbox_settled(daemon, delivered: Callable[[], int], timeout: float = 30.0) -> dict[str, Any]:
    """Wait until nothing is pending or in flight, nothing is dead, and the delivered rows number
    ``delivered()`` (what the upstream fake confirmed)."""

    def done(status: dict) -> bool:
        by_state = (status.get("outbox") or {}).get("by_state") or {}
        return (by_state.get("pending") == 0 and by_state.get("in_flight") == 0
                and by_state.get("delivered") == delivered() and by_state.get("dead") == 0)

    return await daemon.wait_status(done, timeout=timeout)


class Probe:
    """Polls /healthz and /readyz every 50 ms, keeping (monotonic time, status) of each answer."""

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.healthz: list[tuple[float, int]] = []
        self.readyz: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout, headers=self.daemon.headers) as http:
            while True:
                for path, seen in (("/healthz", self.healthz), ("/readyz", self.readyz)):
                    try:
                        async with http.get(self.daemon.base_url + path) as resp:
                            await resp.read()
                            seen.append((time.monotonic(), resp.status))
                    except (aiohttp.ClientError, TimeoutError):
                        seen.append((time.monotonic(), 0))
                await asyncio.sleep(0.05)  # probe period

    def readyz_since(self, since: float) -> list[int]:
        return [code for at, code in self.readyz if at >= since]


async def daemon_pid(daemon) -> int:
    code, status = await daemon.get("/status")
    assert code == 200, status
    return int(status["pid"])


# ---------------------------------------------------------------------------------------------
# (3) MariaDB restarted under load


async def test_mariadb_outage_under_load_loses_no_queued_outcome(daemon_factory, mariadb_url) -> None:
    direct = urlsplit(mariadb_url)
    async with TCPProxy(direct.hostname or "127.0.0.1", direct.port or 3306) as proxy, FakeDIDOptimizer() as did:
        url = urlunsplit(direct._replace(netloc=f"{direct.username}@127.0.0.1:{proxy.port}"))
        daemon = daemon_factory({
            "store": {"url": url, "pool_size": 4, "connect_timeout_s": 1.0},
            "fastagi": {"session_timeout_s": SESSION_TIMEOUT_S},
            "call_log": {"enqueue_timeout_s": 2.0},
            "did_optimizer": {"enabled": True, "base_url": did.base_url},
            "outbox": {"poll_interval_s": 0.1, "backoff_base_s": 0.1, "backoff_max_s": 0.5,
                       "store_timeout_s": 2.0, "lease_s": 5.0},
            "ameyo": {"enabled": False},
        })
        await asyncio.to_thread(daemon.start, 40)
        pid = await daemon_pid(daemon)
        channels = [hangup_channel(i) for i in range(240)]
        played = Played()
        async with Probe(daemon) as probe:
            load = asyncio.create_task(play(daemon.agi_port, channels, played, concurrency=6, pace_s=0.15))
            await until(lambda: len(played.results) >= 40, timeout=20, what="load before the outage")
            before_cut = len(played.results)
            cut_at = time.monotonic()
            proxy.cut()
            await until(lambda: 503 in probe.readyz_since(cut_at), timeout=5, what="/readyz 503 in the outage")
            await asyncio.sleep(3.0)  # the outage itself: MariaDB stays away this long
            assert proxy.is_cut and proxy.refused > 0
            in_outage = len(played.results) - before_cut
            restored_at = time.monotonic()
            proxy.restore()
            await until(lambda: 200 in probe.readyz_since(restored_at), timeout=15, what="/readyz 200 after")
            await asyncio.wait_for(load, 60)
            # After recovery the store takes new outcomes again.
            after = [hangup_channel(i, base="1795410000") for i in range(40)]
            await play(daemon.agi_port, after, played, concurrency=6)

        words = played.words()
        ready_again = min(at for at, code in probe.readyz if at > restored_at and code == 200)
        late_errors = [u for u in played.with_result("ERROR") if played.ended[u] > ready_again + 0.5]
        assert not late_errors, f"{len(late_errors)} sessions answered ERROR after the store was back"
        assert set(words) <= {"QUEUED", "ERROR"}, words  # every dialplan got an answer
        assert words.get("ERROR", 0) > 0 and in_outage > 0, (words, in_outage)
        slowest = max(seconds for _, seconds, _ in played.results.values())
        assert slowest < SESSION_TIMEOUT_S, slowest
        assert all(played.results[c.env["uniqueid"]][0] == "QUEUED" for c in after)
        readyz_in_outage = [c for at, c in probe.readyz if cut_at + 0.5 < at < restored_at]
        assert readyz_in_outage and set(readyz_in_outage) == {503}, readyz_in_outage
        assert probe.readyz[-1][1] == 200
        assert probe.healthz and {code for _, code in probe.healthz} == {200}

        answered = played.with_result("QUEUED")
        errors = played.with_result("ERROR")
        # An ERROR answered on a commit whose reply was lost may still have been written: the row
        # is then delivered (once). Every QUEUED one must be delivered, exactly once.
        status = await outbox_settled(daemon, delivered=lambda: len(did.deliveries))
        assert answered <= set(did.deliveries), len(answered - set(did.deliveries))
        assert set(did.deliveries) <= answered | errors
        assert all(n == 1 for n in did.deliveries.values()), did.deliveries.most_common(3)
        assert status["pid"] == pid and daemon.proc is not None and daemon.proc.poll() is None
        print(f"mariadb outage: {words}, in outage {in_outage}, delivered {len(did.deliveries)}, "
              f"slowest {slowest:.2f}s, ready {ready_again - restored_at:.2f}s after, readyz 503 x{len(readyz_in_outage)}, proxy refused {proxy.refused}")
        assert daemon.stop() == 0


# ---------------------------------------------------------------------------------------------
# (5) MQTT broker restarted


async def test_mqtt_broker_outage_presence_back_and_current(daemon_factory, mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    node = "faults5"
    async with TCPProxy(host, port) as proxy, FakeAMIServer(secret="ami-s3cret") as ami:
        for name in ("1010", "1011", "1012"):
            ami.add_endpoint(name)
        first = ami.register("1010")
        ami.register("1011")
        daemon = daemon_factory({
            "node_id": node,
            "ami": {"enabled": True, "port": ami.port, "secret": "ami-s3cret", "auth": "md5"},
            "mqtt": {"enabled": True, "url": f"mqtt://127.0.0.1:{proxy.port}", "base_topic": topic_prefix,
                     "client_id": f"td-{topic_prefix.rsplit('/', 1)[-1]}", "keepalive_s": 5,
                     "backoff_max_s": 0.5, "connect_timeout_s": 2.0, "publish_timeout_s": 2.0},
        })
        await asyncio.to_thread(daemon.start, 40)
        pid = await daemon_pid(daemon)
        agents = f"{topic_prefix}/{node}/agents/"

        async def extensions() -> dict[str, dict]:
            code, data = await daemon.get("/api/ami/extensions")
            assert code == 200, data
            return {item["endpoint"]: item for item in data["extensions"]}

        async def broker_view() -> dict[str, bytes]:
            return await retained(host, port, topic_prefix)

        def current(view: dict[str, bytes], exts: dict[str, dict]) -> bool:
            for endpoint, item in exts.items():
                payload = view.get(agents + endpoint)
                if payload is None:
                    return False
                agent = json.loads(payload)
                if agent["state"] != item["state"] or agent["online"] is not item["online"]:
                    return False
            return view.get(f"{topic_prefix}/{node}/status") == b"online"

        async def in_step() -> bool:
            exts = await extensions()
            return exts.get("1010", {}).get("online") is True and current(await broker_view(), exts)

        await until(in_step, timeout=15, what="presence retained before the outage")
        code, status = await daemon.get("/status")
        assert code == 200, status
        connects_before = status["components"]["mqtt"]["connects"]

        proxy.cut()
        # The broker saw the connection die: it publishes the daemon's last will.
        await until(lambda: _async_eq(broker_view, f"{topic_prefix}/{node}/status", b"offline"),
                    timeout=10, what="the last will on the broker")
        await daemon.wait_status(lambda s: s["components"]["mqtt"]["state"] != "connected", timeout=10)
        # Presence changes while the broker is away; AMI processing goes on.
        changed_at = time.monotonic()
        ami.register("1012")
        ami.unregister(first.id)

        async def changed() -> bool:
            exts = await extensions()
            return exts.get("1012", {}).get("online") is True and exts.get("1010", {}).get("online") is False

        await until(changed, timeout=5, what="/api/ami/extensions current in the broker outage")
        ami_lag = time.monotonic() - changed_at
        assert proxy.is_cut and proxy.open_links == 0

        proxy.restore()
        await until(_after_restore(extensions, broker_view, current), timeout=20,
                    what="retained presence current after the broker returns")
        view = await broker_view()
        exts = await extensions()
        assert {t.removeprefix(agents) for t in view if t.startswith(agents)} >= {"1010", "1011", "1012"}
        assert json.loads(view[agents + "1012"])["online"] is True
        assert json.loads(view[agents + "1010"])["online"] is False
        code, status = await daemon.get("/status")
        assert code == 200, status
        mqtt = status["components"]["mqtt"]
        assert mqtt["state"] == "connected" and mqtt["connects"] >= connects_before + 1, mqtt
        assert status["components"]["ami"]["disconnects"] == 0  # AMI never dropped for the broker
        assert status["pid"] == pid
        print(f"mqtt outage: {len(exts)} agents current, AMI change seen in {ami_lag:.2f}s while cut, "
              f"mqtt connects {connects_before}->{mqtt['connects']}, published {mqtt['published']}, "
              f"dropped {mqtt['dropped']}")
        assert daemon.stop() == 0


async def _async_eq(view: Callable[[], Awaitable[dict[str, bytes]]], topic: str, value: bytes) -> bool:
    return (await view()).get(topic) == value


def _after_restore(extensions, broker_view, current) -> Callable[[], Awaitable[bool]]:  # type: ignore[no-untyped-def]
    async def probe() -> bool:
        return current(await broker_view(), await extensions())

    return probe


# ---------------------------------------------------------------------------------------------
# (6) A flood of bad input on every listener while valid traffic flows


AGI_GARBAGE = [
    b"",  # connect and close
    b"\x00\xff\xfe\x01" * 2048,
    os.urandom(32 * 1024),
    b"agi_network: yes\nagi_request: agi://x/" + b"A" * 20_000 + b"\n\n",  # oversized line
    b"".join(b"agi_var_%d: %s\n" % (i, b"x" * 500) for i in range(300)) + b"\n",  # oversized block
    b"agi_request: agi://127.0.0.1/no_such_route\nagi_uniqueid: 1.1\n\nHANGUP\n",
    b"agi_request: agi://127.0.0.1/call_log\nagi_uniqueid: 2.2\n\n" + os.urandom(4096),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
]


async def agi_garbage(port: int, data: bytes) -> bool:
    """Send ``data``, then EOF (Asterisk's side of the channel is gone); True when the server closed
    the connection within 10 s."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except OSError:
        return False
    try:
        with contextlib.suppress(OSError):
            writer.write(data)
            await writer.drain()
            writer.write_eof()
        async with asyncio.timeout(10):
            while await reader.read(65536):  # commands sent to a client that has gone quiet
                pass
            return True
    except (OSError, asyncio.IncompleteReadError):
        return True
    except TimeoutError:
        return False
    finally:
        writer.close()


def http_garbage() -> list[bytes]:
    return [
        b"GET /index.php HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 100_000 + b"\r\n\r\n",
        b"GET /index.php HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500)) + b"\r\n",
        b"GET /" + b"p" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /index.php?%zz%%=%&&=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /index.php HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n" + b"b" * 200_000,
        b"POST /api/outbox HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        os.urandom(16 * 1024),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(500),  # a TLS ClientHello
    ]


async def raw_http(port: int, data: bytes) -> int:
    """Send raw bytes to the HTTP port; the answer's status (0: closed without one), -1: hung."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except OSError:
        return 0
    try:
        with contextlib.suppress(OSError):
            writer.write(data)
            await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readline()
        parts = head.split()
        return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else 0
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return 0
    except TimeoutError:
        return -1
    finally:
        writer.close()


async def test_flood_of_bad_input_while_valid_traffic_flows(daemon_factory) -> None:
    async with (
        FakeDIDOptimizer() as did,
        FakeAMIServer(secret="ami-s3cret") as ami,
    ):
        tops = FakeTops(api_key="t" * 32)
        await tops.start()
        try:
            for name in ("1010", "1011", "1012"):
                ami.add_endpoint(name)
            ami.register("1010")
            daemon = daemon_factory({
                "fastagi": {"session_timeout_s": SESSION_TIMEOUT_S, "block_timeout_s": 2.0},
                "did_optimizer": {"enabled": True, "base_url": did.base_url},
                "outbox": {"poll_interval_s": 0.1, "backoff_base_s": 0.1, "backoff_max_s": 0.5},
                "tops": {"real_send": True, "test": {"base_url": tops.base_url, "api_key": tops.api_key}},
                "ameyo": {"sweep_interval_s": 0.2},
                "ami": {"enabled": True, "port": ami.port, "secret": "ami-s3cret", "auth": "md5",
                        "backoff_base_s": 0.1, "backoff_max_s": 0.5},
            })
            await asyncio.to_thread(daemon.start, 40)
            pid = await daemon_pid(daemon)
            await until(lambda: ami.logins >= 1 and ami.sessions, timeout=10, what="AMI login")
            logins_before = ami.logins

            channels = [hangup_channel(i, base="1795420000") for i in range(200)]
            call_ids = list(range(880_000, 880_060))
            played = Played()
            callbacks: dict[int, tuple[int, Any]] = {}

            async def valid_callbacks(http: aiohttp.ClientSession) -> None:
                for call_id in call_ids:
                    async with http.get(daemon.base_url + "/index.php", params=one_phone(call_id)) as resp:
                        body = await resp.json(content_type=None)
                        callbacks[call_id] = (resp.status, body)

            async def bad_callbacks(http: aiohttp.ClientSession) -> list[int]:
                codes = []
                bad = [{}, {"unique_id": "x" * 5000}, {"unique_id": "abc", "systemDisposition": "\x00"},
                       {"unique_id": "1", "phone1": "9" * 300}, {"customerId": "300"}]
                for params in bad * 6:
                    try:
                        async with http.get(daemon.base_url + "/index.php", params=params) as resp:
                            await resp.read()
                            codes.append(resp.status)
                    except aiohttp.ClientError:
                        codes.append(0)
                for _ in range(10):
                    async with http.post(daemon.base_url + "/index.php", data=os.urandom(300_000)) as resp:
                        await resp.read()
                        codes.append(resp.status)
                return codes

            async def ami_faults() -> None:
                ami.send_garbage()
                ami.send_garbage(os.urandom(2048) + b"\r\n\r\n")
                ami.send_oversized_line(200_000)  # past ami.max_line_bytes: the client must reconnect
                await until(lambda: ami.logins > logins_before, timeout=10, what="AMI reconnect after the flood")
                ami.register("1011")
                ami.register("1012")

            rng = random.Random(7)
            agi_flood = [rng.choice(AGI_GARBAGE) for _ in range(60)]
            http_flood = http_garbage() * 4
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
                gathered = await asyncio.gather(
                    play(daemon.agi_port, channels, played, concurrency=8),
                    valid_callbacks(http),
                    bad_callbacks(http),
                    asyncio.gather(*(agi_garbage(daemon.agi_port, data) for data in agi_flood)),
                    asyncio.gather(*(raw_http(daemon.http_port, data) for data in http_flood)),
                    ami_faults(),
                )
            bad_codes, agi_closed, http_codes = gathered[2], gathered[3], gathered[4]

            async def converged() -> bool:
                code, data = await daemon.get("/api/ami/extensions")
                exts = {item["endpoint"]: item for item in data["extensions"]} if code == 200 else {}
                return all(exts.get(e, {}).get("online") is True for e in ("1010", "1011", "1012"))

            await until(converged, timeout=15, what="AMI state converged after the reconnect")
            await outbox_settled(daemon, delivered=lambda: len(channels) + len(call_ids), timeout=30)
            await until(lambda: set(tops.accepted_by_call) >= set(call_ids), timeout=15, what="TopS.II sends")

            words = played.words()
            assert words == {"QUEUED": len(channels)}, words
            assert set(did.deliveries) == {c.env["uniqueid"] for c in channels}
            assert all(n == 1 for n in did.deliveries.values()), did.deliveries.most_common(3)
            assert {cid: (st, body.get("success")) for cid, (st, body) in callbacks.items()} == {
                cid: (200, True) for cid in call_ids}
            assert {cid: tops.accepted_by_call[cid] for cid in call_ids} == dict.fromkeys(call_ids, 1)
            assert all(agi_closed), f"{agi_closed.count(False)} garbage FastAGI connections left hanging"
            assert all(400 <= c < 500 for c in http_codes), http_codes  # answered, not hung, not 5xx
            assert bad_codes and all(400 <= c < 500 for c in bad_codes), bad_codes
            code, status = await daemon.get("/status")
            assert status["pid"] == pid and status["components"]["ami"]["disconnects"] >= 1
            assert status["components"]["fastagi"]["ok"] and status["components"]["http"]["ok"]
            code, _ = await daemon.get("/healthz")
            assert code == 200
            print(f"flood: {words}, {len(callbacks)} callbacks ok, {len(agi_flood)} bad AGI connections closed, "
                  f"HTTP garbage answers {sorted(set(http_codes))}, bad callbacks {sorted(set(bad_codes))}, "
                  f"AMI logins {logins_before}->{ami.logins}")
            assert daemon.stop() == 0
        finally:
            await tops.close()
