"""Additive schema upgrade: create missing tables, add missing columns, never drop or alter.

This is what lets the daemon share a database with Asterisk's own realtime tables: on an
Asterisk-managed ``ps_contacts`` it adds only the columns telephonyd owns and touches nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import StoreError

log = logging.getLogger(__name__)


def ensure_schema(conn: sa.Connection, metadata: sa.MetaData) -> list[str]:
    """Create ``metadata``'s missing tables and add missing columns. Returns what it changed.

    Columns tagged ``info={"owner": "asterisk"}`` are created with a new table but never added to an
    existing one: that table is Asterisk's, upgraded by Asterisk's own migrations.

    Runs inside a sync connection (``AsyncConnection.run_sync``). Added columns must be nullable or
    carry a ``server_default``; indexes of existing tables are created when missing.
    """
    changes: list[str] = []
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            _create(conn, table)
            changes.append(f"created table {table.name}")
            continue
        have = {c["name"].lower() for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name.lower() in have:
                continue
            if column.info.get("owner") == "asterisk":
                # A column of a table Asterisk owns (ps_contacts): its own alembic adds it, and
                # would fail on a duplicate if we had added it first.
                continue
            ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {conn.dialect.identifier_preparer.quote(table.name)} ADD COLUMN {ddl}"))
            changes.append(f"added column {table.name}.{column.name}")
        have_indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name and index.name not in have_indexes:
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=_if_not_exists_index(conn)))
                changes.append(f"created index {index.name}")
    for change in changes:
        log.info("schema upgrade", extra={"change": change})
    return changes


def _if_not_exists_index(conn: sa.Connection) -> bool:
    """``CREATE INDEX IF NOT EXISTS`` is SQLite's and MariaDB's (10.1.4+), not MySQL's."""
    return conn.dialect.name == "sqlite" or bool(getattr(conn.dialect, "is_mariadb", False))


def _create(conn: sa.Connection, table: sa.Table) -> None:
    """``CREATE TABLE IF NOT EXISTS`` and its indexes: another instance creating the same table at
    the same moment (on Galera, through another node, where the named schema lock does not reach)
    costs a note instead of errors 1050/1061.

    Raises `StoreError` (permanent) when the server requires a primary key
    (``wsrep_mode=REQUIRED_PRIMARY_KEY``, MariaDB error 4165) and the table has none.
    """
    try:
        conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
    except sa.exc.DBAPIError as exc:
        args = getattr(exc.orig, "args", ())
        if args and args[0] == REQUIRED_PRIMARY_KEY_ERROR:
            raise StoreError(primary_key_refusal(table.name), retryable=False) from None
        raise
    for index in table.indexes:
        conn.execute(sa.schema.CreateIndex(index, if_not_exists=_if_not_exists_index(conn)))


#: MariaDB: "Galera replication not supported" for a table without a primary key under
#: ``wsrep_mode=REQUIRED_PRIMARY_KEY`` (MariaDB 10.6+, ER_GALERA_REPLICATION_NOT_SUPPORTED).
REQUIRED_PRIMARY_KEY_ERROR = 4165


def primary_key_refusal(table: str) -> str:
    """The operator's message when the server refuses ``table`` for lacking a primary key."""
    if table == "ps_contacts":
        return ("the database refuses table ps_contacts without a primary key (error 4165, "
                "wsrep_mode=REQUIRED_PRIMARY_KEY): Asterisk's schema has none. Set ps_contacts.url to a "
                "plain MariaDB (not Galera), or use ps_contacts.mode: owned, where the table is created "
                "with PRIMARY KEY (id)")
    return f"the database refuses table {table} without a primary key (error 4165, wsrep_mode=REQUIRED_PRIMARY_KEY)"


#: The MariaDB/MySQL named lock held while the schema is checked and created.
SCHEMA_LOCK = "telephonyd_schema"


@asynccontextmanager
async def schema_lock(conn: AsyncConnection, dialect: str, timeout_s: float) -> AsyncIterator[bool]:
    """Hold ``GET_LOCK('telephonyd_schema', timeout)`` on ``conn`` (MariaDB/MySQL) for the block, so
    instances starting together create the schema one after the other; yields whether it was got.

    Not got within ``timeout_s`` (a peer stuck holding it), the schema is ensured anyway: every
    CREATE is IF NOT EXISTS. SQLite has no named locks (its writer lock already serializes DDL).
    A Galera node's named locks are its own: instances starting through different nodes are kept
    apart by IF NOT EXISTS only.
    """
    if dialect != "mysql":
        yield True
        return
    got = (await conn.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"),
                              {"name": SCHEMA_LOCK, "timeout": max(0, int(timeout_s))})).scalar()
    if got != 1:
        log.warning("schema lock not obtained; creating the schema without it", extra={"lock": SCHEMA_LOCK})
    try:
        yield got == 1
    finally:
        if got == 1:
            await conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": SCHEMA_LOCK})
