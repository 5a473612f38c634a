"""`Store.write` and `Prepared`: a write transaction as one plain function, on SQLite one hand-over to
the store's writer thread (urgent work first, a cancelled caller's work rolled back), on MariaDB
through the async engine; and the outbox's enqueue batches on top of it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa

from telephonyd.outbox import metadata
from telephonyd.outbox.schema import outbox as outbox_table
from telephonyd.store import Prepared, Store
from telephonyd.store.writer import SQLiteWriter
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


@pytest.fixture
def writer_transactions(monkeypatch) -> list[int]:
    """One entry per transaction run by a `SQLiteWriter`."""
    runs: list[int] = []
    real = SQLiteWriter._transaction

    def counted(self: SQLiteWriter, job: Any) -> Any:
        runs.append(1)
        return real(self, job)

    monkeypatch.setattr(SQLiteWriter, "_transaction", counted)
    return runs


@pytest.fixture
async def store(store_url) -> AsyncIterator[Store]:
    store = Store(store_url, schemas=[metadata])
    await store.start()
    yield store
    await store.close()


def _row(key: str) -> dict[str, Any]:
    return {"target": "t", "key": key, "payload": "{}", "state": "pending", "attempts": 0,
            "next_attempt_at": 0.0, "created_at": 0.0, "updated_at": 0.0}  # fmt: skip


async def _keys(store: Store) -> set[str]:
    async with store.connect() as conn:
        return set((await conn.execute(sa.select(outbox_table.c["key"]))).scalars())


def _insert(key: str):
    def work(conn: sa.Connection) -> int:
        return conn.execute(sa.insert(outbox_table), [_row(key)]).rowcount

    return work


# -- Store.write on both stores ---------------------------------------------------------------------


async def test_write_commits_what_returns_and_rolls_back_what_raises(store) -> None:
    assert await store.write(_insert("kept")) == 1

    def fails_after_insert(conn: sa.Connection) -> None:
        _insert("rolled-back")(conn)
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError, match="handler bug"):
        await store.write(fails_after_insert)
    with pytest.raises(sa.exc.IntegrityError):  # the database's errors arrive as SQLAlchemy's
        await store.write(_insert("kept"))
    assert await _keys(store) == {"kept"}


async def test_prepared_statements_run_on_both_stores_and_check_their_parameters(store) -> None:
    insert = Prepared(store.insert_ignore(outbox_table).values(
        target="t", key=sa.bindparam("b_key"), payload="{}", state="pending", attempts=0,
        next_attempt_at=0.0, created_at=0.0, updated_at=0.0))
    select = Prepared(sa.select(outbox_table.c["key"], outbox_table.c.attempts).where(
        outbox_table.c["key"] == sa.bindparam("b_key")))

    def work(conn: sa.Connection) -> tuple[int, int, Any, int]:
        first = insert.execute(conn, {"b_key": "a"}).rowcount
        again = insert.execute(conn, {"b_key": "a"}).rowcount  # ignored: the key exists
        found = select.execute(conn, {"b_key": "a"}).fetchone()
        many = insert.executemany(conn, [{"b_key": "b"}, {"b_key": "c"}, {"b_key": "a"}])
        return first, again, tuple(found), many

    assert await store.write(work) == (1, 0, ("a", 0), 2)
    with pytest.raises(sa.exc.ArgumentError, match="b_key"):
        await store.write(lambda conn: insert.execute(conn, {}))
    assert await _keys(store) == {"a", "b", "c"}


# -- the SQLite writer thread -----------------------------------------------------------------------


async def test_urgent_work_goes_ahead_of_queued_background_work(sqlite_url) -> None:
    store = Store(sqlite_url, schemas=[metadata])
    await store.start()
    try:
        held, order = threading.Event(), []

        def blocker(conn: sa.Connection) -> None:
            held.wait(5)

        def note(name: str):
            def work(conn: sa.Connection) -> None:
                order.append(name)
            return work

        first = asyncio.ensure_future(store.write(blocker))
        await asyncio.sleep(0.05)  # the writer thread is inside `blocker` now
        later = [asyncio.ensure_future(store.write(note("claim-1"))),
                 asyncio.ensure_future(store.write(note("ack"), urgent=True)),
                 asyncio.ensure_future(store.write(note("claim-2")))]
        await asyncio.sleep(0.05)
        held.set()
        await asyncio.gather(first, *later)
        assert order == ["ack", "claim-1", "claim-2"]
    finally:
        await store.close()


async def test_a_caller_that_stops_waiting_gets_its_transaction_rolled_back(sqlite_url) -> None:
    store = Store(sqlite_url, schemas=[metadata])
    await store.start()
    try:
        inside, release = threading.Event(), threading.Event()

        def slow_insert(conn: sa.Connection) -> None:
            _insert("abandoned")(conn)
            inside.set()
            release.wait(5)

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await store.write(slow_insert)
        assert inside.is_set()
        release.set()
        assert await store.write(_insert("next")) == 1  # the writer went on
        assert await _keys(store) == {"next"}
    finally:
        await store.close()


async def test_close_finishes_the_queued_transactions(sqlite_url) -> None:
    store = Store(sqlite_url, schemas=[metadata])
    await store.start()
    writes = [asyncio.ensure_future(store.write(_insert(f"k{n}"))) for n in range(20)]
    await asyncio.sleep(0)
    await store.close()
    assert await asyncio.gather(*writes) == [1] * 20
    await store.start()
    try:
        assert len(await _keys(store)) == 20
    finally:
        await store.close()


async def test_an_enqueue_batch_is_one_writer_transaction_and_no_driver_trip(
    sqlite_url, driver_trips, writer_transactions
) -> None:
    async with outbox_node(sqlite_url, run=False) as node:
        await node.outbox.enqueue("t", "warm-up", {"n": 0})
        driver_trips.clear()
        writer_transactions.clear()
        results = await asyncio.gather(*(node.outbox.enqueue("t", f"k{n}", call_result(f"k{n}")) for n in range(50)))
        batches = node.outbox.health()["writer"]["batches"] - 1
        assert all(r.created for r in results)
        assert batches >= 1 and len(writer_transactions) == batches
        assert driver_trips == []


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


async def test_pooled_connections_come_back_without_a_transaction(sqlite_url) -> None:
    store = Store(sqlite_url, schemas=[metadata])
    await store.start()
    try:
        # A block that fails rolls back; a read block ends its snapshot; a committed block commits.
        with pytest.raises(RuntimeError):
            async with store.begin() as conn:
                await conn.execute(sa.insert(outbox_table), [_row("rolled-back")])
                raise RuntimeError("handler bug")
        assert await _keys(store) == set()
        async with store.begin() as conn:
            await conn.execute(sa.insert(outbox_table), [_row("committed")])
        # The writer thread's connection and a second store (its own pool) write meanwhile: every
        # pooled connection must see it, which one left inside an old read transaction would not.
        await store.write(_insert("from-the-writer"))
        other = Store(store.url, schemas=[metadata])
        await other.start()
        try:
            async with other.begin() as conn:
                await conn.execute(sa.insert(outbox_table), [_row("from-elsewhere")])
        finally:
            await other.close()
        for _ in range(3):
            assert await _keys(store) == {"committed", "from-the-writer", "from-elsewhere"}
        async with store.connect() as conn:
            raw = await conn.get_raw_connection()
            in_transaction = await raw.driver_connection._execute(lambda: raw.driver_connection._conn.in_transaction)
        assert in_transaction is False
    finally:
        await store.close()


async def test_a_database_locked_by_another_process_is_sqlalchemys_error_and_the_writer_goes_on(
    sqlite_url, tmp_path, monkeypatch
) -> None:
    import sqlite3

    monkeypatch.setattr("telephonyd.store.writer.BUSY_TIMEOUT_S", 0.05)
    writer = SQLiteWriter(sa.make_url(sqlite_url), lambda dbapi_conn, record: None)  # no busy_timeout pragma
    blocker = sqlite3.connect(tmp_path / "telephonyd.db", isolation_level=None)
    try:
        await writer.run(lambda conn: conn.exec_driver_sql("CREATE TABLE t (k TEXT)"))
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
        with pytest.raises(sa.exc.OperationalError, match="database is locked"):
            await writer.run(lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES ('blocked')"))
        blocker.execute("COMMIT")
        await writer.run(lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES ('next')"))
        assert blocker.execute("SELECT k FROM t").fetchall() == [("next",)]
    finally:
        blocker.close()
        writer.close()


def test_begin_on_a_closed_driver_connection_invalidates_it(sqlite_url) -> None:
    writer = SQLiteWriter(sa.make_url(sqlite_url), lambda dbapi_conn, record: None)
    try:
        conn = writer.engine.connect()
        conn.connection.dbapi_connection.close()
        with pytest.raises(sa.exc.ProgrammingError, match="closed database"):
            conn.begin()
        assert conn.invalidated
        conn.close()
        with writer.engine.connect() as fresh, fresh.begin():  # a new driver connection works
            assert fresh.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        writer.close()
