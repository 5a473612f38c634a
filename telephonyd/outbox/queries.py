"""Every SQL statement of the outbox, for SQLite and MariaDB/MySQL alike.

Times come from the database clock (`Store.now_expr`), so several instances sharing one MariaDB
agree on leases and due times whatever their host clocks say. Callers add their own timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ..store import STORE_ERRORS, Prepared
from ..store.errors import short_error
from ..store.conflicts import StoreConflict, is_conflict
from ..backoff import full_jitter
from .claimant import new_token
from . import requeue
from .model import DEAD, DELIVERED, IN_FLIGHT, PENDING, EnqueueResult, OutboxRow
from .requeue import Requeued
from .schema import outbox as t

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["STORE_ERRORS", "OutboxQueries", "short_error"]  # STORE_ERRORS: the store's one list

log = logging.getLogger(__name__)

_KEY = t.c["key"]
_ROW_COLUMNS = (t.c.id, t.c.target, _KEY, t.c.payload, t.c.attempts, t.c.created_at, t.c.log_context)
_PRUNE_CHUNK = 1000
_TRANSACTION_ATTEMPTS = 4
#: Pause before restarting a conflicting transaction: full jitter from this, doubling per attempt...
CONFLICT_BASE_S = 0.01
#: ... up to this.
CONFLICT_CAP_S = 0.2
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NewRow:
    """A row to insert: payload and log context already serialized as JSON text."""

    target: str
    key: str
    payload: str
    context: str | None


@dataclass(frozen=True, slots=True)
class Finish:
    """One result write: which kind (``delivered``, ``retry``, ``dead``) and its parameters.

    ``attempts`` is the row's attempt count when it was claimed (`OutboxRow.attempts`): the write
    applies only while it is unchanged. A lease that expired counts an attempt, so a late result
    of an expired claim never lands on a later claim of the same row, even one by this same node.
    None skips that check (administration).
    """

    row_id: int
    kind: str
    params: dict[str, Any]
    attempts: int | None = None


class _ClaimsLost(Exception):
    """A batched result write found fewer held claims than rows: roll back, write row by row."""


def _finish_statements(store: Store, node_id: str, token: str) -> dict[tuple[str, bool], Prepared]:
    """The result writes, built once: (kind, checks attempts) -> UPDATE with ``b_*`` parameters."""
    now = store.now_expr()
    common = {"attempts": t.c.attempts + 1, "last_status": sa.bindparam("b_status", type_=sa.Integer()),
              "lease_until": None, "updated_at": now}
    values = {
        "delivered": {"state": DELIVERED, "delivered_at": now, "last_error": None},
        "retry": {"state": PENDING, "next_attempt_at": now + sa.bindparam("b_delay", type_=sa.Double()),
                  "last_error": sa.bindparam("b_error", type_=sa.Text())},
        "dead": {"state": DEAD, "last_error": sa.bindparam("b_error", type_=sa.Text())},
    }
    mine = sa.and_(t.c.id == sa.bindparam("b_id", type_=sa.BigInteger()), t.c.claimed_by == node_id,
                   t.c.claim_token == token, t.c.state == IN_FLIGHT)
    same_attempts = t.c.attempts == sa.bindparam("b_attempts", type_=sa.Integer())
    statements = {}
    for kind, own in values.items():
        for checked in (True, False):
            where = sa.and_(mine, same_attempts) if checked else mine
            statements[(kind, checked)] = Prepared(sa.update(t).where(where).values(**own, **common))
    return statements


def _next_due_statement(store: Store, targets: int) -> sa.Select[Any]:
    """``SELECT now, earliest next_attempt_at of pending rows of targets b_target0.., earliest
    lease_until of rows in flight`` (`OutboxQueries.next_due_in`)."""
    names = [sa.bindparam(f"b_target{i}", type_=sa.String()) for i in range(targets)]
    of_targets = t.c.target.in_(names) if names else sa.false()
    pending = sa.select(sa.func.min(t.c.next_attempt_at)).where(t.c.state == PENDING, of_targets)
    leases = sa.select(sa.func.min(t.c.lease_until)).where(t.c.state == IN_FLIGHT)
    return sa.select(store.now_expr(), pending.scalar_subquery(), leases.scalar_subquery())


def to_row(record: Sequence[Any]) -> OutboxRow:
    """An `OutboxRow` from a row of ``_ROW_COLUMNS`` (a SQLAlchemy row or a driver tuple)."""
    row_id, target, key, payload, attempts, created_at, context = record
    return OutboxRow(
        id=int(row_id),
        target=target,
        key=key,
        payload=json.loads(payload),
        attempts=int(attempts),
        created_at=float(created_at),
        context=json.loads(context) if context else {},
    )


class OutboxQueries:
    """The outbox's statements over one `Store`; ``node_id`` names this instance in claims and
    ``token`` this process (`claimant.new_token`, a fresh one by default): results and releases
    apply only to rows claimed with this token."""

    def __init__(self, store: Store, node_id: str, token: str | None = None) -> None:
        self.store = store
        self.node_id = node_id
        self.token = token or new_token()
        self._rng = random.Random()
        self._finish = _finish_statements(store, node_id, self.token)
        now = store.now_expr()
        new_row = {
            "target": sa.bindparam("b_target"), "key": sa.bindparam("b_key"), "payload": sa.bindparam("b_payload"),
            "state": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
            "node_id": node_id, "log_context": sa.bindparam("b_context"),
        }  # fmt: skip
        self._add = Prepared(store.insert_ignore(t).values(**new_row))
        self._insert = Prepared(store.insert_ignore(t).values(**new_row, enqueue_batch=sa.bindparam("b_batch")))
        # One lookup per target and batch: on MariaDB a statement per row would be a round trip each.
        self._lookup = sa.select(t.c.id, _KEY, t.c.enqueue_batch).where(
            t.c.target == sa.bindparam("b_target"), _KEY.in_(sa.bindparam("b_keys", expanding=True)))
        # SQLite's claim, built once: one conditional UPDATE ... RETURNING (see `claim`).
        due = sa.and_(t.c.state == PENDING, t.c.target == sa.bindparam("b_target"), t.c.next_attempt_at <= now)
        ids = sa.select(t.c.id).where(due).order_by(t.c.next_attempt_at, t.c.id).limit(sa.bindparam("b_limit"))
        self._claim_sqlite = Prepared(
            sa.update(t)
            .where(t.c.id.in_(ids.scalar_subquery()))
            .values(state=IN_FLIGHT, claimed_by=node_id, claim_token=self.token, updated_at=now,
                    lease_until=now + sa.bindparam("b_lease", type_=sa.Double()))
            .returning(*_ROW_COLUMNS)
        )
        # `next_due_in`'s statement for n targets (key n), built on first use.
        self._next_due: dict[int, Prepared] = {}
        # MariaDB's claim, built once: SELECT ... FOR UPDATE SKIP LOCKED, then UPDATE by id.
        self._claim_select = ids.with_only_columns(*_ROW_COLUMNS).with_for_update(skip_locked=True)
        self._claim_update = (
            sa.update(t)
            .where(t.c.id.in_(sa.bindparam("b_ids", expanding=True)))
            .values(state=IN_FLIGHT, claimed_by=node_id, claim_token=self.token, updated_at=now,
                    lease_until=now + sa.bindparam("b_lease", type_=sa.Double()))
        )

    async def transaction(self, work: Callable[[sa.Connection], T], *, op: str = "write") -> T:
        """`_transaction` for the outbox's other query modules (`requeue`)."""
        return await self._transaction(work, op=op)

    async def _transaction(self, work: Callable[[sa.Connection], T], *, urgent: bool = False, op: str = "write") -> T:
        """Run ``work`` in a transaction (`Store.write`: on SQLite one hand-over to the writer
        thread), again when the database rolled it back for a conflict (`store.conflicts`: a
        deadlock victim, a lock wait timeout, a Galera certification failure), after a short
        jittered pause (`backoff.full_jitter`, `CONFLICT_BASE_S` doubling up to `CONFLICT_CAP_S`) so
        that contending instances stop colliding in step. Every conflict is counted under ``op`` in
        ``store.conflicts``; when the attempts run out, raises `StoreConflict` (retryable: the store
        is fine). ``urgent``: see `Store.write`."""
        for attempt in range(1, _TRANSACTION_ATTEMPTS + 1):
            try:
                return await self.store.write(work, urgent=urgent)
            except sa.exc.OperationalError as exc:
                if not is_conflict(exc):
                    raise
                last = attempt == _TRANSACTION_ATTEMPTS
                self.store.conflicts.record(op, exhausted=last)
                if last:
                    raise StoreConflict(f"outbox {op}: write conflict {_TRANSACTION_ATTEMPTS} times in a row: "
                                        f"{short_error(exc)}", op=op, attempts=attempt) from None
                log.debug("outbox transaction restarted", extra={"op": op, "error": short_error(exc), "attempt": attempt})
                await asyncio.sleep(full_jitter(attempt, CONFLICT_BASE_S, CONFLICT_CAP_S, self._rng))
        raise AssertionError("unreachable")

    async def _write(self, statement: sa.Executable) -> int:
        """One statement in its own transaction; returns the affected row count."""

        def work(conn: sa.Connection) -> int:
            return conn.execute(statement).rowcount

        return await self._transaction(work)

    # -- writing new rows ------------------------------------------------------------------------

    async def insert_batch(self, rows: Sequence[NewRow]) -> list[EnqueueResult]:
        """Insert-or-ignore ``rows`` in one transaction; one result per input row, in order.

        A (target, key) already stored, or repeated earlier in ``rows``, gives ``created=False``
        and the id of the row that holds it.
        """
        batch = uuid.uuid4().hex
        firsts: dict[tuple[str, str], NewRow] = {}
        for row in rows:
            firsts.setdefault((row.target, row.key), row)
        # Sorted, so concurrent batches of several instances lock keys in one order.
        ordered = sorted(firsts.values(), key=lambda r: (r.target, r.key))

        params = [{"b_target": r.target, "b_key": r.key, "b_payload": r.payload, "b_context": r.context,
                   "b_batch": batch} for r in ordered]

        def work(conn: sa.Connection) -> dict[tuple[str, str], tuple[int, bool]]:
            self._insert.executemany(conn, params)
            by_target: dict[str, list[str]] = {}
            for r in ordered:
                by_target.setdefault(r.target, []).append(r.key)
            found: dict[tuple[str, str], tuple[int, bool]] = {}
            for target, keys in by_target.items():
                for row_id, key, row_batch in conn.execute(self._lookup, {"b_target": target, "b_keys": keys}):
                    found[(target, key)] = (int(row_id), row_batch == batch)
            return found

        found = await self._transaction(work, urgent=True, op="enqueue")  # a caller waits to answer its peer
        results: list[EnqueueResult] = []
        claimed_new: set[tuple[str, str]] = set()
        for row in rows:
            ident = (row.target, row.key)
            if ident not in found:
                # Cannot happen with a working store: the insert or an earlier row holds the key.
                raise sa.exc.InvalidRequestError(f"outbox row {ident} neither inserted nor found")
            row_id, created = found[ident]
            first = created and ident not in claimed_new
            claimed_new.add(ident)
            results.append(EnqueueResult(row_id, first))
        return results

    def add(self, conn: sa.Connection, row: NewRow) -> bool:
        """Insert-or-ignore one row inside the caller's transaction; True when it was created."""
        params = {"b_target": row.target, "b_key": row.key, "b_payload": row.payload, "b_context": row.context}
        return self._add.execute(conn, params).rowcount == 1

    # -- claiming and finishing ------------------------------------------------------------------

    async def claim(self, target: str, limit: int, lease_s: float) -> list[OutboxRow]:
        """Atomically take up to ``limit`` due pending rows of ``target`` for this node.

        MariaDB/MySQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` then UPDATE, so concurrent instances
        take disjoint rows without waiting on each other. SQLite: one conditional UPDATE ...
        RETURNING (SQLite serializes writers).
        """
        params = {"b_target": target, "b_limit": int(limit), "b_lease": float(lease_s)}

        def sqlite_work(conn: sa.Connection) -> list[OutboxRow]:
            return [to_row(rec) for rec in self._claim_sqlite.execute(conn, params).fetchall()]

        def work(conn: sa.Connection) -> list[OutboxRow]:
            rows = [to_row(rec) for rec in conn.execute(self._claim_select, params)]
            if rows:
                conn.execute(self._claim_update, {"b_ids": [r.id for r in rows], "b_lease": params["b_lease"]})
            return rows

        rows = await self._transaction(sqlite_work if self.store.dialect == "sqlite" else work, op="claim")
        rows.sort(key=lambda r: r.id)
        return rows

    def delivered(self, row_id: int, status: int | None, *, attempts: int | None = None) -> Finish:
        """The result write of a confirmed delivery (``attempts``: see `Finish`)."""
        return Finish(row_id, "delivered", {"b_status": status}, attempts)

    def retry_later(
        self, row_id: int, delay_s: float, error: str | None, status: int | None, *, attempts: int | None = None
    ) -> Finish:
        """The result write of a failed attempt: pending again in ``delay_s`` (database clock)."""
        return Finish(row_id, "retry", {"b_status": status, "b_error": error, "b_delay": float(delay_s)}, attempts)

    def dead_letter(self, row_id: int, error: str | None, status: int | None, *, attempts: int | None = None) -> Finish:
        """The result write of a refusal: the row becomes a dead letter."""
        return Finish(row_id, "dead", {"b_status": status, "b_error": error}, attempts)

    async def finish_batch(self, results: Sequence[Finish]) -> list[bool]:
        """Write several results in one transaction, each only while this node still holds the
        row's claim (``claimed_by`` = this node, ``in_flight``, and the attempt count it claimed).
        True per row where it held.

        The statements are compiled once (`Prepared`); rows of one kind go as one executemany (one
        driver call), in id order. When the rows changed are fewer than the results (a claim was lost,
        or a row is listed twice), that transaction is rolled back and the results are written
        one statement each, which tells which of them held.
        """

        def statement(result: Finish) -> tuple[Prepared, dict[str, Any]]:
            params = {**result.params, "b_id": result.row_id}
            if result.attempts is not None:
                params["b_attempts"] = result.attempts
            return self._finish[(result.kind, result.attempts is not None)], params

        def batched(conn: sa.Connection) -> list[bool]:
            groups: dict[Prepared, list[dict[str, Any]]] = {}
            for result in sorted(results, key=lambda r: r.row_id):
                stmt, params = statement(result)
                groups.setdefault(stmt, []).append(params)
            changed = 0
            for stmt, params_list in groups.items():
                changed += stmt.executemany(conn, params_list)
            if changed != len(results):
                raise _ClaimsLost
            return [True] * len(results)

        def one_by_one(conn: sa.Connection) -> list[bool]:
            held = []
            for result in results:
                stmt, params = statement(result)
                held.append(stmt.execute(conn, params).rowcount == 1)
            return held

        if len(results) > 1 and self.store.engine.dialect.supports_sane_multi_rowcount:
            try:
                return await self._transaction(batched, op="result")
            except _ClaimsLost:
                pass
        return await self._transaction(one_by_one, op="result")

    async def mark_delivered(self, row_id: int, status: int | None, *, attempts: int | None = None) -> bool:
        return (await self.finish_batch([self.delivered(row_id, status, attempts=attempts)]))[0]

    async def mark_retry(
        self, row_id: int, delay_s: float, error: str | None, status: int | None, *, attempts: int | None = None
    ) -> bool:
        return (await self.finish_batch([self.retry_later(row_id, delay_s, error, status, attempts=attempts)]))[0]

    async def mark_dead(
        self, row_id: int, error: str | None, status: int | None, *, attempts: int | None = None
    ) -> bool:
        return (await self.finish_batch([self.dead_letter(row_id, error, status, attempts=attempts)]))[0]

    async def release(self, row_ids: Iterable[int]) -> int:
        """Give back claims this node will not finish (shutdown): the rows are due again at once."""
        ids = list(row_ids)
        if not ids:
            return 0
        now = self.store.now_expr()
        return await self._write(
            sa.update(t)
            .where(t.c.id.in_(ids), t.c.claim_token == self.token, t.c.state == IN_FLIGHT)
            .values(state=PENDING, lease_until=None, next_attempt_at=now, updated_at=now)
        )

    async def expire_leases(self, max_attempts: int) -> int:
        """`expire_leases_rows`, counted."""
        return len(await self.expire_leases_rows(max_attempts))

    async def expire_leases_rows(self, max_attempts: int) -> list[Requeued]:
        """See `requeue.expire_leases`."""
        return await requeue.expire_leases(self, max_attempts)

    async def take_back_predecessors(self, is_gone: Callable[[str | None], bool], max_attempts: int) -> list[Requeued]:
        """See `requeue.take_back_predecessors`."""
        return await requeue.take_back_predecessors(self, is_gone, max_attempts)

    async def next_due_in(self, targets: Sequence[str]) -> float | None:
        """Seconds until the earliest pending row of ``targets`` or lease expiry (None: nothing).

        One read, run as a `Store.write` transaction (on SQLite one hand-over to the writer thread:
        about a third of the CPU of a read through the async engine's pool, which the dispatcher
        paid after every claim that emptied the queue), with a statement compiled once per number
        of targets (`Prepared`).
        """
        names = list(targets)
        stmt = self._next_due.get(len(names))
        if stmt is None:
            stmt = self._next_due[len(names)] = Prepared(_next_due_statement(self.store, len(names)))
        params = {f"b_target{i}": name for i, name in enumerate(names)}

        def work(conn: sa.Connection) -> tuple[Any, ...]:
            return tuple(stmt.execute(conn, params).fetchone())

        rec = await self.store.write(work)
        times = [float(v) for v in rec[1:] if v is not None]
        return max(0.0, min(times) - float(rec[0])) if times else None

    # -- housekeeping ----------------------------------------------------------------------------

    async def open_counts(self) -> dict[str, dict[str, int]]:
        """Counts of pending, in-flight and dead rows by target (cheap: index only)."""
        stmt = (
            sa.select(t.c.state, t.c.target, sa.func.count())
            .where(t.c.state.in_([PENDING, IN_FLIGHT, DEAD]))
            .group_by(t.c.state, t.c.target)
        )
        counts: dict[str, dict[str, int]] = {}
        async with self.store.connect() as conn:
            for state, target, n in await conn.execute(stmt):
                counts.setdefault(target, {})[state] = int(n)
        return counts

    async def prune_delivered(self, retention_s: float, max_rounds: int = 20) -> int:
        """Delete delivered rows older than ``retention_s``, in chunks; returns how many."""
        total = 0
        cutoff = self.store.now_expr() - retention_s
        chunk = (
            sa.select(t.c.id)
            .where(t.c.state == DELIVERED, t.c.delivered_at < cutoff)
            .order_by(t.c.delivered_at)
            .limit(_PRUNE_CHUNK)
        )
        for _ in range(max_rounds):
            async with self.store.connect() as conn:
                ids = (await conn.execute(chunk)).scalars().all()
            if ids:
                total += await self._write(sa.delete(t).where(t.c.id.in_(ids), t.c.state == DELIVERED))
            if len(ids) < _PRUNE_CHUNK:
                break
        return total

    # -- administration --------------------------------------------------------------------------

    async def retry(self, row_id: int | None) -> int:
        """Make a dead or pending row due now with a fresh attempt count (all dead rows when None)."""
        now = self.store.now_expr()
        where = t.c.state == DEAD if row_id is None else sa.and_(t.c.id == row_id, t.c.state.in_([DEAD, PENDING]))
        return await self._write(
            sa.update(t).where(where).values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        )

    async def drop(self, row_id: int) -> bool:
        return await self._write(sa.delete(t).where(t.c.id == row_id)) == 1


