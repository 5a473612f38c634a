"""telephonyd's side of the VICIdial source: checkpoint, last seen statuses, the outbox rows.

`commit` is one `Store.write` transaction: it advances the checkpoint (compare-and-set on its
``version``), records the statuses seen and adds one outbox row per newly seen final status
(`Outbox.add`, idempotent on ``(target, key)``). Either all of it commits or none: the checkpoint
never moves past a row whose report is not committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..outbox.schema import outbox as outbox_table
from .schema import checkpoint, seen

_CHUNK = 500


class CheckpointMoved(Exception):
    """Another instance committed this source's checkpoint first; this batch was rolled back."""


@dataclass(slots=True)
class Checkpoint:
    source: str
    head_date: str
    head_key: str
    sweep_date: str
    version: int
    rows_read: int = 0
    reported: int = 0
    node_id: str = ""
    updated_at: float = 0.0


@dataclass(slots=True)
class Observed:
    """One call as read now: its key, status, ``call_date`` text, whether the status is transient,
    and the outbox row to add if the status is new and final (``None`` for a transient status):
    its key and ``make(uniqueid, outcome_reported) -> payload``. ``uniqueids``: the uniqueids the
    call's hangup outcome may have been queued under, in order of preference (the row's own, then
    the leg ``vicidial_dial_log`` names)."""

    call_key: str
    status: str
    call_date: str
    open: bool
    report: tuple[str, Callable[[str, bool], dict[str, Any]]] | None = None
    uniqueids: tuple[str, ...] = ()


@dataclass(slots=True)
class Committed:
    reported: int = 0
    changed: int = 0
    keys: list[str] = field(default_factory=list)


def _row_to_checkpoint(row: Any) -> Checkpoint:
    m = row._mapping
    return Checkpoint(m["source"], m["head_date"], m["head_key"], m["sweep_date"], int(m["version"]),
                      int(m["rows_read"]), int(m["reported"]), m["node_id"], float(m["updated_at"]))


def ensure_checkpoint(conn: sa.Connection, source: str, start_date: str, start_key: str, node_id: str) -> Checkpoint:
    """The source's checkpoint, created at ``start_date`` / ``start_key`` when there is none."""
    found = conn.execute(sa.select(checkpoint).where(checkpoint.c.source == source)).first()
    if found is None:
        # Insert-or-ignore: two instances starting together both try; one row results.
        prefix = "OR IGNORE" if conn.dialect.name == "sqlite" else "IGNORE"
        conn.execute(checkpoint.insert().prefix_with(prefix).values(
            source=source, head_date=start_date, head_key=start_key, sweep_date=start_date,
            version=0, rows_read=0, reported=0, node_id=node_id, updated_at=time.time(),
        ))
        found = conn.execute(sa.select(checkpoint).where(checkpoint.c.source == source)).first()
    return _row_to_checkpoint(found)


def load_checkpoint(conn: sa.Connection, source: str) -> Checkpoint | None:
    found = conn.execute(sa.select(checkpoint).where(checkpoint.c.source == source)).first()
    return _row_to_checkpoint(found) if found is not None else None


def seen_statuses(conn: sa.Connection, source: str, keys: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    unique = sorted(set(keys))
    for i in range(0, len(unique), _CHUNK):
        part = unique[i:i + _CHUNK]
        rows = conn.execute(
            sa.select(seen.c.call_key, seen.c.status).where(seen.c.source == source, seen.c.call_key.in_(part))
        )
        out.update({r.call_key: r.status for r in rows})
    return out


def open_keys(conn: sa.Connection, source: str, since: str, limit: int) -> list[str]:
    """Calls last seen in a transient status, ``call_date >= since``, oldest first."""
    rows = conn.execute(
        sa.select(seen.c.call_key)
        .where(seen.c.source == source, seen.c.open.is_(True), seen.c.call_date >= since)
        .order_by(seen.c.call_date)
        .limit(limit)
    )
    return [r.call_key for r in rows]


def seen_per_second(conn: sa.Connection, source: str, since: str, before: str) -> dict[str, int]:
    """Calls seen per ``call_date`` second in ``[since, before)``."""
    rows = conn.execute(
        sa.select(seen.c.call_date, sa.func.count())
        .where(seen.c.source == source, seen.c.call_date >= since, seen.c.call_date < before)
        .group_by(seen.c.call_date)
    )
    return {r[0]: int(r[1]) for r in rows}


def count_open(conn: sa.Connection, source: str, since: str) -> int:
    return int(conn.execute(
        sa.select(sa.func.count()).select_from(seen)
        .where(seen.c.source == source, seen.c.open.is_(True), seen.c.call_date >= since)
    ).scalar_one())


def existing_outbox_keys(conn: sa.Connection, target: str, keys: Iterable[str]) -> set[str]:
    found: set[str] = set()
    unique = sorted({k for k in keys if k})
    for i in range(0, len(unique), _CHUNK):
        part = unique[i:i + _CHUNK]
        rows = conn.execute(
            sa.select(outbox_table.c.key).where(outbox_table.c.target == target, outbox_table.c.key.in_(part))
        )
        found.update(r.key for r in rows)
    return found


def commit(
    conn: sa.Connection,
    *,
    before: Checkpoint,
    after: Checkpoint,
    observed: Sequence[Observed],
    add: Callable[[sa.Connection, str, str, dict[str, Any]], bool],
    target: str,
    prune_before: str | None = None,
    prune_limit: int = 5000,
) -> Committed:
    """Advance the checkpoint from ``before`` to ``after`` and record ``observed``; raises
    `CheckpointMoved` (the caller's transaction then rolls back) when ``before`` is stale.

    ``prune_before``: calls with an older ``call_date`` are forgotten (at most ``prune_limit``).
    ``add(conn, target, key, payload)`` is `Outbox.add`. A status equal to the one last seen for
    the call changes nothing; a new final status adds its outbox row (one per (call, status) for
    good: the key holds the status).
    """
    moved = conn.execute(
        checkpoint.update()
        .where(checkpoint.c.source == before.source, checkpoint.c.version == before.version)
        .values(
            head_date=after.head_date, head_key=after.head_key, sweep_date=after.sweep_date,
            version=before.version + 1, rows_read=checkpoint.c.rows_read + (after.rows_read - before.rows_read),
            node_id=after.node_id, updated_at=time.time(),
        )
    ).rowcount
    if moved != 1:
        raise CheckpointMoved(before.source)
    last = seen_statuses(conn, before.source, [o.call_key for o in observed])
    changed = [o for o in observed if last.get(o.call_key) != o.status]
    done = Committed()
    reported_uids = existing_outbox_keys(
        conn, target, (u for o in changed if o.report is not None for u in o.uniqueids)
    )
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for o in changed:
        if o.report is not None:
            key, make = o.report
            uniqueid, outcome = resolve_uniqueid(o.uniqueids, reported_uids)
            if add(conn, target, key, make(uniqueid, outcome)):
                done.reported += 1
                done.keys.append(key)
        values = {"status": o.status, "open": o.open, "call_date": o.call_date}
        if o.call_key in last:
            updates.append({"b_source": before.source, "b_key": o.call_key,
                            **{f"b_{k}": v for k, v in values.items()}})
        else:
            inserts.append({"source": before.source, "call_key": o.call_key, **values})
        done.changed += 1
    if inserts:  # one executemany each, not a statement per call
        conn.execute(seen.insert(), inserts)
    if updates:
        conn.execute(
            seen.update()
            .where(seen.c.source == sa.bindparam("b_source"), seen.c.call_key == sa.bindparam("b_key"))
            .values(status=sa.bindparam("b_status"), open=sa.bindparam("b_open"), call_date=sa.bindparam("b_call_date")),
            updates,
        )
    if done.reported:
        conn.execute(checkpoint.update().where(checkpoint.c.source == before.source)
                     .values(reported=checkpoint.c.reported + done.reported))
    if prune_before is not None:
        prune_seen(conn, before.source, prune_before, prune_limit)
    return done


def resolve_uniqueid(candidates: Sequence[str], outcomes: set[str]) -> tuple[str, bool]:
    """The uniqueid a disposition names its call by, and whether a hangup outcome is queued under it.

    The first candidate with a queued outcome (by uniqueid, then the leg of the same lead found in
    ``vicidial_dial_log``); without one, the dial log's leg (the one the ``h`` extension runs on),
    else the row's own uniqueid."""
    present = [u for u in candidates if u]
    for uniqueid in present:
        if uniqueid in outcomes:
            return uniqueid, True
    return (present[-1] if present else ""), False


def prune_seen(conn: sa.Connection, source: str, before_date: str, limit: int = 5000) -> int:
    """Forget calls older than the re-read window (bounded per call)."""
    keys = [r.call_key for r in conn.execute(
        sa.select(seen.c.call_key).where(seen.c.source == source, seen.c.call_date < before_date).limit(limit)
    )]
    if not keys:
        return 0
    return int(conn.execute(seen.delete().where(seen.c.source == source, seen.c.call_key.in_(keys))).rowcount)
