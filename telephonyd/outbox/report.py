"""Read-only reports on the outbox for administration: `stats` and `list_rows` (CLI, /status)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .model import DEAD, IN_FLIGHT, PENDING, STATES
from .schema import outbox as t

if TYPE_CHECKING:
    from ..store import Store

#: `stats` names the ids of up to this many in-flight rows per node (of the first rows read).
_CLAIM_IDS_SHOWN = 20
_CLAIM_IDS_READ = 2000


async def stats(store: Store) -> dict[str, Any]:
    """See `Outbox.stats`: counts by state and target, the oldest pending row's age, claims by node;
    every time on the database clock."""
    async with store.connect() as conn:
        now = await store.now(conn)
        per_target: dict[str, dict[str, int]] = {}
        by_state = dict.fromkeys(STATES, 0)
        for state, target, n in await conn.execute(
            sa.select(t.c.state, t.c.target, sa.func.count()).group_by(t.c.state, t.c.target)
        ):
            per_target.setdefault(target, dict.fromkeys(STATES, 0))[state] = int(n)
            by_state[state] = by_state.get(state, 0) + int(n)
        oldest = (
            await conn.execute(sa.select(sa.func.min(t.c.created_at)).where(t.c.state == PENDING))
        ).scalar_one()
        # A lease in the past while the row is still in flight: its node died or stalled, and
        # no instance has swept it back to pending yet (each does every poll_interval_s).
        stuck = sa.func.sum(sa.case((t.c.lease_until <= sa.literal(now, sa.Double()), 1), else_=0))
        claims = [
            {
                "node_id": node,
                "rows": int(n),
                "stuck": int(n_stuck or 0),
                "lease_expires_in_s": round(float(first) - now, 3),
                "last_lease_expires_in_s": round(float(last) - now, 3),
            }
            for node, n, n_stuck, first, last in await conn.execute(
                sa.select(t.c.claimed_by, sa.func.count(), stuck, sa.func.min(t.c.lease_until),
                          sa.func.max(t.c.lease_until))
                .where(t.c.state == IN_FLIGHT)
                .group_by(t.c.claimed_by)
                .order_by(t.c.claimed_by)
            )
        ]
        held: dict[str, list[int]] = {}
        for node, row_id in await conn.execute(
            sa.select(t.c.claimed_by, t.c.id).where(t.c.state == IN_FLIGHT).order_by(t.c.id).limit(_CLAIM_IDS_READ)
        ):
            ids = held.setdefault(node, [])
            if len(ids) < _CLAIM_IDS_SHOWN:
                ids.append(int(row_id))
        for claim in claims:
            claim["ids"] = held.get(claim["node_id"], [])
    return {
        "by_state": by_state,
        "oldest_pending_age_s": None if oldest is None else round(max(0.0, now - float(oldest)), 3),
        "dead": by_state[DEAD],
        "targets": per_target,
        "claims": claims,
        "stuck_leases": sum(c["stuck"] for c in claims),
        "db_now": now,
    }

async def list_rows(store: Store, state: str | None, limit: int) -> list[dict[str, Any]]:
    """See `Outbox.list_rows`: rows oldest first, payload decoded, internal columns left out."""
    stmt = sa.select(t).order_by(t.c.id).limit(limit)
    if state is not None:
        stmt = stmt.where(t.c.state == state)
    async with store.connect() as conn:
        records = (await conn.execute(stmt)).mappings().all()
    rows = []
    for rec in records:
        row = {k: v for k, v in rec.items() if k not in ("log_context", "enqueue_batch")}
        row["payload"] = json.loads(rec["payload"])
        rows.append(row)
    return rows
