"""Enqueue batches on SQLite: the whole transaction is one trip to the driver's thread, the
answers are those of the portable path, a failed batch leaves nothing behind, and pooled
connections come back clean without the pool's own ROLLBACK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa

from telephonyd.errors import StoreError
from telephonyd.outbox import metadata
from telephonyd.outbox.queries import NewRow
from telephonyd.outbox.schema import outbox as outbox_table
from telephonyd.outbox.sqlite_insert import SQLiteInsert
from telephonyd.store import Store
from tests.outbox_harness import call_result, outbox_node


@pytest.fixture
def driver_trips(monkeypatch) -> list[str]:
    """Names of the functions run on aiosqlite's threads, in order."""
    trips: list[str] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return trips


async def test_a_batch_is_one_trip_to_the_driver_thread(sqlite_url, driver_trips) -> None:
    async with outbox_node(sqlite_url, run=False) as node:
        await node.outbox.enqueue("t", "warm-up", {"n": 0})
        driver_trips.clear()
        results = await asyncio.gather(*(node.outbox.enqueue("t", f"k{n}", call_result(f"k{n}")) for n in range(50)))
        batches = node.outbox.health()["writer"]["batches"] - 1
        assert all(r.created for r in results)
        # No trip per statement, none for the COMMIT, no ROLLBACK when the connection returns.
        assert batches >= 1 and driver_trips == ["_write"] * batches


async def test_duplicates_in_and_across_batches_get_the_holding_row(sqlite_url) -> None:
    async with outbox_node(sqlite_url, run=False) as node:
        first = await node.outbox.enqueue("t", "1795300000.1", {"n": 1})
        again = await asyncio.gather(
            node.outbox.enqueue("t", "1795300000.1", {"n": 2}),
            node.outbox.enqueue("t", "1795300000.2", {"n": 3}),
            node.outbox.enqueue("t", "1795300000.2", {"n": 4}),
            node.outbox.enqueue("u", "1795300000.1", {"n": 5}),
        )
        rows = {(r["target"], r["key"]): r for r in await node.outbox.list_rows()}
    assert first.created and again[0] == (first.id, False)
    assert again[1].created and again[2] == (again[1].id, False)
    assert again[3].created and again[3].id not in (first.id, again[1].id)
    assert rows[("t", "1795300000.1")]["payload"] == {"n": 1}
    assert rows[("t", "1795300000.2")]["payload"] == {"n": 3}
    assert rows[("u", "1795300000.1")]["id"] == again[3].id
    assert {r["state"] for r in rows.values()} == {"pending"}


async def test_a_batch_failing_after_its_insert_leaves_nothing_and_the_next_one_works(sqlite_url, monkeypatch) -> None:
    async with outbox_node(sqlite_url, run=False) as node:
        fast = node.outbox.queries._sqlite_insert
        assert fast is not None
        good_lookup = fast.lookup_sql
        monkeypatch.setattr(fast, "lookup_sql", good_lookup.replace("enqueue_batch", "no_such_column"))
        with pytest.raises(StoreError) as err:
            await node.outbox.enqueue("t", "lost", {"n": 1})
        assert err.value.retryable is True and "no_such_column" in str(err.value)
        assert await node.states() == {}
        monkeypatch.setattr(fast, "lookup_sql", good_lookup)
        assert (await node.outbox.enqueue("t", "lost", {"n": 1})).created
        assert (await node.outbox.enqueue("t", "kept", {"n": 2})).created
        assert await node.states() == {"lost": "pending", "kept": "pending"}


class _NoQueueDriver:
    """A driver connection without aiosqlite's thread queue."""


class _Raw:
    driver_connection = _NoQueueDriver()


class _Conn:
    async def get_raw_connection(self) -> _Raw:
        return _Raw()


class _StoreOfOtherDriver:
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[_Conn]:
        yield _Conn()


async def test_without_a_driver_queue_nothing_is_done(sqlite_url) -> None:
    store = Store(sqlite_url, schemas=[metadata])
    fast = SQLiteInsert(store)
    row = NewRow("t", "k", "{}", None)
    assert await fast.run(_StoreOfOtherDriver(), [row], "node", "batch") is None  # type: ignore[arg-type]


async def test_the_portable_path_gives_the_same_answers_on_sqlite(sqlite_url, monkeypatch, driver_trips) -> None:
    async def no_queue(*args: Any) -> None:
        return None

    async with outbox_node(sqlite_url, run=False) as node:
        fast = node.outbox.queries._sqlite_insert
        assert fast is not None
        monkeypatch.setattr(fast, "run", no_queue)
        first = await node.outbox.enqueue("t", "1795300000.1", {"n": 1})
        again = await asyncio.gather(
            node.outbox.enqueue("t", "1795300000.1", {"n": 2}),
            node.outbox.enqueue("t", "1795300000.2", {"n": 3}),
            node.outbox.enqueue("t", "1795300000.2", {"n": 4}),
        )
        assert await node.states() == {"1795300000.1": "pending", "1795300000.2": "pending"}
    assert "_write" not in driver_trips
    assert first.created and again[0] == (first.id, False)
    assert again[1].created and again[2] == (again[1].id, False)


@pytest.fixture
async def store(sqlite_url) -> AsyncIterator[Store]:
    store = Store(sqlite_url, schemas=[metadata])
    await store.start()
    yield store
    await store.close()


def _row(key: str) -> dict[str, Any]:
    return {"target": "t", "key": key, "payload": "{}", "state": "pending", "attempts": 0,
            "next_attempt_at": 0.0, "created_at": 0.0, "updated_at": 0.0}  # fmt: skip


async def _keys(store: Store) -> set[str]:
    async with store.connect() as conn:
        return set((await conn.execute(sa.select(outbox_table.c["key"]))).scalars())


async def test_pooled_connections_come_back_without_a_transaction(store) -> None:
    # A block that fails rolls back; a read block ends its snapshot; a committed block commits.
    with pytest.raises(RuntimeError):
        async with store.begin() as conn:
            await conn.execute(sa.insert(outbox_table), [_row("rolled-back")])
            raise RuntimeError("handler bug")
    assert await _keys(store) == set()
    async with store.begin() as conn:
        await conn.execute(sa.insert(outbox_table), [_row("committed")])
    # A second store (its own pool) writes meanwhile: every pooled connection of the first one
    # must see it, which a connection left inside an old read transaction would not.
    other = Store(store.url, schemas=[metadata])
    await other.start()
    try:
        async with other.begin() as conn:
            await conn.execute(sa.insert(outbox_table), [_row("from-elsewhere")])
    finally:
        await other.close()
    for _ in range(3):
        assert await _keys(store) == {"committed", "from-elsewhere"}
    async with store.connect() as conn:
        raw = await conn.get_raw_connection()
        in_transaction = await raw.driver_connection._execute(lambda: raw.driver_connection._conn.in_transaction)
    assert in_transaction is False
