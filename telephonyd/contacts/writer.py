"""Batched ``ps_contacts`` writes: a few statements per batch whatever its size.

Every write is one plain function over a synchronous connection (`ContactsWriter.write_batch`),
run as one `Store.write` transaction (`ContactsWriter.apply`; on SQLite on the store's writer
thread, like every other write of the process). Reads use the async engine.

- Rows (owned mode): one DELETE of the ids (this reg_server only), then one multi-row INSERT that
  skips a row whose id another reg_server holds (``id`` is unique on its own in Asterisk's schema;
  such a clash is counted and logged, never overwritten).
- Status columns: one UPDATE with ``CASE id WHEN ... THEN ...`` per chunk, by id (and reg_server in
  owned mode); in asterisk mode Asterisk's own row is updated wherever its reg_server points.
- Deletes: one DELETE ... WHERE reg_server = ours AND id IN (...).
Chunks of `CHUNK` ids keep statements under SQLite's bound-parameter limit.

A table created by an older Asterisk may lack newer Asterisk columns (``qualify_2xx_only`` came in
22.2/21.7/20.12); `prepare` reads which exist and only those are read and written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import StoreError
from ..store import Store
from .model import FIELDS, Contact
from .schema import OWN_COLUMNS, ps_contacts
from .state import ReconcilePlan, Scope, plan_reconcile, stamp

log = logging.getLogger(__name__)

CHUNK = 500


def _chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:  # type: ignore[type-arg]
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ContactsWriter:
    """Reads and writes this instance's ``ps_contacts`` rows.

    ``reg_server`` scopes every read and delete in owned mode. ``owned`` False (asterisk mode)
    restricts writes to the status columns of rows Asterisk created.
    """

    def __init__(self, store: Store, *, reg_server: str, owned: bool) -> None:
        self.store = store
        self.reg_server = reg_server
        self.owned = owned
        self.table = ps_contacts
        self.clashes = 0
        self.columns: tuple[str, ...] = FIELDS
        self._select = sa.select(ps_contacts)

    async def prepare(self) -> None:
        """Learn which columns the existing table has (raises `StoreError`/SQLAlchemy errors)."""
        async with self.store.connect() as conn:
            names = await conn.run_sync(
                lambda sync: {c["name"].lower() for c in sa.inspect(sync).get_columns(self.table.name)})
        missing = [name for name in FIELDS if name not in names]
        for needed in ("id", "reg_server", *OWN_COLUMNS):
            if needed in missing:
                raise StoreError(f"ps_contacts has no {needed} column")
        if missing:
            log.warning("ps_contacts lacks columns of newer Asterisk versions; they are left out",
                        extra={"missing": missing})
        self.columns = tuple(name for name in FIELDS if name in names)
        self._select = sa.select(*(self.table.c[name] for name in self.columns))

    def _row(self, contact: Contact) -> dict[str, object]:
        row = contact.replace(reg_server=self.reg_server).row()
        if len(self.columns) != len(FIELDS):
            row = {name: row[name] for name in self.columns}
        return row

    async def reconcile(self, listed: Mapping[str, Contact], *, scope: Scope) -> tuple[ReconcilePlan, dict[str, Contact]]:
        """Make the rows in ``scope`` match a listing; the changes are written in ONE transaction.

        Reads this reg_server's rows (owned) or the listed ids' rows (asterisk mode), plans off the
        event loop, then writes the plan with `apply` (`Store.write`). The read is not part of the
        write transaction: only this instance writes its reg_server's rows (owned), and asterisk
        mode writes the status columns by id, which is right whatever Asterisk did meanwhile.
        Planning outside the transaction keeps SQLite's write lock (which a call's outbox row also
        needs) free while a 50,000-contact listing is compared. Returns the plan and the listed
        contacts stamped with their ``status_updated_at``.
        """
        async with self.store.connect() as conn:
            rows = await self.load_own(conn) if self.owned else await self.load_ids(conn, list(listed))
        # Pure and O(listing): off the event loop (50,000 contacts hold it for hundreds of ms).
        stamped, plan = await asyncio.to_thread(self._plan, rows, listed, scope)
        await self.apply(new_rows=plan.added, rows=plan.changed, statuses=plan.status_changed, deletes=plan.removed)
        return plan, stamped

    def _plan(self, rows: Mapping[str, Contact], listed: Mapping[str, Contact],
              scope: Scope) -> tuple[dict[str, Contact], ReconcilePlan]:
        stamped = stamp(listed, rows, time.time())
        return stamped, plan_reconcile(rows, stamped, owned=self.owned, scope=scope)

    async def stale_statuses(self, contacts: Mapping[str, Contact]) -> list[Contact]:
        """Those of ``contacts`` whose row exists with another status (asterisk mode's sweep)."""
        if not contacts:
            return []
        async with self.store.connect() as conn:
            rows = await self.load_ids(conn, list(contacts))
        return [contacts[cid] for cid, row in rows.items() if row.status != contacts[cid].status]

    async def load_own(self, conn: AsyncConnection) -> dict[str, Contact]:
        """Every row of this reg_server."""
        t = self.table
        result = await conn.execute(self._select.where(t.c.reg_server == self.reg_server))
        return {row.id: Contact.from_row(row) for row in result}

    async def load_ids(self, conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Contact]:
        """The rows with these ids, whoever wrote them."""
        t = self.table
        rows: dict[str, Contact] = {}
        for chunk in _chunks(list(ids)):
            result = await conn.execute(self._select.where(t.c.id.in_(chunk)))
            rows.update((row.id, Contact.from_row(row)) for row in result)
        return rows

    async def apply(
        self,
        *,
        rows: Sequence[Contact] = (),
        statuses: Sequence[Contact] = (),
        deletes: Sequence[str] = (),
        new_rows: Sequence[Contact] = (),
    ) -> int:
        """Apply one batch in a transaction of its own (`Store.write`: on SQLite the store's writer
        thread, so it queues with the other writes of the process instead of meeting them on
        SQLite's lock); returns the statements executed. Arguments as `write_batch`. Raises what
        the store raises (SQLAlchemy errors, `StoreError`); nothing is written then.
        """
        return await self.store.write(lambda conn: self.write_batch(conn, rows=rows, statuses=statuses,
                                                                    deletes=deletes, new_rows=new_rows))

    def write_batch(
        self,
        conn: sa.Connection,
        *,
        rows: Sequence[Contact] = (),
        statuses: Sequence[Contact] = (),
        deletes: Sequence[str] = (),
        new_rows: Sequence[Contact] = (),
    ) -> int:
        """Apply one batch inside the transaction of ``conn`` (a `Store.write` work function's
        connection); returns the statements executed.

        ``rows`` replace this reg_server's rows of the same id; ``new_rows`` are known to have none
        (a resync just read the table), so they skip the DELETE. Touches nothing but ``conn`` and the
        ``clashes`` count.
        """
        statements = 0
        t = self.table
        if self.owned:
            gone = [c.id for c in rows] + list(deletes)
            for chunk in _chunks(gone):
                conn.execute(t.delete().where(t.c.reg_server == self.reg_server, t.c.id.in_(chunk)))
                statements += 1
            if rows or new_rows:
                contacts = [*rows, *new_rows]
                inserted = 0
                # In chunks, each built just before it is sent: on MariaDB the driver formats a
                # statement's values on the event loop (`Store.write` runs there through
                # ``run_sync``), so one statement (or building every row first) for a 50,000-row
                # resync would hold it for hundreds of ms.
                for chunk in _chunks(contacts):
                    values = [self._row(c) for c in chunk]
                    result = conn.execute(self.store.insert_ignore(t), values)
                    statements += 1
                    inserted += result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(chunk)
                if inserted < len(contacts):
                    self.clashes += len(contacts) - inserted
                    log.warning("ps_contacts ids held by another reg_server were left alone",
                                extra={"skipped": len(contacts) - inserted, "reg_server": self.reg_server})
        else:
            statuses = [*statuses, *rows, *new_rows]
        for chunk in _chunks(list({c.id: c for c in statuses}.values())):
            sql, params = self._status_update(chunk)
            conn.exec_driver_sql(sql, params)
            statements += 1
        return statements

    def _status_update(self, contacts: Sequence[Contact]) -> tuple[str, tuple[object, ...]]:
        """``UPDATE ... SET status = CASE id WHEN ? THEN ? ... END, ...`` for one chunk.

        Written as SQL text with driver placeholders: building the same statement from SQLAlchemy
        constructs costs ten times the database's own work for a few hundred rows.
        """
        mark = "?" if self.store.dialect == "sqlite" else "%s"
        case = "CASE id " + " ".join(f"WHEN {mark} THEN {mark}" for _ in contacts) + " END"
        where = f"id IN ({', '.join([mark] * len(contacts))})"
        params: list[object] = []
        for column in ("status", "roundtrip_usec", "status_updated_at"):
            for contact in contacts:
                params += (contact.id, getattr(contact, column))
        params += [c.id for c in contacts]
        if self.owned:
            where += f" AND reg_server = {mark}"
            params.append(self.reg_server)
        sql = (f"UPDATE {self.table.name} SET status = {case}, roundtrip_usec = {case}, "
               f"status_updated_at = {case} WHERE {where}")
        return sql, tuple(params)

