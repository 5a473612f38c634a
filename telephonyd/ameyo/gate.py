"""The dedupe gate: one row per callback key, claimed atomically in the caller's transaction.

`Gate.claim` is race-free on SQLite and on one MariaDB shared by several daemons: an INSERT IGNORE on
the primary key, and when the row exists, one conditional UPDATE that takes it over only if it is
stale for its state (judged on the database clock) or is ``waiting_phone2`` and this callback is
phone 2. A concurrent claimer blocks on the row lock and then finds the condition false, so exactly
one of two identical callbacks passes.

TTL per state: ``processing`` ``processing_ttl_s``, ``processed`` ``dedupe_ttl_s``,
``waiting_phone2`` ``phone1_state_ttl_s`` (phone 2 passes at any time), ``failed`` none.
Statements are compiled once per store (`Prepared`): this is on every callback's path.
`Gate.insert_many` inserts the new keys of a whole batch first, in one statement and in key order
(so concurrent instances lock keys in the same order): insert-or-ignore ... RETURNING where the
dialect has it, else a second statement reads back which rows carry this batch's request ids. Only
keys that already existed take the per-callback path.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..store import Prepared, Store
from .batch import Transaction
from .schema import FAILED, PROCESSED, PROCESSING, WAITING_PHONE2, gate


@dataclass(frozen=True)
class GateTTLs:
    processing_s: float
    processed_s: float
    waiting_phone2_s: float

    def params(self) -> dict[str, float]:
        return {"ttl_processing": self.processing_s, "ttl_processed": self.processed_s,
                "ttl_waiting": self.waiting_phone2_s}


@dataclass(frozen=True)
class Claim:
    claimed: bool
    state: str | None = None  # the state that blocked this callback


def _double(name: str) -> sa.BindParameter[float]:
    return sa.bindparam(name, type_=sa.Double())


class Gate:
    """Gate statements for one `Store` (dialect and database clock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        now = store.now_expr()
        ttl = sa.case(
            (gate.c.state == PROCESSING, _double("ttl_processing")),
            (gate.c.state == PROCESSED, _double("ttl_processed")),
            (gate.c.state == WAITING_PHONE2, _double("ttl_waiting")),
            else_=sa.literal(0.0, sa.Double()),
        )
        self.stale = sa.or_(gate.c.state == FAILED, gate.c.updated_at + ttl <= now)
        values = {"state": sa.bindparam("new_state"), "updated_at": now, "request_id": sa.bindparam("request_id"),
                  "flow": sa.bindparam("flow")}
        insert = store.insert_ignore(gate).values(gate_key=sa.bindparam("key"), **values)
        self._insert = Prepared(insert)
        # A batch's new gates: one multi-row statement (one round trip on MariaDB), not one per row.
        self._insert_many = insert
        self._insert_returning = insert.returning(gate.c.request_id)
        where_key = gate.c.gate_key == sa.bindparam("key")
        self._take_stale = Prepared(sa.update(gate).where(where_key, self.stale).values(**values))
        self._take_phone2 = Prepared(
            sa.update(gate).where(where_key, sa.or_(self.stale, gate.c.state == WAITING_PHONE2)).values(**values)
        )
        self._state_of = Prepared(sa.select(gate.c.state).where(where_key))
        self._set_state = Prepared(
            sa.update(gate)
            .where(gate.c.gate_key == sa.bindparam("b_key"), gate.c.state == sa.bindparam("b_from"))
            .values(state=sa.bindparam("b_state"), updated_at=now)
        )
        self._owners = sa.select(gate.c.gate_key, gate.c.request_id).where(
            gate.c.gate_key.in_(sa.bindparam("keys", expanding=True)))

    def insert_many(self, conn: sa.Connection, claims: list[dict[str, str]]) -> set[str]:
        """Insert the gates that do not exist yet; returns the request ids whose gate was inserted.

        ``claims``: dicts with ``key``, ``new_state``, ``request_id``, ``flow``, in arrival order;
        for a key listed twice only the first can win (as if claimed one after the other). Rows go
        in key order, so concurrent instances lock keys in the same order.
        """
        first: dict[str, dict[str, str]] = {}
        for claim in claims:
            first.setdefault(claim["key"], claim)
        if not first:
            return set()
        rows = [first[k] for k in sorted(first)]
        if conn.dialect.insert_executemany_returning:
            return set(conn.execute(self._insert_returning, rows).scalars().all())
        conn.execute(self._insert_many, rows)
        owners = conn.execute(self._owners, {"keys": list(first)}).all()
        return {request_id for key, request_id in owners if first[key]["request_id"] == request_id}

    def claim(
        self, conn: sa.Connection, key: str, *, state: str, request_id: str, flow: str, phone2: bool, ttls: GateTTLs,
        exists: bool = False,
    ) -> Claim:
        """Claim ``key`` for this callback, writing ``state``; see the module docstring. ``exists``:
        the row is known to exist (skip the insert)."""
        params = {"key": key, "new_state": state, "request_id": request_id, "flow": flow}
        if not exists and self._insert.execute(conn, params).rowcount == 1:
            return Claim(True)
        take = self._take_phone2 if phone2 else self._take_stale
        if take.execute(conn, {**params, **ttls.params()}).rowcount == 1:
            return Claim(True)
        row = self._state_of.execute(conn, {"key": key}).fetchone()
        return Claim(False, row[0] if row is not None else None)

    def set_state_later(self, tx: Transaction, key: str, state: str, *, only_from: str) -> None:
        """Move gate ``key`` to ``state`` if it is in ``only_from``, at the end of the transaction
        (units later in the same batch still see the old state, as if they came first)."""
        tx.later(self._set_state, {"b_key": key, "b_state": state, "b_from": only_from})

    def prune(self, conn: sa.Connection, older_than_s: float, limit: int = 1000) -> int:
        """Delete gates untouched for ``older_than_s`` (longer than every TTL); returns the count."""
        cutoff = self.store.now_expr() - older_than_s
        stmt = sa.select(gate.c.gate_key).where(gate.c.updated_at < cutoff).limit(limit)
        keys = conn.execute(stmt).scalars().all()
        if not keys:
            return 0
        result = conn.execute(sa.delete(gate).where(gate.c.gate_key.in_(keys), gate.c.updated_at < cutoff))
        return result.rowcount
