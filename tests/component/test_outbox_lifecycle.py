"""Outbox lifecycle on SQLite: store outages, shutdown with sends in flight, pruning, unknown targets."""

from __future__ import annotations

import asyncio
import logging

import pytest
import sqlalchemy as sa

from telephonyd.errors import StoreError
from telephonyd.outbox import Outbox, metadata
from telephonyd.store import Store
from tests.helpers import wait_until
from tests.outbox_harness import RecordingSender, fast_config, outbox_node


def _operational_error() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, Exception("database is locked"))


async def test_failed_commit_fails_its_callers_and_the_writer_goes_on(sqlite_url, monkeypatch) -> None:
    async with outbox_node(sqlite_url, run=False) as node:
        # The batch's statements all run, then the transaction fails before its COMMIT.
        real_write = node.store.write
        failures = {"left": 1}

        async def flaky_write(work, **options):
            def fail_after(conn):
                result = work(conn)
                if failures["left"]:
                    failures["left"] -= 1
                    raise _operational_error()
                return result

            return await real_write(fail_after, **options)

        monkeypatch.setattr(node.store, "write", flaky_write)
        with pytest.raises(StoreError) as err:
            await node.outbox.enqueue("t", "lost", {"n": 1})
        assert err.value.retryable is True
        health = node.outbox.health()
        assert health["ok"] is False and "database is locked" in health["last_error"]
        # The next enqueue works, and the failed one left nothing behind.
        result = await node.outbox.enqueue("t", "kept", {"n": 2})
        assert result.created
        assert node.outbox.health()["ok"] is True
        assert await node.states() == {"kept": "pending"}
        # The caller may simply retry the failed one.
        assert (await node.outbox.enqueue("t", "lost", {"n": 1})).created


async def test_dispatcher_survives_a_store_outage_and_delivers_after_it(sqlite_url, monkeypatch) -> None:
    sender = RecordingSender()
    async with outbox_node(sqlite_url, senders={"t": (sender, True)}, run=False) as node:
        await node.outbox.enqueue("t", "k1", {"n": 1})
        real_claim = node.outbox.queries.claim
        outage = {"on": True}

        async def claim(*args, **kwargs):
            if outage["on"]:
                raise _operational_error()
            return await real_claim(*args, **kwargs)

        monkeypatch.setattr(node.outbox.queries, "claim", claim)
        node.run()
        await wait_until(lambda: node.outbox.health()["state"] == "degraded", what="degraded health")
        health = node.outbox.health()
        assert health["ok"] is False and "database is locked" in health["last_error"]
        assert sender.rows == []
        outage["on"] = False
        await wait_until(lambda: sender.keys() == ["k1"], what="delivery after the outage")
        await wait_until(lambda: node.outbox.health()["state"] == "running")
        assert node.outbox.health()["ok"] is True and node.outbox.health()["last_error"] is None


async def test_stop_releases_claims_of_unfinished_sends(sqlite_url) -> None:
    blocked = RecordingSender()
    blocked.block = True
    async with outbox_node(sqlite_url, senders={"t": (blocked, True)}) as node:
        for n in range(3):
            await node.outbox.enqueue("t", f"k{n}", {"n": n})
        await wait_until(lambda: len(blocked.rows) == 3, what="three sends in flight")
        assert set((await node.states()).values()) == {"in_flight"}
        await node.outbox.stop(0.2)
        rows = await node.outbox.list_rows()
    assert [(r["state"], r["lease_until"], r["attempts"]) for r in rows] == [("pending", None, 0)] * 3
    # The next run sends them at once, not after the lease.
    sender = RecordingSender()
    async with outbox_node(sqlite_url, senders={"t": (sender, True)}) as node:
        await wait_until(lambda: len(sender.rows) == 3, timeout=3.0)


async def test_stop_waits_for_sends_that_finish_in_time(sqlite_url) -> None:
    sender = RecordingSender()
    sender.block = True
    async with outbox_node(sqlite_url, senders={"t": (sender, True)}) as node:
        await node.outbox.enqueue("t", "k", {"n": 1})
        await wait_until(lambda: sender.rows)
        sender.release.set()
        await node.outbox.stop(5.0)
        assert await node.states() == {"k": "delivered"}
        assert node.outbox.health()["state"] == "stopped"


async def test_enqueue_after_stop_is_refused(sqlite_url) -> None:
    async with outbox_node(sqlite_url, run=False) as node:
        await node.outbox.stop(1.0)
        with pytest.raises(StoreError):
            await node.outbox.enqueue("t", "late", {"n": 1})


async def test_queued_enqueues_are_committed_by_stop(sqlite_url) -> None:
    import asyncio

    async with outbox_node(sqlite_url, run=False) as node:
        pending = [asyncio.ensure_future(node.outbox.enqueue("t", f"k{n}", {"n": n})) for n in range(50)]
        await asyncio.sleep(0)  # let them queue
        await node.outbox.stop(5.0)
        results = await asyncio.gather(*pending)
        assert all(r.created for r in results)
    store = Store(sqlite_url, schemas=[metadata])
    await store.start()
    try:
        assert len(await Outbox(store, node_id="r", config=fast_config()).list_rows(limit=100)) == 50
    finally:
        await store.close()


async def test_delivered_rows_are_pruned_after_retention(sqlite_url) -> None:
    sender = RecordingSender()
    dead = RecordingSender()
    from telephonyd.outbox import Delivery

    dead.replies = [Delivery("dead", error="refused")]
    config = fast_config(delivered_retention_s=0.2, prune_interval_s=0.05)
    async with outbox_node(sqlite_url, config=config, senders={"t": (sender, True), "d": (dead, True)}) as node:
        await node.outbox.enqueue("t", "old", {"n": 1})
        await node.outbox.enqueue("d", "dead-one", {"n": 2})
        await wait_until(lambda: _has(node, "old", "delivered"))
        await wait_until(lambda: _has(node, "dead-one", "dead"))
        await wait_until(lambda: _gone(node, "old"), what="the delivered row to be pruned")
        assert await node.states() == {"dead-one": "dead"}


async def _has(node, key: str, state: str) -> bool:
    return (await node.states()).get(key) == state


async def _gone(node, key: str) -> bool:
    return key not in await node.states()


async def test_unknown_target_rows_stay_pending_and_are_logged_once(sqlite_url, caplog) -> None:
    caplog.set_level(logging.INFO, logger="telephonyd.outbox")
    sender = RecordingSender()
    async with outbox_node(sqlite_url, senders={"t": (sender, True)}) as node:
        await node.outbox.enqueue("nobody", "k1", {"n": 1})
        await node.outbox.enqueue("nobody", "k2", {"n": 2})
        await node.outbox.enqueue("t", "k3", {"n": 3})
        await wait_until(lambda: sender.keys() == ["k3"])
        # The check runs with each counts refresh (at start, then every few seconds).
        await node.outbox.refresh_counts()
        await node.outbox.refresh_counts()
        assert node.outbox.health()["counts"]["pending"] == 2
        states = await node.states()
    assert states == {"k1": "pending", "k2": "pending", "k3": "delivered"}
    warnings = [r for r in caplog.records if r.getMessage() == "outbox rows for an unknown target stay pending"]
    assert len(warnings) == 1 and warnings[0].outbox_target == "nobody"


async def test_enqueue_rejects_bad_input(sqlite_url) -> None:
    async with outbox_node(sqlite_url, run=False) as node:
        for target, key, payload in [
            ("", "k", {}), ("t" * 65, "k", {}), ("t", "", {}), ("t", "k" * 192, {}), ("t", " k", {}),
            ("t", "k", []), ("t", "k", {"x": object()}), ("t", "k", {"x": float("nan")}),
        ]:
            with pytest.raises(ValueError):
                await node.outbox.enqueue(target, key, payload)  # type: ignore[arg-type]
        assert await node.states() == {}


async def test_health_reports_counts_and_writer_figures(sqlite_url) -> None:
    async with outbox_node(sqlite_url, senders={"t": (RecordingSender(), False)}) as node:
        await wait_until(lambda: node.outbox.health()["state"] == "running")
        for n in range(4):
            await node.outbox.enqueue("t", f"k{n}", {"n": n})
        await node.outbox.refresh_counts()
        health = node.outbox.health()
    assert health["ok"] is True
    assert health["targets"]["t"]["pending"] == 4 and health["targets"]["t"]["enabled"] is False
    assert health["writer"]["rows"] == 4 and health["writer"]["batches"] <= 4


async def test_cancelling_the_dispatcher_stops_it_even_when_the_driver_replaces_the_cancellation(
    sqlite_url, monkeypatch
) -> None:
    # A driver cut off mid-statement may fail its cleanup and raise its own error instead of
    # CancelledError; the dispatcher must not take that for a store outage and go on forever.
    async def claim_cut_off(*args, **kwargs):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise sa.exc.InterfaceError("ROLLBACK", {}, Exception("connection in an unknown state")) from None
        return []

    async with outbox_node(sqlite_url, senders={"t": (RecordingSender(), True)}, run=False) as node:
        await node.outbox.enqueue("t", "k1", {"n": 1})
        monkeypatch.setattr(node.outbox.queries, "claim", claim_cut_off)
        task = asyncio.create_task(node.outbox.run())
        await asyncio.sleep(0.2)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done and task.cancelled()
