"""Rows taken back from claims that will never finish: expired leases, and the claims of a dead
predecessor of this node (`claimant.gone`). Each comes back as pending (or dead at
``max_attempts``), its lost attempt counted, and is returned so the caller can name it in the log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa

from .model import DEAD, IN_FLIGHT, PENDING
from .schema import outbox as t

if TYPE_CHECKING:
    from ..store import Store

T = TypeVar("T")


class OutboxQueries(Protocol):
    """What a requeue needs of `telephonyd.outbox.queries.OutboxQueries` (which calls in here)."""

    store: Store
    node_id: str
    token: str

    async def transaction(self, work: Callable[[sa.Connection], T], *, op: str = "write") -> T: ...

_KEY = t.c["key"]


@dataclass(frozen=True, slots=True)
class Requeued:
    """A row taken back from a claim that will never finish (for the log: which call is sent again)."""

    id: int
    target: str
    key: str
    claimed_by: str | None
    claim_token: str | None
    context: dict[str, Any]


async def expire_leases(q: OutboxQueries, max_attempts: int) -> list[Requeued]:
    """Turn in-flight rows whose lease ran out (their node died or stalled) back to pending;
    returns them.

    The lost attempt counts; with ``max_attempts`` (> 0) reached the row becomes a dead letter
    instead, so a row that kills its sender every time cannot loop forever.
    """
    expired = sa.and_(t.c.state == IN_FLIGHT, t.c.lease_until <= q.store.now_expr())
    # String "+" renders as || on SQLite and concat() on MySQL.
    error = sa.literal("lease of ") + sa.func.coalesce(t.c.claimed_by, "?") + " expired before a result"
    return await _requeue(q, expired, error, max_attempts)


async def take_back_predecessors(
    q: OutboxQueries, is_gone: Callable[[str | None], bool], max_attempts: int
) -> list[Requeued]:
    """Take back at once the in-flight rows of this ``node_id`` claimed by another process whose
    token ``is_gone`` (`claimant.gone`: provably dead), as an expired lease would (the attempt
    counts); returns them. Rows of a live twin with the same ``node_id`` are left alone."""
    others = sa.and_(t.c.state == IN_FLIGHT, t.c.claimed_by == q.node_id,
                     sa.or_(t.c.claim_token.is_(None), t.c.claim_token != q.token))
    async with q.store.connect() as conn:
        tokens = [tok for (tok,) in await conn.execute(sa.select(t.c.claim_token).where(others).distinct())]
    dead = [tok for tok in tokens if tok is not None and is_gone(tok)]
    if not dead:
        return []
    error = sa.literal("claim of ") + t.c.claimed_by + " by a process that is gone; taken back at restart"
    return await _requeue(q, sa.and_(others, t.c.claim_token.in_(dead)), error, max_attempts)


async def _requeue(q: OutboxQueries, where: sa.ColumnElement[bool], error: Any, max_attempts: int) -> list[Requeued]:
    now = q.store.now_expr()
    state: Any = PENDING
    if max_attempts > 0:
        state = sa.case((t.c.attempts + 1 >= max_attempts, DEAD), else_=PENDING)
    select = sa.select(t.c.id, t.c.target, _KEY, t.c.claimed_by, t.c.claim_token, t.c.log_context).where(where)
    if q.store.dialect == "mysql":
        # A row locked by another transaction is being claimed, finished or swept right now: skip it
        # (a plain locking read would wait on it, up to innodb_lock_wait_timeout); the next sweep
        # sees it again if it still needs taking back. Two sweeping nodes take disjoint rows.
        select = select.with_for_update(skip_locked=True)

    def work(conn: sa.Connection) -> list[Requeued]:
        found = [Requeued(int(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else {})
                 for r in conn.execute(select)]
        if found:
            conn.execute(
                sa.update(t)
                .where(t.c.id.in_([r.id for r in found]), where)
                .values(state=state, attempts=t.c.attempts + 1, lease_until=None, last_error=error,
                        next_attempt_at=now, updated_at=now)
            )
        return found

    return await q.transaction(work, op="requeue")
