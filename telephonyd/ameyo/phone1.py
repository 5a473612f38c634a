"""Phone-1 state: the status of phone 1 of a two-phone customer, kept until phone 2 reports.

Keyed by ``customerId|callId``; judged expired on the database clock (``phone1_state_ttl_s``). A
row is taken by deleting it: `Phone1States.pop` is one ``DELETE ... RETURNING`` (SQLite, MariaDB),
or ``SELECT ... FOR UPDATE`` then DELETE on MySQL, and whoever deleted the row owns it, so two
callbacks or two instances never both use or send the same phone-1 result.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..store import Prepared, Store
from .batch import Transaction
from .routing import Route
from .schema import phone1_state

_COLUMNS = [c for c in phone1_state.c]
_NAMES = [c.name for c in _COLUMNS] + ["expired"]
#: Columns written by `Phone1States.insert` (``stored_at`` comes from the database clock).
_INSERTED = ("state_key", "call_id", "customer_id", "status", "gate_key", "request_id", "expiry_key", "expiry_body")


class Phone1States:
    def __init__(self, store: Store) -> None:
        self.store = store
        now = store.now_expr()
        self._insert = Prepared(store.insert_ignore(phone1_state).values(
            stored_at=now, **{name: sa.bindparam(name) for name in _INSERTED}))
        cutoff = now - sa.bindparam("ttl", type_=sa.Double())
        self._is_expired = phone1_state.c.stored_at <= cutoff
        self._expired = self._is_expired.label("expired")
        by_key = phone1_state.c.state_key == sa.bindparam("key")
        self._where = {False: by_key, True: sa.and_(by_key, self._is_expired)}
        self._pop = {only: Prepared(sa.delete(phone1_state).where(w).returning(*_COLUMNS, self._expired))
                     for only, w in self._where.items()}
        self._select = {only: sa.select(*_COLUMNS, self._expired).where(w).with_for_update()
                        for only, w in self._where.items()}
        self._delete = sa.delete(phone1_state).where(by_key)
        self._exists = Prepared(sa.select(phone1_state.c.status).where(by_key))

    def stored(self, tx: Transaction, key: str) -> bool:
        """Whether a phone-1 state ``key`` is stored (expired or not)."""
        return self._exists.execute(tx.conn, {"key": key}).fetchone() is not None

    def insert(self, tx: Transaction, route: Route, request_id: str, expiry_body: str) -> bool:
        """Store phone 1 of ``route``; False when a phone 1 of this call is already stored."""
        assert route.state_key is not None and route.expiry_request is not None and route.status is not None
        result = self._insert.execute(tx.conn, {
            "state_key": route.state_key, "call_id": route.call_id, "customer_id": route.customer_id,
            "status": route.status, "gate_key": route.gate_key, "request_id": request_id,
            "expiry_key": route.expiry_request.key, "expiry_body": expiry_body,
        })
        return result.rowcount == 1

    def pop(self, tx: Transaction, key: str, *, ttl_s: float, only_expired: bool) -> dict[str, Any] | None:
        """Delete and return the state ``key`` (with ``expired``), or None when there is none (or,
        with ``only_expired``, when it has not expired)."""
        params = {"key": key, "ttl": ttl_s}
        if self.store.dialect == "sqlite" or getattr(tx.conn.dialect, "is_mariadb", False):
            found = self._pop[only_expired].execute(tx.conn, params).fetchone()
            row = dict(zip(_NAMES, found)) if found is not None else None
        else:
            row = tx.conn.execute(self._select[only_expired], params).mappings().first()
            if row is not None and tx.conn.execute(self._delete, {"key": key}).rowcount != 1:
                row = None
        if row is None:
            return None
        out = dict(row)
        out["expired"] = bool(out["expired"])
        return out

    async def expired_keys(self, ttl_s: float, limit: int = 100) -> list[str]:
        """Keys of the states past ``ttl_s`` (for the sweeper)."""
        stmt = sa.select(phone1_state.c.state_key).where(self._is_expired).limit(limit)
        async with self.store.connect() as conn:
            return list((await conn.execute(stmt, {"ttl": ttl_s})).scalars().all())
