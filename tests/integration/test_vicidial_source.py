"""The VICIdial source against a real MariaDB holding VICIdial's tables (MyISAM, test schema):
rows written as the dialer, FastAGI_log.pl and the agent screen write them; the fake DID Optimizer
must receive each final status of each call exactly once, nothing skipped."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from telephonyd.outbox.schema import outbox as outbox_table
from telephonyd.upstream import DID_OPTIMIZER_TARGET
from telephonyd.vicidial import ledger
from telephonyd.vicidial import source as source_module
from telephonyd.vicidial.schema import checkpoint
from tests.fakes.did_optimizer import FakeDIDOptimizer
from tests.helpers import wait_until
from tests.vicidial_rig import VICIdialDB, back, vicidial_node


@pytest.fixture
def vicidial(mariadb_factory):
    db = VICIdialDB(mariadb_factory())
    yield db
    db.close()


@pytest.fixture
async def fake_did():
    async with FakeDIDOptimizer() as fake:
        yield fake


def reported(fake: FakeDIDOptimizer) -> Counter[tuple[str, str]]:
    """(vicidialUniqueid or closecallid, disposition) of every delivered disposition report."""
    out: Counter[tuple[str, str]] = Counter()
    for r in fake.requests:
        body = r.json if isinstance(r.json, dict) else {}
        if body.get("report") == "disposition" and r.status == 200:
            key = str(body.get("closecallid") or body["vicidialUniqueid"])
            out[(key, body["disposition"])] += 1
    return out


def bodies(fake: FakeDIDOptimizer, key: str, disposition: str) -> list[dict[str, Any]]:
    return [r.json for r in fake.requests if isinstance(r.json, dict) and r.json.get("disposition") == disposition
            and str(r.json.get("closecallid") or r.json.get("vicidialUniqueid")) == key]


async def test_agent_dispositions_reach_the_optimizer_once_each(store_url, vicidial, fake_did, http_session) -> None:
    db = vicidial
    sale, na, ni, corrected, busy = (db.uniqueid() for _ in range(5))
    trunk_leg = db.uniqueid()
    db.dial(101, "3125550101", uniqueid=trunk_leg)  # FastAGI_log.pl stored the trunk leg's uniqueid
    db.log_call(sale, 101, "INCALL", length=0, user="VDAD")
    db.log_call(na, 102, "NA", length=0, term_reason="NONE")  # unanswered, zero length
    db.log_call(ni, 103, "DISPO", length=42)
    db.log_call(corrected, 104, "INCALL", length=0, at=back(300, db.now()))  # older: the correction needs the sweep
    db.dial(105, "+13125550105")
    db.log_call(busy, 105, "B", length=0)
    closer = db.closer_call(db.uniqueid(), 106, "INCALL", length=0)
    # A campaign's own sale status: the flags, not the name, say it is a sale.
    db.execute("INSERT INTO vicidial_campaign_statuses (status, status_name, selectable, campaign_id, "
               "human_answered, sale, customer_contact, completed) VALUES ('SOLD','Sold','Y','TESTCAMP','Y','Y','Y','Y')")
    sold = db.uniqueid()
    db.log_call(sold, 107, "INCALL")
    async with vicidial_node(store_url, db, http_session, fake_did.base_url) as node:
        # The hangup outcome of the sale's trunk leg came through FastAGI before the disposition.
        await node.outbox.enqueue(DID_OPTIMIZER_TARGET, trunk_leg, {"uniqueid": trunk_leg, "phoneNumber": "3125550101",
                                                                   "campaignId": "TESTCAMP", "report": "outcome"})
        # ...and one under the very uniqueid VICIdial logged (no dial log row for that lead).
        await node.outbox.enqueue(DID_OPTIMIZER_TARGET, ni, {"uniqueid": ni, "phoneNumber": "3125550103",
                                                            "campaignId": "TESTCAMP", "report": "outcome"})
        await wait_until(lambda: reported(fake_did)[(na, "NA")] and reported(fake_did)[(busy, "B")], what="NA, B")
        await wait_until(lambda: node.source.table_state["vicidial_log"].get("open_calls") == 4, what="4 open")
        # The agent screen dispositions after the hangup.
        db.disposition(sale, "SALE", length=95)
        db.disposition(ni, "NI")
        db.disposition(corrected, "SALE", length=30)
        db.closer_disposition(closer, "CALLBK")
        db.disposition(sold, "SOLD")
        await wait_until(lambda: reported(fake_did)[(corrected, "SALE")], what="first SALE")
        db.disposition(corrected, "DNC")  # a supervisor corrects the SALE
        expected = {(sale, "SALE"), (na, "NA"), (ni, "NI"), (corrected, "SALE"), (corrected, "DNC"), (busy, "B"),
                    (str(closer), "CALLBK"), (sold, "SOLD")}
        await wait_until(lambda: set(reported(fake_did)) >= expected, timeout=20, what="every final status")
        polls = node.source.polls
        await wait_until(lambda: node.source.polls >= polls + 5, what="more polls")
        health = node.source.health()
    got = reported(fake_did)
    assert set(got) == expected and set(got.values()) == {1}, got
    # Transient statuses never reached the optimizer.
    assert not [r for r in fake_did.requests if (r.json or {}).get("disposition") in ("INCALL", "DISPO")]
    [sale_body] = bodies(fake_did, sale, "SALE")
    assert sale_body["uniqueid"] == trunk_leg and sale_body["outcomeReported"] is True
    assert sale_body["didUsed"] == "3125550101" == sale_body["phoneNumber"]
    assert sale_body["didSource"] == "vicidial_dial_log" and sale_body["customerPhone"] == "5550000101"
    assert sale_body["statusFlags"]["sale"] is True and sale_body["statusFlags"]["human_answered"] is True
    assert sale_body["duration"] == 95 and sale_body["agentId"] == "6666"
    [na_body] = bodies(fake_did, na, "NA")
    assert na_body["duration"] == 0 and na_body["didSource"] == "none" and na_body["outcomeReported"] is False
    assert not any(na_body["statusFlags"].values()) and na_body["uniqueid"] == na
    [busy_body] = bodies(fake_did, busy, "B")
    assert busy_body["didUsed"] == "13125550105"
    [ni_body] = bodies(fake_did, ni, "NI")
    assert ni_body["uniqueid"] == ni and ni_body["outcomeReported"] is True
    [dnc] = bodies(fake_did, corrected, "DNC")
    assert dnc["statusFlags"]["dnc"] is True and dnc["statusFlags"]["sale"] is False
    [sold_body] = bodies(fake_did, sold, "SOLD")
    assert sold_body["statusFlags"]["sale"] is True and sold_body["statusKnown"] is True
    [callbk] = bodies(fake_did, str(closer), "CALLBK")
    assert callbk["direction"] == "inbound" and callbk["campaignId"] == "SUPPORT"
    assert callbk["statusFlags"]["scheduled_callback"] is True
    assert health["ok"] and health["tables"]["vicidial_log"]["lag_s"] == 0
    assert health["tables"]["vicidial_log"]["rows_read"] >= 5 and health["last_error"] is None


async def test_nothing_skipped_by_key_order_batches_or_late_inserts(sqlite_url, vicidial, fake_did, http_session) -> None:
    db = vicidial
    now = db.now()
    # One second holding more rows than a batch, uniqueids whose string order is not their
    # numeric order (".99" > ".100" as text), and calls spread over the last minutes.
    same_second = [f"{int(now.timestamp())}.{n}" for n in (7, 99, 100, 1000, 10001)] + [
        f"{int(now.timestamp()) - 1}.{n}" for n in range(20)]
    for n, uid in enumerate(same_second):
        db.log_call(uid, 200 + n, "NA", at=now if n < 5 else back(1, now))
    spread = [db.uniqueid(back(600 - 30 * n, now)) for n in range(15)]
    for n, uid in enumerate(spread):
        db.log_call(uid, 300 + n, "A", at=back(600 - 30 * n, now))
    async with vicidial_node(sqlite_url, db, http_session, fake_did.base_url, batch_size=10):
        want = {(u, "NA") for u in same_second} | {(u, "A") for u in spread}
        await wait_until(lambda: set(reported(fake_did)) >= want, timeout=20, what="all rows")
        # A row inserted after the head passed its call_date (VICIdial writes call_date = when the
        # call was placed): found by the sweep of the re-read window.
        late = db.uniqueid(back(120, now))
        db.log_call(late, 400, "DROP", at=back(120, now))
        await wait_until(lambda: reported(fake_did)[(late, "DROP")], timeout=20, what="late insert")
    got = reported(fake_did)
    assert set(got.values()) == {1} and len(got) == len(want) + 1


async def test_two_instances_on_one_store_report_each_status_once(mariadb_url, vicidial, fake_did, http_session) -> None:
    db = vicidial
    calls = [db.uniqueid() for _ in range(120)]
    for n, uid in enumerate(calls):
        db.log_call(uid, 500 + n, "INCALL" if n % 2 else "NA")
    async with (
        vicidial_node(mariadb_url, db, http_session, fake_did.base_url, node_id="a", batch_size=20) as a,
        vicidial_node(mariadb_url, db, http_session, fake_did.base_url, node_id="b", batch_size=20) as b,
    ):
        await wait_until(lambda: len(reported(fake_did)) >= 60, timeout=20, what="NA rows")
        for n, uid in enumerate(calls):
            if n % 2:
                db.disposition(uid, "SALE" if n % 3 else "NI")
        await wait_until(lambda: len(reported(fake_did)) >= 120, timeout=20, what="dispositions")
        polls = (a.source.polls, b.source.polls)
        await wait_until(lambda: a.source.polls > polls[0] + 5 and b.source.polls > polls[1] + 5, what="more polls")
    got = reported(fake_did)
    assert len(got) == 120 and set(got.values()) == {1}
    assert all(status in ("NA", "SALE", "NI") for _, status in got)


async def test_a_crash_between_poll_and_commit_loses_and_doubles_nothing(
    store_url, vicidial, fake_did, http_session, monkeypatch
) -> None:
    db = vicidial
    calls = [db.uniqueid() for _ in range(30)]
    for n, uid in enumerate(calls):
        db.log_call(uid, 700 + n, "SALE" if n % 2 else "B", length=10 * (n % 2))
    real_commit = ledger.commit

    class Crash(Exception):
        pass

    def commit_then_die(conn, **kw):
        real_commit(conn, **kw)  # outbox rows and the checkpoint written in the transaction...
        raise Crash("process died before COMMIT")  # ...which never commits

    monkeypatch.setattr(source_module.ledger, "commit", commit_then_die)
    async with vicidial_node(store_url, db, http_session, fake_did.base_url, run=False) as node:
        with pytest.raises(Crash):
            await node.source.poll_once()
        async with node.store.connect() as conn:
            rows = (await conn.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one()
            version = (await conn.execute(sa.select(checkpoint.c.version))).scalars().all()
        assert rows == 0 and version == [0]
    monkeypatch.setattr(source_module.ledger, "commit", real_commit)
    async with vicidial_node(store_url, db, http_session, fake_did.base_url) as node:
        await wait_until(lambda: len(reported(fake_did)) >= 30, timeout=20, what="every call after restart")
        polls = node.source.polls
        await wait_until(lambda: node.source.polls > polls + 5, what="more polls")
    async with vicidial_node(store_url, db, http_session, fake_did.base_url) as node:  # and a plain restart
        polls = node.source.polls
        await wait_until(lambda: node.source.polls > polls + 5, what="polls after restart")
    got = reported(fake_did)
    assert len(got) == 30 and set(got.values()) == {1}


async def test_vicidial_outage_degrades_health_and_recovers(sqlite_url, vicidial, fake_did, http_session) -> None:
    db = vicidial
    async with vicidial_node(sqlite_url, db, http_session, fake_did.base_url) as node:
        await wait_until(lambda: node.source.polls >= 1, what="first poll")
        db.execute("RENAME TABLE vicidial_log TO vicidial_log_away")
        await wait_until(lambda: not node.source.health()["ok"], what="degraded")
        assert "vicidial_log" in node.source.health()["last_error"]
        db.execute("RENAME TABLE vicidial_log_away TO vicidial_log")
        uid = db.uniqueid()
        db.log_call(uid, 900, "NA")
        await wait_until(lambda: reported(fake_did)[(uid, "NA")], timeout=20, what="recovered")
        await wait_until(lambda: node.source.health()["ok"], what="healthy again")
    await asyncio.sleep(0)


async def test_rows_inserted_behind_the_head_are_found_without_waiting_for_the_sweep(
    sqlite_url, vicidial, fake_did, http_session
) -> None:
    db = vicidial
    now = db.now()
    older = [db.uniqueid(back(1800 - n, now)) for n in range(400)]  # a window the sweep needs 40 polls for
    for n, uid in enumerate(older):
        db.log_call(uid, 1000 + n, "NA", at=back(1800 - n, now))
    async with vicidial_node(sqlite_url, db, http_session, fake_did.base_url, batch_size=10) as node:
        head = db.uniqueid()
        db.log_call(head, 1500, "B")
        await wait_until(lambda: reported(fake_did)[(head, "B")], timeout=20, what="the head reached now")
        polls = node.source.polls
        late = db.uniqueid(back(60, now))
        db.log_call(late, 1501, "NA", at=back(60, db.now()))  # placed a minute ago, logged now
        await wait_until(lambda: reported(fake_did)[(late, "NA")], timeout=20, what="late row")
        assert node.source.polls - polls <= 3, "found by the per-second counts, not by the sweep"
        assert node.source.health()["late_rows"] >= 1
