"""When a store that refused writes counts as accepting them again (`telephonyd.store.refusal`).

With the write probe (the daemon's store), a small write of the traffic does not end the refusal:
on a nearly full disk SQLite still fits a one-page UPDATE while a call's record is refused, and
readiness must not flap on that. Only the probe's padded write does. Without the probe, a write
that changed rows does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from telephonyd.store.engine import Store
from telephonyd.store.refusal import PROBE_PAD_BYTES, probe_table

metadata = sa.MetaData()
notes = sa.Table("notes", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("text", sa.String(40)))


def add_note(i: int):
    def work(conn: sa.Connection) -> None:
        conn.execute(sa.insert(notes).values(id=i, text="n"))
    return work


async def test_with_the_probe_only_the_probe_ends_a_refusal(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/t.db", schemas=[metadata], write_probe=True)
    await store.start()
    try:
        store.write_state.refused("database or disk is full")
        await store.write(add_note(1))  # a small write fits: not proof that the store takes traffic
        assert store.write_state.reason == "database or disk is full"
        assert await store.accepts_writes() is True  # the probe's padded write went through
        assert store.write_state.reason is None and store.write_state.since is None

        def probe_rows(conn: sa.Connection) -> list[tuple[str, int]]:
            return [(r.holder, len(r.pad)) for r in conn.execute(sa.select(probe_table.c.holder, probe_table.c.pad))]
        assert await store.write(probe_rows) == [(store.write_state.holder, PROBE_PAD_BYTES)]
    finally:
        await store.close()


async def test_a_probe_is_not_retried_within_its_interval(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/t.db", schemas=[metadata], write_probe=True)
    await store.start()
    try:
        store.write_state.refused("database or disk is full")
        assert await store.accepts_writes() is True
        store.write_state.refused("database or disk is full")  # refused again at once
        assert await store.accepts_writes() is False  # next probe not due yet: still refusing
    finally:
        await store.close()


async def test_without_the_probe_a_write_that_changed_rows_ends_a_refusal(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/t.db", schemas=[metadata])
    await store.start()
    try:
        store.write_state.refused("database or disk is full")
        assert await store.accepts_writes() is False  # nothing to probe with

        def nothing(conn: sa.Connection) -> None:
            conn.execute(sa.delete(notes).where(notes.c.id == 99))  # changes no row
        await store.write(nothing)
        assert store.write_state.reason is not None
        await store.write(add_note(1))
        assert store.write_state.reason is None and await store.accepts_writes() is True
    finally:
        await store.close()


async def test_an_older_probe_table_gets_its_pad_column(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as db:  # the probe table as earlier releases created it
        db.execute("CREATE TABLE store_probe (holder VARCHAR(32) NOT NULL PRIMARY KEY, at FLOAT NOT NULL)")
        db.execute("INSERT INTO store_probe VALUES ('old', 1.0)")
    store = Store(f"sqlite+aiosqlite:///{path}", schemas=[metadata], write_probe=True)
    await store.start()
    try:
        store.write_state.refused("database or disk is full")
        assert await store.accepts_writes() is True
    finally:
        await store.close()
