"""Additive schema upgrade: create missing tables, add missing columns, never drop or alter.

This is what lets the daemon share a database with Asterisk's own realtime tables: on an
Asterisk-managed ``ps_contacts`` it adds only the columns telephonyd owns and touches nothing else.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

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
            table.create(conn)
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
                index.create(conn)
                changes.append(f"created index {index.name}")
    for change in changes:
        log.info("schema upgrade", extra={"change": change})
    return changes
