"""telephonyd instances on a real 3-node MariaDB Galera cluster (`tests.system.galera`): each
instance on its own node; one instance killed with SIGKILL while it holds claims; all instances on
one node that is then killed with SIGKILL, and, separately, frozen with SIGSTOP (they fail over to
another node within 5 s, without a restart). Acknowledged outcomes and callbacks are never lost;
the only second sends are of requests in flight at a death, each with the same Idempotency-Key as
the first.

One cluster serves the module (about 15 s to start); each test has its own database. The node kill
comes last: a cluster left with fewer nodes is not used again. The freeze has a cluster of its own
(`fresh_cluster`), so the two nodes left keep quorum whatever ran before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.agi import FakeChannel
from tests.system.galera import GaleraCluster, missing
from tests.system.scale_rig import (
    OutboxView,
    UpstreamDID,
    UpstreamTops,
    accepted,
    callback,
    node_config,
    one_phone,
    play_on,
    start_all,
    until,
)
from tests.system.test_outcomes_delivered_once import hangup_channel

pytestmark = [pytest.mark.system, pytest.mark.galera]

LEASE_S = 4.0


def _running_cluster() -> Iterator[GaleraCluster]:
    reason = missing()
    if reason is not None:
        if os.environ.get("TELEPHONYD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Galera tests cannot run: {reason} and TELEPHONYD_REQUIRE_SERVICES=1")
        pytest.skip(f"Galera tests cannot run: {reason} (set TELEPHONYD_REQUIRE_SERVICES=1 to make this a failure)")
    with tempfile.TemporaryDirectory(prefix="telephonyd-galera-") as base:
        galera = GaleraCluster(Path(base))
        try:  # the finalizer: every node is thawed and killed whatever the tests did
            galera.start()
            yield galera
        finally:
            galera.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[GaleraCluster]:
    yield from _running_cluster()


@pytest.fixture
def fresh_cluster() -> Iterator[GaleraCluster]:
    """A cluster of its own, all three nodes up: for a node failure that needs the other two to
    keep quorum whatever happened to the shared cluster before."""
    yield from _running_cluster()


def _new_database(cluster: GaleraCluster) -> str:
    name = "td_galera_" + uuid.uuid4().hex[:10]
    cluster.sql(cluster.nodes[0], f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return name


@pytest.fixture
def database(cluster):
    return _new_database(cluster)


def _urls(cluster, database: str, first: int) -> list[str]:
    order = [first, *(i for i in range(len(cluster.nodes)) if i != first)]
    return [cluster.nodes[i].url(database) for i in order]


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(want)}\}} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def _conflicts(daemon) -> float:
    _, text = await daemon.get("/metrics")
    return sum(_metric(text, "telephonyd_store_conflicts_total", op=op) for op in ("claim", "result", "enqueue"))


async def _settled(view: OutboxView, rows: int, timeout: float = 40.0) -> None:
    async def done() -> bool:
        states = Counter(r["state"] for r in await view.rows())
        return states == Counter({"delivered": rows})

    await until(done, timeout=timeout, what=f"{rows} rows delivered")



async def upstreams(stack: contextlib.AsyncExitStack, names: Iterable[str], *, did_delay_s: float,
                    tops_delay_s: float) -> tuple[dict[str, UpstreamDID], dict[str, UpstreamTops]]:
    """A fake DID Optimizer and a fake TopS.II per instance name, closed with ``stack``."""
    dids = {n: await stack.enter_async_context(UpstreamDID(delay_s=did_delay_s)) for n in names}
    tops = {n: UpstreamTops(delay_s=tops_delay_s) for n in names}
    for fake in tops.values():
        await fake.start()
        stack.push_async_callback(fake.close)
    return dids, tops

async def test_three_instances_each_on_its_own_node_send_everything_once(cluster, database, daemon_factory) -> None:
    names = ("a", "b", "c")
    log_sizes = [len(n.error_log()) for n in cluster.nodes]
    async with contextlib.AsyncExitStack() as stack:
        dids, tops = await upstreams(stack, names, did_delay_s=0.01, tops_delay_s=0.01)
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
        nodes = {n: daemon_factory(node_config(n, cluster.nodes[i].url(database), dids[n], tops[n]), name=n)
                 for i, n in enumerate(names)}
        await start_all(nodes.values())  # three schema creations at once on an empty database
        view = await stack.enter_async_context(OutboxView(cluster.nodes[0].url(database)))

        channels = [hangup_channel(i) for i in range(240)]
        plan = [(nodes[names[i % 3]].agi_port, chan) for i, chan in enumerate(channels)]
        twins = [(nodes[names[(i + 1) % 3]].agi_port, chan) for i, chan in enumerate(channels) if i % 8 == 0]
        calls = list(range(7001, 7031))
        sessions, statuses = await asyncio.gather(
            play_on(plan + twins, concurrency=24),
            asyncio.gather(*(callback(http, nodes[names[(c + k) % 3]], one_phone(c)) for c in calls for k in (0, 1))),
        )
        assert set(statuses) == {200}
        assert Counter(sessions) == Counter({"QUEUED": len(channels), "DUPLICATE": len(twins)})
        await _settled(view, len(channels) + len(calls))

        deliveries: Counter[str] = Counter()
        for fake in dids.values():
            deliveries.update(fake.deliveries)
        assert deliveries == {c.env["uniqueid"]: 1 for c in channels}
        assert accepted(tops.values()) == {c: 1 for c in calls}
        conflicts = [await _conflicts(nodes[n]) for n in names]
        for n in names:  # conflicts are not an outage
            status = (await nodes[n].get("/status"))[1]
            assert status["components"]["outbox"]["state"] == "running", status["components"]["outbox"]
        print(f"\nconflicts restarted per instance: {conflicts}")
    # AMI is disabled: no ps_contacts in the Galera database. Schema creation was quiet.
    tables = {r[0] for r in cluster.sql(cluster.nodes[1], f"SHOW TABLES FROM `{database}`")}
    assert "ps_contacts" not in tables and "outbox" in tables
    new_log = "".join(n.error_log()[size:] for n, size in zip(cluster.nodes, log_sizes))
    assert not re.search(r"\[ERROR\].*(1050|1061|already exists|Duplicate key name)", new_log), new_log[-2000:]


async def test_an_instance_killed_holding_claims_its_rows_go_out_once_more_with_the_same_key(
    cluster, database, daemon_factory
) -> None:
    names = ("a", "v")
    async with contextlib.AsyncExitStack() as stack:
        dids, tops = await upstreams(stack, names, did_delay_s=0.01, tops_delay_s=0.0)
        nodes = {n: daemon_factory(node_config(n, cluster.nodes[i].url(database), dids[n], tops[n],
                                               outbox={"lease_s": LEASE_S}), name=n)
                 for i, n in enumerate(names)}
        await start_all(nodes.values())
        view = await stack.enter_async_context(OutboxView(cluster.nodes[0].url(database)))
        a, v = nodes["a"], nodes["v"]
        dids["v"].hang()  # nothing v sends from now on is answered
        on_v = [hangup_channel(i) for i in range(300, 330)]
        assert set(await play_on([(v.agi_port, chan) for chan in on_v])) == {"QUEUED"}

        async def v_holds_hung_claims() -> list[dict] | None:
            held = await view.rows(state="in_flight", claimed_by="v")
            return held if held and all(r["key"] in dids["v"].hung() for r in held) else None

        orphans = await until(v_holds_hung_claims, timeout=15, what="v holding hung claims")
        v.kill()
        await _settled(view, len(on_v), timeout=LEASE_S + 30)

        first_keys = {r.json["uniqueid"]: r.headers.get("Idempotency-Key") for r in dids["v"].requests}
        resent = {r.json["uniqueid"]: r.headers.get("Idempotency-Key") for r in dids["a"].requests
                  if r.json.get("uniqueid") in first_keys}
        # Every request v had in flight went out again, from a, with the same Idempotency-Key.
        assert set(resent) == {r["key"] for r in orphans} | (set(resent) & set(first_keys))
        assert all(resent[uid] == first_keys[uid] and resent[uid] for uid in resent)
        assert dids["a"].deliveries == {c.env["uniqueid"]: 1 for c in on_v}
        assert a.stop() == 0


async def test_a_cluster_requiring_primary_keys_ends_the_daemon_with_exit_78_naming_ps_contacts_url(
    cluster, database, daemon_factory
) -> None:
    """wsrep_mode=REQUIRED_PRIMARY_KEY refuses Asterisk's ps_contacts (no primary key) with error
    4165: the daemon says so and exits 78 instead of retrying; in owned mode the table gets a
    primary key and the daemon starts."""
    node = cluster.nodes[1]
    cluster.sql(node, "SET GLOBAL wsrep_mode = 'REQUIRED_PRIMARY_KEY'")
    try:
        config = {"node_id": "pk", "store": {"url": node.url(database)},
                  "ami": {"enabled": True, "port": 9, "secret": "unused"}, "ps_contacts": {"mode": "asterisk"}}
        daemon = daemon_factory(config, name="pk")
        daemon.start(wait_ready=False)
        assert daemon.proc is not None and daemon.proc.wait(timeout=60) == 78, daemon.logs()[-3000:]
        assert "ps_contacts.url" in daemon.logs() and "4165" in daemon.logs()
        assert "ps_contacts" not in {r[0] for r in cluster.sql(node, f"SHOW TABLES FROM `{database}`")}

        owned = daemon_factory({**config, "node_id": "pk2", "ps_contacts": {"mode": "owned"}}, name="pk2")
        await asyncio.to_thread(owned.start, 60)
        keys = cluster.sql(node, f"SHOW KEYS FROM `{database}`.ps_contacts WHERE Key_name = 'PRIMARY'")
        assert [k[4] for k in keys] == ["id"]
        assert owned.stop() == 0
    finally:
        cluster.sql(node, "SET GLOBAL wsrep_mode = ''")


async def test_all_instances_on_one_node_fail_over_within_5_s_when_it_is_killed(cluster, database, daemon_factory) -> None:
    names = ("a", "b")
    victim = cluster.nodes[0]
    async with contextlib.AsyncExitStack() as stack:
        dids, tops = await upstreams(stack, names, did_delay_s=0.02, tops_delay_s=0.0)
        urls = _urls(cluster, database, first=0)
        nodes = {n: daemon_factory(node_config(n, urls[0], dids[n], tops[n], store={"urls": urls},
                                               outbox={"lease_s": LEASE_S}), name=n)
                 for n in names}
        await start_all(nodes.values())
        view = await stack.enter_async_context(OutboxView(cluster.nodes[1].url(database)))
        before = [hangup_channel(i) for i in range(400, 520)]
        load = asyncio.create_task(play_on([(nodes[names[i % 2]].agi_port, c) for i, c in enumerate(before)],
                                           concurrency=8))
        await until(lambda: len([r for f in dids.values() for r in f.requests]) >= 20, what="sends under way")
        victim.kill()
        killed = time.monotonic()
        results = await load
        # Sessions that reach an instance after the failover are queued again, on another node.
        probe = 600

        async def queued_after_failover() -> bool:
            nonlocal probe
            probe += len(names)
            out = await play_on([(nodes[n].agi_port, hangup_channel(probe + k)) for k, n in enumerate(names)])
            return set(out) == {"QUEUED"}

        await until(queued_after_failover, timeout=10, interval=0.1, what="sessions queued after the failover")
        failover_s = time.monotonic() - killed
        for n in names:
            status = (await nodes[n].get("/status"))[1]["components"]["store"]
            assert status["url_index"] != 0 and status["failovers"] == 1, status
            assert (await nodes[n].get("/readyz"))[0] == 200
        print(f"\nfailover: sessions queued again {failover_s:.2f} s after the node was killed")
        assert failover_s <= 5.0
        acknowledged = {c.env["uniqueid"] for c, r in zip(before, results, strict=True) if r == "QUEUED"}

        async def all_delivered() -> bool:
            rows = await view.rows()
            return bool(rows) and all(r["state"] == "delivered" for r in rows)

        await until(all_delivered, timeout=LEASE_S + 30, what="everything delivered after the failover")
        delivered = {r["key"] for r in await view.rows(state="delivered")}
        assert acknowledged <= delivered  # nothing acknowledged was lost
        sent: Counter[str] = Counter()
        keys: dict[str, set[str | None]] = {}
        for fake in dids.values():
            sent.update(fake.deliveries)
            for r in fake.requests:
                keys.setdefault(r.json.get("uniqueid"), set()).add(r.headers.get("Idempotency-Key"))
        assert all(len(k) == 1 for k in keys.values())  # a resend carries the first send's key
        twice = [uid for uid, n in sent.items() if n > 1]
        print(f"sent again after the node death: {len(twice)}")


async def _cancelled(*work: asyncio.Future) -> None:
    for future in work:
        future.cancel()
    await asyncio.gather(*work, return_exceptions=True)


def _first_sent_and_keys(requests: list[tuple[object, str | None]]) -> tuple[Counter, dict]:
    """How often each reference was sent and the Idempotency-Keys it carried."""
    sent: Counter = Counter()
    keys: dict[object, set[str | None]] = {}
    for ref, key in requests:
        sent[ref] += 1
        keys.setdefault(ref, set()).add(key)
    return sent, keys


async def test_all_instances_on_one_node_fail_over_within_5_s_when_it_is_frozen(fresh_cluster, daemon_factory) -> None:
    """The node's mariadbd stopped with SIGSTOP (not killed): the kernel still accepts connections
    to it but nothing answers, and queries under way on it never return. Health checks time out,
    transactions under way there are cut, and both instances go on through another node."""
    cluster = fresh_cluster
    database = _new_database(cluster)
    names = ("a", "b")
    victim = cluster.nodes[0]
    try:
        async with contextlib.AsyncExitStack() as stack:
            dids, tops = await upstreams(stack, names, did_delay_s=0.02, tops_delay_s=0.02)
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
            urls = _urls(cluster, database, first=0)
            nodes = {n: daemon_factory(node_config(n, urls[0], dids[n], tops[n], store={"urls": urls},
                                                   outbox={"lease_s": LEASE_S}), name=n)
                     for n in names}
            await start_all(nodes.values())
            view = await stack.enter_async_context(OutboxView(cluster.nodes[1].url(database)))
            before = [hangup_channel(i) for i in range(700, 820)]
            calls = list(range(8001, 8061))
            load = asyncio.create_task(play_on([(nodes[names[i % 2]].agi_port, c) for i, c in enumerate(before)],
                                               concurrency=8))
            gate = asyncio.Semaphore(4)

            async def one_callback(i: int, call_id: int) -> int:
                async with gate:
                    return await callback(http, nodes[names[i % 2]], one_phone(call_id))

            callbacks = asyncio.gather(*(one_callback(i, c) for i, c in enumerate(calls)))
            stack.push_async_callback(_cancelled, load, callbacks)  # when the test fails midway
            await until(lambda: len([r for f in dids.values() for r in f.requests]) >= 20
                        and len([r for f in tops.values() for r in f.received]) >= 5, what="sends under way")
            victim.freeze()
            frozen = time.monotonic()
            probes: list[tuple[FakeChannel, str | None]] = []

            async def queued_after_failover() -> bool:
                chans = [hangup_channel(900 + len(probes) + k) for k in range(len(names))]
                out = await play_on([(nodes[n].agi_port, c) for n, c in zip(names, chans)])
                probes.extend(zip(chans, out))
                return set(out) == {"QUEUED"}

            try:
                await until(queued_after_failover, timeout=15, interval=0.1, what="sessions queued after the failover")
            except AssertionError:
                for n, d in nodes.items():
                    print(f"--- {n}: probes {probes[-4:]}\n" + "\n".join(
                        line[:400] for line in d.logs().splitlines() if '"level": "info"' not in line)[-8000:])
                raise
            failover_s = time.monotonic() - frozen
            # What was sent before the failover was done: the only requests that may go out twice.
            early_did = {r.json.get("uniqueid") for f in dids.values() for r in f.requests}
            early_tops = {r.fields["callId"] for f in tops.values() for r in f.received}
            results, statuses = await asyncio.gather(load, callbacks)  # the sessions under way at the freeze
            for n in names:
                status = (await nodes[n].get("/status"))[1]["components"]["store"]
                assert status["url_index"] != 0 and status["failovers"] == 1, status
                assert (await nodes[n].get("/readyz"))[0] == 200
            late_calls = [9001, 9002]
            assert [await callback(http, nodes[n], one_phone(c)) for n, c in zip(names, late_calls)] == [200, 200]
            print(f"\nfailover: sessions queued again {failover_s:.2f} s after the node was frozen")
            assert failover_s <= 5.0

            async def all_delivered() -> bool:
                rows = await view.rows()
                return bool(rows) and all(r["state"] == "delivered" for r in rows)

            await until(all_delivered, timeout=LEASE_S + 40, what="everything delivered after the failover")
            acknowledged = {c.env["uniqueid"] for c, r in [*zip(before, results, strict=True), *probes] if r == "QUEUED"}
            delivered = {r["key"] for r in await view.rows(state="delivered")}
            assert acknowledged <= delivered  # nothing acknowledged was lost
            sent, did_keys = _first_sent_and_keys([(r.json.get("uniqueid"), r.headers.get("Idempotency-Key"))
                                                   for f in dids.values() for r in f.requests])
            delivered_upstream = set().union(*(f.deliveries for f in dids.values()))
            assert acknowledged <= delivered_upstream
            acknowledged_calls = {c for c, s in zip(calls, statuses, strict=True) if s == 200} | set(late_calls)
            tops_sent, tops_keys = _first_sent_and_keys([(r.fields["callId"], r.headers.get("Idempotency-Key"))
                                                         for f in tops.values() for r in f.received])
            assert acknowledged_calls <= set(accepted(tops.values()))  # no acknowledged callback lost
            # A second send only of a request in flight at the freeze, with the first one's key.
            assert all(len(k) == 1 and None not in k for k in (*did_keys.values(), *tops_keys.values()))
            twice = sorted(str(uid) for uid, n in sent.items() if n > 1)
            tops_twice = sorted(c for c, n in tops_sent.items() if n > 1)
            assert set(twice) <= early_did and set(tops_twice) <= early_tops
            cut = [int(m) for d in nodes.values() for m in re.findall(r'"transactions_cut": (\d+)', d.logs())]
            print(f"transactions cut at the switch: {cut}; outcomes acknowledged {len(acknowledged)}/"
                  f"{len(before) + len(probes)}, delivered {len(acknowledged & delivered_upstream)}; "
                  f"callbacks acknowledged {len(acknowledged_calls)}/{len(calls) + len(late_calls)}, delivered "
                  f"{len(acknowledged_calls & set(accepted(tops.values())))}; sent twice: outcomes {twice} "
                  f"(keys {[next(iter(did_keys[u])) for u in twice]}), callbacks {tops_twice} "
                  f"(keys {[next(iter(tops_keys[c])) for c in tops_twice]})")
    finally:
        victim.kill()  # SIGCONT then SIGKILL; the fixture tears the rest of the cluster down
