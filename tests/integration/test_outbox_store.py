"""The outbox's store code on SQLite and on a real MariaDB: group commit, claims and leases, crash
recovery, administration, and several instances sharing one MariaDB."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
import sqlalchemy as sa

from telephonyd.outbox import Delivery, metadata
from telephonyd.outbox.queries import OutboxQueries
from telephonyd.outbox.schema import outbox as outbox_table
from telephonyd.store import Store
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply
from tests.helpers import wait_until
from tests.outbox_harness import TARGET, RecordingSender, call_result, did_sender, fast_config, outbox_node


async def _committed_keys(url: str) -> dict[str, int]:
    """(key -> id) as a separate connection pool sees them: only committed rows."""
    store = Store(url, schemas=[metadata])
    await store.start()
    try:
        async with store.connect() as conn:
            rows = await conn.execute(sa.select(outbox_table.c["key"], outbox_table.c.id))
            return {key: int(row_id) for key, row_id in rows}
    finally:
        await store.close()


async def test_group_commit_batches_concurrent_enqueues(store_url) -> None:
    async with outbox_node(store_url, run=False) as node:
        keys = [f"1795300000.{n}" for n in range(400)] + ["1795300000.7", "1795300000.7", "1795300000.9"]
        results = await asyncio.gather(*(node.outbox.enqueue(TARGET, k, call_result(k)) for k in keys))
        writer = node.outbox.health()["writer"]
        committed = await _committed_keys(store_url)
    # Every caller got an answer backed by a committed row.
    assert len(committed) == 400
    for key, result in zip(keys, results, strict=True):
        assert committed[key] == result.id
    created = Counter(k for k, r in zip(keys, results, strict=True) if r.created)
    assert set(created.values()) == {1} and len(created) == 400
    assert sum(not r.created for r in results) == 3
    # One writer coalesced them: far fewer transactions than callers.
    assert writer["rows"] == len(keys)
    assert writer["batches"] <= 10 and writer["largest_batch"] >= 40


async def test_batch_size_is_bounded(store_url) -> None:
    async with outbox_node(store_url, config=fast_config(write_batch_max=16), run=False) as node:
        await asyncio.gather(*(node.outbox.enqueue("t", f"k{n}", {"n": n}) for n in range(100)))
        writer = node.outbox.health()["writer"]
    assert writer["largest_batch"] == 16 and writer["batches"] >= 7


async def test_keys_are_compared_exactly(store_url) -> None:
    async with outbox_node(store_url, run=False) as node:
        a = await node.outbox.enqueue("t", "Call-1", {"n": 1})
        b = await node.outbox.enqueue("t", "call-1", {"n": 2})
        c = await node.outbox.enqueue("other", "Call-1", {"n": 3})
    assert a.created and b.created and c.created and len({a.id, b.id, c.id}) == 3


async def test_add_joins_the_callers_transaction(store_url) -> None:
    sender = RecordingSender()
    async with outbox_node(store_url, senders={"t": (sender, True)}) as node:
        def fails(conn: sa.Connection) -> None:
            assert node.outbox.add(conn, "t", "rolled-back", {"n": 1}) is True
            raise RuntimeError("the caller's transaction fails")

        with pytest.raises(RuntimeError):
            await node.store.write(fails)
        added = await node.store.write(lambda conn: [node.outbox.add(conn, "t", "kept", {"n": n}) for n in (2, 3)])
        assert added == [True, False]
        node.outbox.notify()
        await wait_until(lambda: sender.keys() == ["kept"])
        await wait_until(lambda: _all_in_state(node, "delivered"), what="the result written")
        assert await node.states() == {"kept": "delivered"}
    assert sender.rows[0].payload == {"n": 2}


async def test_claims_leases_and_conditional_results(store_url) -> None:
    async with outbox_node(store_url, run=False) as node:
        for n in range(5):
            await node.outbox.enqueue("t", f"k{n}", {"n": n})
        mine = OutboxQueries(node.store, "a")
        theirs = OutboxQueries(node.store, "b")
        claimed = await mine.claim("t", 3, lease_s=30.0)
        assert [r.key for r in claimed] == ["k0", "k1", "k2"]
        assert [r.key for r in await theirs.claim("t", 10, lease_s=30.0)] == ["k3", "k4"]
        assert await theirs.claim("t", 10, lease_s=30.0) == []
        assert await mine.claim("other-target", 10, lease_s=30.0) == []
        # Only the holder of a claim may record its result.
        assert await theirs.mark_delivered(claimed[0].id, 200) is False
        assert await mine.mark_delivered(claimed[0].id, 200) is True
        assert await mine.mark_delivered(claimed[0].id, 200) is False  # delivered is terminal
        assert await mine.mark_retry(claimed[1].id, 3600.0, "HTTP 500", 500) is True
        row = await node.row(claimed[1].id)
        assert (row["state"], row["attempts"], row["last_error"], row["claimed_by"]) == ("pending", 1, "HTTP 500", "a")
        assert row["next_attempt_at"] - row["updated_at"] == pytest.approx(3600.0, abs=1.0)
        assert await mine.claim("t", 10, lease_s=30.0) == []  # not due yet
        stats = await node.outbox.stats()
        assert {c["node_id"]: c["rows"] for c in stats["claims"]} == {"a": 1, "b": 2}
        assert all(25.0 < c["lease_expires_in_s"] <= 30.0 for c in stats["claims"])


async def test_expired_lease_makes_rows_claimable_and_the_old_claim_void(store_url) -> None:
    async with outbox_node(store_url, run=False) as node:
        row_id = (await node.outbox.enqueue("t", "k", {"n": 1})).id
        dead_node = OutboxQueries(node.store, "a")
        heir = OutboxQueries(node.store, "b")
        [claimed] = await dead_node.claim("t", 10, lease_s=0.3)
        assert await heir.expire_leases(max_attempts=0) == 0  # the lease still runs
        assert await heir.claim("t", 10, lease_s=30.0) == []
        await wait_until(lambda: heir.expire_leases(max_attempts=0), what="the lease to expire (DB clock)")
        row = await node.row(row_id)
        assert (row["state"], row["attempts"]) == ("pending", 1)
        assert row["last_error"] == "lease of a expired before a result"
        [again] = await heir.claim("t", 10, lease_s=30.0)
        assert again.id == claimed.id and again.attempts == 1
        assert await dead_node.mark_delivered(claimed.id, 200) is False
        assert await heir.mark_delivered(again.id, 200) is True


async def test_expired_lease_counts_against_max_attempts(store_url) -> None:
    async with outbox_node(store_url, run=False) as node:
        row_id = (await node.outbox.enqueue("t", "poison", {"n": 1})).id
        queries = OutboxQueries(node.store, "a")
        await queries.claim("t", 1, lease_s=0.1)
        await wait_until(lambda: queries.expire_leases(max_attempts=1))
        row = await node.row(row_id)
    assert (row["state"], row["attempts"]) == ("dead", 1)


async def test_crashed_node_rows_are_delivered_once_after_the_lease(store_url, http_session) -> None:
    async with FakeDIDOptimizer() as fake:
        fake.script(*[Reply.never_answers()] * 3)
        sender = did_sender(http_session, fake.base_url, timeout_s=30.0)
        config = fast_config(lease_s=2.0)
        async with outbox_node(store_url, config=config, senders={TARGET: (sender, True)}) as first:
            for n in range(3):
                await first.outbox.enqueue(TARGET, f"u-crash-{n}", call_result(f"u-crash-{n}"))
            await wait_until(lambda: len(fake.requests) == 3, what="three requests in flight")
            await first.crash()
        assert fake.deliveries == {}
        async with outbox_node(store_url, config=config, senders={TARGET: (sender, True)}, run=False) as second:
            # The dead node's claims hold until their lease ends (database clock).
            assert await second.outbox.queries.claim(TARGET, 10, config.lease_s) == []
            assert set((await second.states()).values()) == {"in_flight"}
            second.run()
            await wait_until(lambda: fake.deliveries.total() == 3, timeout=15.0, what="redelivery")
            await wait_until(lambda: _all_in_state(second, "delivered"))
            rows = await second.outbox.list_rows()
        assert fake.deliveries == {f"u-crash-{n}": 1 for n in range(3)}
        assert all(r["attempts"] == 2 for r in rows)  # the lost attempt counts


async def _all_in_state(node, state: str) -> bool:
    return set((await node.states()).values()) == {state}


async def test_administration(store_url) -> None:
    refusing = RecordingSender(*[Delivery("dead", error="HTTP 400: bad", status=400)] * 3)
    async with outbox_node(store_url, senders={"t": (refusing, True)}) as node:
        ids = [(await node.outbox.enqueue("t", f"k{n}", {"n": n})).id for n in range(3)]
        await node.outbox.enqueue("disabled", "waiting", {"n": 9})
        await wait_until(lambda: _count_state(node, "dead", 3))
        stats = await node.outbox.stats()
        assert stats["by_state"] == {"pending": 1, "in_flight": 0, "delivered": 0, "dead": 3}
        assert stats["dead"] == 3 and stats["targets"]["t"]["dead"] == 3
        assert stats["targets"]["disabled"]["pending"] == 1
        assert stats["oldest_pending_age_s"] is not None and stats["oldest_pending_age_s"] >= 0
        dead_rows = await node.outbox.list_rows(state="dead")
        assert [(r["key"], r["last_error"], r["last_status"], r["claimed_by"]) for r in dead_rows] == [
            (f"k{n}", "HTTP 400: bad", 400, "n1") for n in range(3)
        ]
        assert dead_rows[0]["payload"] == {"n": 0}
        with pytest.raises(ValueError):
            await node.outbox.list_rows(state="lost")
        # Retrying one dead letter sends it again (the sender now accepts).
        assert await node.outbox.retry(ids[0]) is True
        await wait_until(lambda: _row_state(node, ids[0], "delivered"))
        assert await node.outbox.retry(ids[0]) is False
        assert await node.outbox.retry(999_999) is False
        assert await node.outbox.retry_all_dead() == 2
        await wait_until(lambda: _count_state(node, "delivered", 3))
        assert await node.outbox.drop(ids[1]) is True
        assert await node.outbox.drop(ids[1]) is False
        assert (await node.outbox.stats())["by_state"]["delivered"] == 2
    assert refusing.keys().count("k0") == 2


async def _count_state(node, state: str, count: int) -> bool:
    return list((await node.states()).values()).count(state) == count


async def _row_state(node, row_id: int, state: str) -> bool:
    return (await node.row(row_id))["state"] == state


# -- several instances on one MariaDB -------------------------------------------------------------


async def test_skip_locked_claims_are_disjoint(mariadb_url) -> None:
    async with outbox_node(mariadb_url, run=False) as node:
        await asyncio.gather(*(node.outbox.enqueue("t", f"k{n}", {"n": n}) for n in range(60)))
        nodes = [OutboxQueries(node.store, f"n{i}") for i in range(4)]
        batches = await asyncio.gather(*(q.claim("t", 20, lease_s=30.0) for q in nodes for _ in range(2)))
    ids = [row.id for batch in batches for row in batch]
    assert len(ids) == len(set(ids)) == 60


async def test_two_instances_share_the_work_and_deliver_each_row_once(mariadb_url, http_session) -> None:
    async with FakeDIDOptimizer() as fake:
        sender = did_sender(http_session, fake.base_url)
        config = fast_config(concurrency=4, claim_batch=4)
        async with (
            outbox_node(mariadb_url, node_id="ast1", config=config, senders={TARGET: (sender, True)}, run=False) as a,
            outbox_node(mariadb_url, node_id="ast2", config=config, senders={TARGET: (sender, True)}, run=False) as b,
        ):
            keys = [f"1795300000.{n}" for n in range(300)]
            rng = random.Random(5)
            # Both instances enqueue (some keys twice, as two dialplan lines would report them).
            results = await asyncio.gather(
                *(rng.choice((a, b)).outbox.enqueue(TARGET, k, call_result(k)) for k in keys + keys[:50])
            )
            assert sum(r.created for r in results) == 300
            a.run()
            b.run()
            await wait_until(lambda: fake.deliveries.total() >= 300, timeout=30.0, what="all deliveries")
            await wait_until(lambda: _count_state(a, "delivered", 300), timeout=10.0)
            rows = await a.outbox.list_rows(limit=1000)
        assert fake.deliveries == {k: 1 for k in keys}
        assert sum(fake.received.values()) == 300
        by_node = Counter(r["claimed_by"] for r in rows)
        assert set(by_node) == {"ast1", "ast2"}, by_node


async def test_same_key_from_two_instances_is_created_once(mariadb_url) -> None:
    async with (
        outbox_node(mariadb_url, node_id="ast1", run=False) as a,
        outbox_node(mariadb_url, node_id="ast2", run=False) as b,
    ):
        keys = [f"u{n}" for n in range(100)]
        results = await asyncio.gather(
            *(node.outbox.enqueue("t", k, {"k": k}) for k in keys for node in (a, b))
        )
    created = Counter(k for k, r in zip([k for k in keys for _ in (a, b)], results, strict=True) if r.created)
    assert created == Counter(keys)


async def test_next_due_in_names_the_earliest_due_row_or_lease(store_url) -> None:
    async with outbox_node(store_url, run=False) as node:
        queries = OutboxQueries(node.store, "a")
        assert await queries.next_due_in(["t"]) is None
        await node.outbox.enqueue("t", "k0", {"n": 0})
        await node.outbox.enqueue("t", "k1", {"n": 1})
        assert await queries.next_due_in(["t"]) == 0.0
        assert await queries.next_due_in(["other"]) is None
        assert await queries.next_due_in(["other", "t"]) == 0.0
        first, second = await queries.claim("t", 2, lease_s=300.0)
        # Nothing pending: the earliest lease end.
        assert 290.0 < await queries.next_due_in(["t"]) <= 300.0
        assert await queries.mark_retry(first.id, 120.0, "HTTP 500", 500) is True
        assert 110.0 < await queries.next_due_in(["t"]) <= 120.0
        assert 290.0 < await queries.next_due_in(["other"]) <= 300.0  # leases of every target count
        assert await queries.mark_delivered(second.id, 200) is True
        assert await queries.next_due_in(["other"]) is None
