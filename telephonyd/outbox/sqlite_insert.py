"""New outbox rows on SQLite in one trip to the driver's thread.

aiosqlite runs each SQLite call on a thread of its own and hands every result back to the event
loop; through SQLAlchemy an enqueue batch (read the clock, insert, look the keys up, commit, reset
the pooled connection) costs thirteen such round trips, each waiting for a turn of a busy event
loop and costing it a wake-up. Here the whole transaction (``BEGIN IMMEDIATE``, the clock read,
the insert, the lookups, ``COMMIT``) is one function run on the driver's thread of a connection
taken from the store's pool, which returns it without a ROLLBACK trip (see `Store`).

Durability is the store's: WAL with ``synchronous=FULL``, and the batch's callers are answered only
after the COMMIT returned. A failure rolls back on the thread before the error comes back. A caller
cancelled meanwhile (the writer's timeout) leaves the function to finish on its own, committing or
rolling back; whoever takes the connection next queues behind it on the same thread.

The statements are compiled once from the table definition (``schema.outbox``) and
``Store.now_expr()``, so they follow the schema. The trip uses aiosqlite's own queue
(``Connection._execute``, much as SQLAlchemy's aiosqlite dialect sets isolation levels); when the
driver connection offers no such queue, `SQLiteInsert.run` returns None having done nothing, and
the caller takes the portable SQLAlchemy path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..errors import StoreError
from .model import PENDING
from .schema import outbox as t

if TYPE_CHECKING:
    from ..store import Store
    from .queries import NewRow

#: (target, key) -> (row id, inserted by this batch)
Found = dict[tuple[str, str], tuple[int, bool]]

_COLUMNS = (
    "target", "key", "payload", "state", "attempts", "next_attempt_at", "created_at", "updated_at",
    "node_id", "log_context", "enqueue_batch",
)  # fmt: skip


class SQLiteInsert:
    """The insert-or-ignore of one enqueue batch as one transaction on the aiosqlite thread.

    ``store``: a `Store` on SQLite (its ``now_expr`` and ``insert_ignore`` give the statements).
    """

    def __init__(self, store: Store) -> None:
        dialect = sqlite_dialect.dialect()  # qmark parameters, as sqlite3 takes them
        compiled_insert = store.insert_ignore(t).compile(dialect=dialect, column_keys=list(_COLUMNS))
        lookup = sa.select(t.c.id, t.c.enqueue_batch).where(
            t.c.target == sa.bindparam("target"), t.c["key"] == sa.bindparam("key")
        )
        compiled_lookup = lookup.compile(dialect=dialect)
        if list(compiled_lookup.positiontup or ()) != ["target", "key"]:
            raise AssertionError(f"unexpected outbox lookup parameters {compiled_lookup.positiontup}")
        self.insert_sql = str(compiled_insert)
        self.insert_order: tuple[str, ...] = tuple(compiled_insert.positiontup or ())
        self.lookup_sql = str(compiled_lookup)
        self.now_sql = str(sa.select(store.now_expr()).compile(dialect=dialect))

    async def run(self, store: Store, rows: Sequence[NewRow], node_id: str, batch: str) -> Found | None:
        """Insert-or-ignore ``rows`` (distinct (target, key), in lock order) and COMMIT; None when
        the driver offers no thread queue (nothing was done).

        Raises `StoreError` for an SQLite failure (busy past the busy timeout, disk full, ...) and
        what `Store.connect` raises when no connection can be had.
        """
        async with store.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            submit = getattr(driver, "_execute", None)
            if submit is None or not hasattr(driver, "_conn"):
                return None
            try:
                return await submit(self._write, driver._conn, rows, node_id, batch)
            except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's "Connection closed"
                raise StoreError(f"outbox insert failed: {type(exc).__name__}: {exc}") from exc

    def _write(self, db: sqlite3.Connection, rows: Sequence[NewRow], node_id: str, batch: str) -> Found:
        """On the driver's thread: take the write lock, insert, find every key's row, commit."""
        if db.in_transaction:
            # Left open by an earlier user (the pool does no ROLLBACK on return): end it, as that
            # reset would have, rather than commit someone else's work with ours.
            db.rollback()
        # IMMEDIATE: wait (busy timeout) for the write lock first, rather than fail with
        # SQLITE_BUSY_SNAPSHOT when a read snapshot would have to become a write.
        db.execute("BEGIN IMMEDIATE")
        committed = False
        try:
            now = float(db.execute(self.now_sql).fetchone()[0])
            order = self.insert_order
            params = []
            for r in rows:
                values = {
                    "target": r.target, "key": r.key, "payload": r.payload, "state": PENDING, "attempts": 0,
                    "next_attempt_at": now, "created_at": now, "updated_at": now, "node_id": node_id,
                    "log_context": r.context, "enqueue_batch": batch,
                }  # fmt: skip
                params.append(tuple(values[name] for name in order))
            db.executemany(self.insert_sql, params)
            found: Found = {}
            lookup = self.lookup_sql
            for r in rows:
                rec = db.execute(lookup, (r.target, r.key)).fetchone()
                if rec is not None:
                    found[(r.target, r.key)] = (int(rec[0]), rec[1] == batch)
            db.commit()
            committed = True
        finally:
            if not committed:
                db.rollback()
        return found
