"""Several daemons (processes) on one MariaDB: outcomes and Ameyo callbacks spread over three
instances, duplicates sent to different instances and one instance killed with SIGKILL while it
holds claims: every outcome and callback reaches its upstream exactly once. Two instances following
two Asterisk servers share one ps_contacts table without touching each other's rows. An instance
whose host clock is ten minutes ahead neither steals live claims nor reopens dedupe gates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime

import aiohttp
import pytest

from tests.fakes.ami import FakeAMIServer
from tests.fakes.did_optimizer import Reply
from tests.fakes.mqtt_consumer import retained
from tests.system.scale_rig import (
    OutboxView,
    UpstreamDID,
    UpstreamTops,
    accepted,
    callback,
    faketime_env,
    node_config,
    one_phone,
    play_on,
    start_all,
    two_phones,
    until,
    upstream_ref,
)
from tests.system.test_outcomes_delivered_once import hangup_channel

pytestmark = [pytest.mark.system, pytest.mark.mariadb]

LEASE_S = 4.0


async def settled(daemon, delivered: int, timeout: float = 30.0) -> dict:
    """Wait (on /status) until nothing is pending or in flight and ``delivered`` rows are delivered."""

    def done(status: dict) -> bool:
        by_state = status["outbox"].get("by_state", {})
        return (by_state.get("pending"), by_state.get("in_flight"), by_state.get("delivered")) == (0, 0, delivered)

    return await daemon.wait_status(done, timeout=timeout)


async def test_three_instances_send_everything_once_through_duplicates_and_a_kill9(
    daemon_factory, mariadb_url
) -> None:
    names = ("a", "b", "v")  # v: the victim of the SIGKILL
    dids = {n: UpstreamDID(delay_s=0.05) for n in names}
    tops = {n: UpstreamTops(delay_s=0.05) for n in names}
    async with contextlib.AsyncExitStack() as stack:
        for n in names:
            await stack.enter_async_context(dids[n])
            await tops[n].start()
            stack.push_async_callback(tops[n].close)
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
        view = await stack.enter_async_context(OutboxView(mariadb_url))
        nodes = {n: daemon_factory(node_config(n, mariadb_url, dids[n], tops[n], outbox={"lease_s": LEASE_S}), name=n)
                 for n in names}
        await start_all(nodes.values())
        a, b, v = (nodes[n] for n in names)

        # Phase 1: hangup sessions round-robin over the three instances, every tenth one also sent
        # to the next instance at the same time; one-phone callbacks each sent to two instances at
        # once; phone 1 of a two-phone customer on a, phone 2 on b.
        channels = [hangup_channel(i) for i in range(90)]
        plan = [(nodes[names[i % 3]].agi_port, chan) for i, chan in enumerate(channels)]
        twins = [(nodes[names[(i + 1) % 3]].agi_port, chan) for i, chan in enumerate(channels) if i % 10 == 0]
        single_calls = list(range(9001, 9013))
        paired_calls = list(range(9101, 9105))

        async def phone_pair(call_id: int) -> list[int]:
            first = await callback(http, a, two_phones(call_id, 0, "PROVIDER_TEMP_FAILURE"))
            return [first, await callback(http, b, two_phones(call_id, 1, "NO_ANSWER"))]

        sessions, singles, pairs = await asyncio.gather(
            play_on(plan + twins),
            asyncio.gather(*(callback(http, nodes[names[(c + k) % 3]], one_phone(c)) for c in single_calls
                             for k in (0, 1))),
            asyncio.gather(*(phone_pair(c) for c in paired_calls)),
        )
        assert set(singles) == {200} and {s for pair in pairs for s in pair} == {200}
        by_uid: dict[str, list[str | None]] = {}
        for (_, chan), result in zip(plan + twins, sessions, strict=True):
            by_uid.setdefault(chan.env["uniqueid"], []).append(result)
        # A uniqueid sent to two instances at once is queued by exactly one of them.
        assert all(sorted(r) == ["DUPLICATE", "QUEUED"] for r in by_uid.values() if len(r) == 2), by_uid
        assert all(r == ["QUEUED"] for r in by_uid.values() if len(r) == 1)
        phase1_rows = len(channels) + len(single_calls) + len(paired_calls)
        await settled(a, phase1_rows)
        delivered_by = Counter(r["claimed_by"] for r in await view.rows(state="delivered"))
        assert set(delivered_by) == set(names), delivered_by  # the work was shared by all three

        # Phase 2: v's upstreams stop answering (nothing v sends from now on is confirmed); sessions
        # and callbacks arrive on v, which claims them first (its own enqueues wake it), then on a and
        # b while v is killed.
        dids["v"].hang()
        tops["v"].hang()
        on_v = [hangup_channel(i) for i in range(90, 114)]
        more = [hangup_channel(i) for i in range(114, 150)]
        calls_on_v, late_calls = [9201, 9202, 9203], [9204, 9205, 9206]
        first_results, first_statuses = await asyncio.gather(
            play_on([(v.agi_port, chan) for chan in on_v]),
            asyncio.gather(*(callback(http, v, one_phone(c, "BUSY")) for c in calls_on_v)),
        )
        assert set(first_results) == {"QUEUED"} and set(first_statuses) == {200}
        load = asyncio.gather(
            play_on([(nodes[names[i % 2]].agi_port, chan) for i, chan in enumerate(more)], concurrency=6),
            asyncio.gather(*(callback(http, nodes[names[c % 2]], one_phone(c, "BUSY")) for c in late_calls)),
        )

        async def victim_holds_only_unconfirmed_claims() -> list[dict] | None:
            # Every row v holds has a request hanging at v's fakes: none was confirmed upstream and
            # left uncommitted, so killing v now cannot cause a second send.
            held = await view.rows(state="in_flight", claimed_by="v")
            hung = dids["v"].hung() | tops["v"].hung()
            return held if held and all(upstream_ref(r) in hung for r in held) else None

        await until(victim_holds_only_unconfirmed_claims, timeout=15, what="v holding only hung claims")
        v.kill()
        killed_at = await view.now()
        orphans = await view.rows(state="in_flight", claimed_by="v")
        assert orphans
        # The claims are v's until their lease ends (database clock): /status on a says who holds what.
        status = (await a.get("/status"))[1]
        claims = {c["node_id"]: c for c in status["outbox"]["claims"]}
        assert claims["v"]["rows"] == len(orphans) and claims["v"]["stuck"] == 0

        more_results, late_statuses = await load
        assert set(more_results) == {"QUEUED"} and set(late_statuses) == {200}
        total_rows = phase1_rows + len(on_v) + len(more) + len(calls_on_v) + len(late_calls)
        await settled(a, total_rows, timeout=LEASE_S + 20)
        assert b.stop() == 0 and a.stop() == 0

        # v's claims were taken over by a and b once their lease ran out, not before, and soon after.
        for orphan in orphans:
            [row] = await view.rows(id=orphan["id"])
            assert row["state"] == "delivered" and row["claimed_by"] in ("a", "b")
            assert orphan["lease_until"] <= row["delivered_at"] <= killed_at + LEASE_S + 2.5
            assert row["attempts"] == orphan["attempts"] + 2  # the lost attempt counts
        # Nothing was ever confirmed twice: each outcome once, each TopS.II request once.
        deliveries: Counter[str] = Counter()
        for n in names:
            deliveries.update(dids[n].deliveries)
        assert deliveries == {c.env["uniqueid"]: 1 for c in channels + on_v + more}
        assert accepted(tops.values()) == {c: 1 for c in single_calls + paired_calls + calls_on_v + late_calls}
        assert [f.violations for f in tops.values()] == [[], [], []]
        # Phone 1 on a and phone 2 on b made one combined createNotAnswer.
        combined = [r.fields for f in tops.values() for r in f.received if r.fields["callId"] == paired_calls[0]]
        assert combined == [{"callId": paired_calls[0], "callTime": "2026-03-06 13:50:00",
                             "errorInfo1": "PROVIDER_TEMP_FAILURE", "errorInfo2": "NO_ANSWER"}]


async def test_two_asterisks_feed_one_ps_contacts_table(daemon_factory, mariadb_url, mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    async with contextlib.AsyncExitStack() as stack:
        pbx = {n: await stack.enter_async_context(FakeAMIServer(secret="ami-s3cret")) for n in ("x", "y")}
        own = {"x": ["1010", "1011"], "y": ["2020", "2021"]}
        contacts = {n: {e: pbx[n].register(e) for e in own[n]} for n in pbx}
        reg_servers = {"x": "pbx-x", "y": "y"}  # x names its rows; y's default is its node_id
        nodes = {}
        for n, ami in pbx.items():
            config = {
                "node_id": n,
                "store": {"url": mariadb_url, "pool_size": 4},
                "ami": {"enabled": True, "port": ami.port, "secret": "ami-s3cret", "auth": "md5",
                        "backoff_base_s": 0.1, "backoff_max_s": 0.5},
                # A client id of its own per run: runs in parallel must not knock each other off.
                "mqtt": {"enabled": True, "url": f"mqtt://{host}:{port}", "base_topic": topic_prefix,
                         "client_id": f"telephonyd-{n}-{topic_prefix.rsplit('/', 1)[-1]}"},
            }
            if n == "x":
                config["ps_contacts"] = {"reg_server": "pbx-x"}
            nodes[n] = daemon_factory(config, name=n)
        await start_all(nodes.values())
        view = await stack.enter_async_context(OutboxView(mariadb_url))

        async def table() -> dict[str, dict]:
            async with view.store.connect() as conn:
                result = await conn.exec_driver_sql("SELECT * FROM ps_contacts ORDER BY id")
                return {row["id"]: dict(row) for row in result.mappings()}

        def expected(which: dict[str, list[str]]) -> dict[str, str]:
            return {contacts[n][e].id: reg_servers[n] for n in which for e in which[n]}

        async def rows_are(which: dict[str, list[str]]) -> dict[str, dict] | None:
            rows = await table()
            return rows if {cid: r["reg_server"] for cid, r in rows.items()} == expected(which) else None

        await until(lambda: rows_are(own), what="both Asterisks' contacts in the one table")

        # Each instance answers for its own Asterisk only, and says which one.
        for n, daemon in nodes.items():
            code, body = await daemon.get("/api/ami/extensions")
            assert code == 200 and (body["node_id"], body["reg_server"]) == (n, reg_servers[n])
            assert {e["endpoint"] for e in body["extensions"]} == set(own[n])

        # y's resync (POST /api/ami/refresh) leaves x's rows alone.
        before = await table()
        code, body = await _post(nodes["y"], "/api/ami/refresh")
        assert code == 200, body
        assert await table() == before

        # x's Asterisk restarts having lost every contact: x deletes its rows, never y's.
        untouched = {cid: row for cid, row in before.items() if row["reg_server"] == "y"}
        await pbx["x"].shutdown()
        pbx["x"].remove_contacts_silently([c.id for c in contacts["x"].values()])
        await pbx["x"].boot()
        await until(lambda: rows_are({"y": own["y"]}), what="x's rows gone after its Asterisk restart")
        assert {cid: row for cid, row in (await table()).items()} == untouched

        # Presence: each instance publishes under its own node_id.
        async def published() -> dict[str, bytes] | None:
            topics = await retained(host, port, topic_prefix)
            wanted = {f"{topic_prefix}/{n}/status" for n in nodes} | {f"{topic_prefix}/y/agents/2020"}
            return topics if wanted <= set(topics) else None

        topics = await until(published, what="both instances' retained topics")
        assert topics[f"{topic_prefix}/x/status"] == b"online" and topics[f"{topic_prefix}/y/status"] == b"online"
        assert json.loads(topics[f"{topic_prefix}/y/agents/2020"])["online"] is True
        assert {t.split("/")[-1] for t in topics if t.startswith(f"{topic_prefix}/x/agents/")} == set(own["x"])
        assert {t.split("/")[-1] for t in topics if t.startswith(f"{topic_prefix}/y/agents/")} == set(own["y"])
        for daemon in nodes.values():
            assert daemon.stop() == 0


async def _post(daemon, path: str) -> tuple[int, dict]:
    async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                http.post(daemon.base_url + path, headers=daemon.headers) as resp):
        return resp.status, await resp.json()


def _cli(daemon, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "telephonyd", *args, "-c", str(daemon.config_path)],
                          capture_output=True, text=True, timeout=30, env=daemon.env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_an_instance_with_a_skewed_clock_neither_steals_claims_nor_reopens_gates(
    daemon_factory, mariadb_url
) -> None:
    skew = faketime_env("+10m")
    if skew is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime): it runs an instance with a skewed clock")
    did_a, did_s = UpstreamDID(), UpstreamDID()
    shared_tops = UpstreamTops()
    ameyo = {"phone1_state_ttl_s": 300.0, "processing_ttl_s": 30.0, "dedupe_ttl_s": 300.0}
    async with contextlib.AsyncExitStack() as stack:
        for fake in (did_a, did_s):
            await stack.enter_async_context(fake)
        await shared_tops.start()
        stack.push_async_callback(shared_tops.close)
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
        lease = {"lease_s": 30.0, "concurrency": 16}  # room beside the hung sends
        a = daemon_factory(node_config("a", mariadb_url, did_a, shared_tops, outbox=lease, ameyo=ameyo), name="a")
        s = daemon_factory(node_config("s", mariadb_url, did_s, shared_tops, outbox=lease, ameyo=ameyo), name="s",
                           env=skew)
        await start_all([a])
        did_a.script(*[Reply.never_answers()] * 8)  # a holds these 8 claims for the whole lease (30 s)
        held = [hangup_channel(i) for i in range(8)]
        assert set(await play_on([(a.agi_port, c) for c in held])) == {"QUEUED"}
        await until(lambda: len(did_a.hung()) == 8, what="a holding 8 claims")
        # Callbacks on a: one sent by a (its gate is processed, on the database clock), a phone 1
        # waiting for phone 2, and a phone 1 whose phone 2 never comes.
        assert await callback(http, a, one_phone(9301)) == 200
        assert await callback(http, a, two_phones(9302, 0, "NO_ANSWER")) == 200
        assert await callback(http, a, two_phones(9303, 0, "BUSY")) == 200
        await until(lambda: shared_tops.accepted_by_call[9301] == 1, what="a sending 9301")

        await start_all([s])
        ready = next(r for r in s.log_records() if r.get("msg") == "READY")
        ahead = datetime.fromisoformat(ready["ts"]).timestamp() - time.time()
        assert ahead > 500, f"the skew did not take: s's clock is {ahead:.0f} s ahead"

        # s works normally (outcomes it takes go out) while a's claims stay a's: on its host clock
        # they would all look expired ten minutes ago.
        own = [hangup_channel(i) for i in range(100, 120)]
        assert set(await play_on([(s.agi_port, c) for c in own])) == {"QUEUED"}
        await until(lambda: set(did_s.deliveries) | set(did_a.deliveries) >= {c.env["uniqueid"] for c in own},
                    what="the outcomes sent by both")
        assert did_s.deliveries.total() > 0  # s did its share
        assert not set(did_s.received) & {c.env["uniqueid"] for c in held}, "s took over a's live claims"
        assert await callback(http, s, one_phone(9301)) == 200  # duplicate of a's: the gate holds
        assert await callback(http, s, two_phones(9302, 1, "BUSY")) == 200  # phone 2 meets phone 1
        await until(lambda: 9301 in shared_tops.accepted_by_call and 9302 in shared_tops.accepted_by_call,
                    what="the callbacks sent")
        status = await s.wait_status(lambda st: st["components"]["outbox"]["state"] == "running")
        claims = {c["node_id"]: c for c in status["outbox"]["claims"]}
        assert claims.get("a", {}).get("rows") == 8 and claims["a"]["stuck"] == 0, claims
        assert 20.0 < claims["a"]["lease_expires_in_s"] <= 30.0

        # Operations output names the holder of the claims.
        text = await asyncio.to_thread(_cli, s, "status")
        assert "claims of a: 8 rows in flight" in text
        listing = await asyncio.to_thread(_cli, s, "outbox", "list", "--state", "in_flight")
        assert len([line for line in listing.splitlines()[1:] if " a " in line]) == 8

        code, body = await s.get("/api/ameyo/requests?call_id=9301")
        assert code == 200, body
        outcomes = sorted((r["node_id"], r["outcome"]) for r in body["requests"])
        assert outcomes[1] == ("s", "skipped"), outcomes
        assert shared_tops.accepted_by_call == {9301: 1, 9302: 1}
        combined = [r.fields for r in shared_tops.received if r.fields["callId"] == 9302]
        assert combined == [{"callId": 9302, "callTime": "2026-03-06 13:50:00", "errorInfo1": "NO_ANSWER",
                             "errorInfo2": "BUSY"}]
        async with OutboxView(mariadb_url) as view, view.store.connect() as conn:
            waiting = (await conn.exec_driver_sql("SELECT call_id FROM ameyo_phone1_state")).scalars().all()
        assert waiting == ["9303"]  # s's sweeper did not expire a phone 1 stored 0 s ago by the DB clock

        await did_a.stop()  # a's hung sends end, so both stop at once
        assert s.stop() == 0 and a.stop() == 0
