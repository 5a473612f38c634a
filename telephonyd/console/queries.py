"""What the console's outbox panel reads from the store (read-only; times on the database clock).

`outbox_view` gives, per target: counts by state, the oldest pending row's age (s), the last error
of a row that is not delivered; then the newest dead letters and the newest deliveries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..outbox.model import DEAD, DELIVERED, PENDING, STATES
from ..outbox.schema import outbox as t

if TYPE_CHECKING:
    from ..store import Store

_ROW = (t.c.id, t.c.target, t.c.key, t.c.state, t.c.attempts, t.c.last_error, t.c.last_status, t.c.claimed_by,
        t.c.created_at, t.c.updated_at, t.c.delivered_at)


async def outbox_view(store: Store, limit: int = 20) -> dict[str, Any]:
    """``{"targets": {target: {<state>: n, "oldest_pending_age_s", "last_error"}}, "dead": [row],
    "recent": [row]}``; rows as dicts of the `_ROW` columns plus ``age_s``."""
    async with store.connect() as conn:
        now = await store.now(conn)
        targets: dict[str, dict[str, Any]] = {}
        for state, target, n in await conn.execute(
                sa.select(t.c.state, t.c.target, sa.func.count()).group_by(t.c.state, t.c.target)):
            entry = targets.setdefault(target, {**dict.fromkeys(STATES, 0), "oldest_pending_age_s": None,
                                                "last_error": None})
            entry[state] = int(n)
        for target, oldest in await conn.execute(
                sa.select(t.c.target, sa.func.min(t.c.created_at)).where(t.c.state == PENDING).group_by(t.c.target)):
            targets[target]["oldest_pending_age_s"] = round(max(0.0, now - float(oldest)), 1)
        for target in targets:
            error = (await conn.execute(
                sa.select(t.c.last_error).where(t.c.target == target, t.c.state != DELIVERED,
                                                t.c.last_error.is_not(None))
                .order_by(t.c.updated_at.desc()).limit(1))).scalar_one_or_none()
            targets[target]["last_error"] = error
        dead = (await conn.execute(sa.select(*_ROW).where(t.c.state == DEAD)
                                   .order_by(t.c.updated_at.desc()).limit(limit))).mappings().all()
        recent = (await conn.execute(sa.select(*_ROW).where(t.c.state == DELIVERED)
                                     .order_by(t.c.delivered_at.desc()).limit(limit))).mappings().all()
    return {"targets": targets, "dead": [_row(r, now) for r in dead], "recent": [_row(r, now) for r in recent]}


def _row(record: Any, now: float) -> dict[str, Any]:
    row = dict(record)
    row["age_s"] = round(max(0.0, now - float(row["updated_at"])), 1)
    return row
