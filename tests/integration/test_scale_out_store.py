"""Several instances on one store, at the level of the outbox's statements: a late result of an
expired claim is fenced off, and the administration figures say which node holds which claims and
which leases are stuck. (The daemons as processes: tests/system/test_scale_out.py.)"""

from __future__ import annotations

import asyncio
import contextlib

from telephonyd.outbox.queries import OutboxQueries
from tests.helpers import wait_until
from tests.outbox_harness import RecordingSender, fast_config, outbox_node


async def test_a_late_result_of_an_expired_claim_never_lands_on_the_next_claim(store_url) -> None:
    # One node's send outlived its lease (a stalled event loop or a slow commit): the node's own
    # sweep turned the row back to pending and the same node claimed it again. The first attempt's
    # result, written late, must not finish the second claim: only the second attempt may.
    async with outbox_node(store_url, run=False) as node:
        row_id = (await node.outbox.enqueue("t", "k", {"n": 1})).id
        mine = OutboxQueries(node.store, "a")
        [first] = await mine.claim("t", 10, lease_s=0.2)
        await wait_until(lambda: mine.expire_leases(max_attempts=0), what="the lease to expire (DB clock)")
        [second] = await mine.claim("t", 10, lease_s=30.0)
        assert second.id == first.id == row_id and (first.attempts, second.attempts) == (0, 1)

        assert await mine.mark_retry(first.id, 60.0, "late answer", 500, attempts=first.attempts) is False
        assert await mine.mark_delivered(first.id, 200, attempts=first.attempts) is False
        row = await node.row(row_id)
        assert (row["state"], row["claimed_by"], row["attempts"]) == ("in_flight", "a", 1)

        assert await mine.mark_delivered(second.id, 200, attempts=second.attempts) is True
        row = await node.row(row_id)
        assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 2, None)


async def test_the_dispatcher_fences_its_results_with_the_claimed_attempt(store_url) -> None:
    # The same fence through the dispatcher: a row whose attempt count moved on while its send
    # was under way (its lease expired and was swept) is reported as a lost claim, not finished.
    sender = RecordingSender()
    sender.block = True
    config = fast_config(lease_s=30.0, concurrency=1)  # one send at a time: the node claims nothing more
    async with outbox_node(store_url, config=config, senders={"t": (sender, True)}) as node:
        row_id = (await node.outbox.enqueue("t", "k", {"n": 1})).id
        await wait_until(lambda: sender.rows, what="the send to start")
        async with node.store.begin() as conn:  # the lease runs out while the send is stuck
            await conn.exec_driver_sql("UPDATE outbox SET lease_until = 0")

        async def swept() -> bool:
            return (await node.row(row_id))["state"] == "pending"

        await wait_until(swept, what="the node's own sweep")
        [again] = await OutboxQueries(node.store, node.outbox.node_id).claim("t", 10, lease_s=30.0)
        assert again.attempts == 1
        sender.release.set()
        await wait_until(lambda: node.outbox.health()["sent"].get("claims_lost") == 1, what="the lost claim")
        row = await node.row(row_id)
        assert (row["state"], row["attempts"]) == ("in_flight", 1)  # the second claim still holds it


async def test_stats_name_each_nodes_claims_and_the_stuck_leases(store_url) -> None:
    async with outbox_node(store_url, run=False) as node:
        ids = [(await node.outbox.enqueue("t", f"k{n}", {"n": n})).id for n in range(6)]
        a, b, dead = (OutboxQueries(node.store, name) for name in ("a", "b", "dead"))
        await a.claim("t", 2, lease_s=30.0)
        await b.claim("t", 1, lease_s=30.0)
        await dead.claim("t", 2, lease_s=0.2)

        async def stuck() -> dict | None:
            stats = await node.outbox.stats()
            return stats if stats["stuck_leases"] == 2 else None

        stats = await wait_until(stuck, what="the dead node's leases to pass (DB clock)")
        claims = {c["node_id"]: c for c in stats["claims"]}
        assert {n: (c["rows"], c["ids"], c["stuck"]) for n, c in claims.items()} == {
            "a": (2, ids[0:2], 0), "b": (1, ids[2:3], 0), "dead": (2, ids[3:5], 2),
        }
        assert claims["dead"]["lease_expires_in_s"] <= 0 < claims["a"]["lease_expires_in_s"] <= 30.0
        assert stats["by_state"]["in_flight"] == 5 and stats["by_state"]["pending"] == 1
        # Any instance's sweep ends the stuck state; the others' live claims stay.
        assert await a.expire_leases(max_attempts=0) == 2
        after = await node.outbox.stats()
        assert after["stuck_leases"] == 0 and [c["node_id"] for c in after["claims"]] == ["a", "b"]


async def test_three_instances_drain_one_backlog_without_overlap(mariadb_url) -> None:
    senders = [RecordingSender() for _ in range(3)]
    for sender in senders:
        sender.block = True  # every node claims while the others hold rows: SKIP LOCKED at work
    config = fast_config(concurrency=4, claim_batch=4)
    async with contextlib.AsyncExitStack() as stack:
        a, b, c = [
            await stack.enter_async_context(
                outbox_node(mariadb_url, node_id=name, config=config, senders={"t": (sender, True)}))
            for name, sender in zip("abc", senders, strict=True)
        ]
        await asyncio.gather(*(a.outbox.enqueue("t", f"k{n}", {"n": n}) for n in range(60)))
        for node in (b, c):
            node.outbox.notify()
        await wait_until(lambda: all(len(s.rows) == 4 for s in senders), what="every node holding its claims")
        held = [{r.key for r in s.rows} for s in senders]
        assert not (held[0] & held[1] or held[0] & held[2] or held[1] & held[2])
        for sender in senders:
            sender.block = False
            sender.release.set()
        await wait_until(lambda: sum(len(s.rows) for s in senders) == 60, what="the backlog drained")
        await wait_until(lambda: _states(a, "delivered"), what="every row delivered")
    keys = [r.key for s in senders for r in s.rows]
    assert sorted(keys) == sorted(f"k{n}" for n in range(60))


async def _states(node, state: str) -> bool:
    return set((await node.states()).values()) == {state}
