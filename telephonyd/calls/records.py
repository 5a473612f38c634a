"""Call records: one row per finished call (the ``call_records`` table) and the queries over it.

Times are epoch seconds (DOUBLE) of the daemon's clock when the AMI event arrived. ``record`` is the
schema-1 ``call`` object of the ``call.ended`` event as JSON (docs/call-events.md). A record is joined,
when one exists, with the ``call_log`` outcome of the same call: the outbox row of the DID Optimizer
target whose key is one of the call's leg uniqueids (``call_log`` keys its rows by ``agi_uniqueid``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..outbox.schema import outbox

if TYPE_CHECKING:
    from ..store import Store

metadata = sa.MetaData()

call_records = sa.Table(
    "call_records",
    metadata,
    sa.Column("linkedid", sa.String(64), primary_key=True),
    sa.Column("uniqueid", sa.String(64), nullable=False),
    sa.Column("node_id", sa.String(64), nullable=False),
    sa.Column("started_at", sa.Double(), nullable=False),
    sa.Column("answered_at", sa.Double(), nullable=True),
    sa.Column("ended_at", sa.Double(), nullable=False),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("caller", sa.String(80), nullable=False),
    sa.Column("dialed_number", sa.String(80), nullable=False),
    sa.Column("agent_endpoint", sa.String(80), nullable=False),
    sa.Column("campaign", sa.String(80), nullable=False),
    sa.Column("dial_status", sa.String(24), nullable=True),
    sa.Column("hangup_cause", sa.Integer(), nullable=True),
    sa.Column("hung_up_by", sa.String(16), nullable=True),
    sa.Column("record", sa.Text(), nullable=False),
    sa.Index("ix_call_records_ended_at", "ended_at"),
    sa.Index("ix_call_records_uniqueid", "uniqueid"),
)


def record_row(call: dict[str, Any], *, node_id: str, started: float, answered: float | None,
               ended: float) -> dict[str, Any]:
    """The table row of a finished call (``call``: the schema-1 object of its call.ended event)."""
    return {
        "linkedid": call["linkedid"][:64],
        "uniqueid": call["uniqueid"][:64],
        "node_id": node_id,
        "started_at": started,
        "answered_at": answered,
        "ended_at": ended,
        "direction": call["direction"],
        "caller": (call["caller"]["num"] or "")[:80],
        "dialed_number": (call["dialed_number"] or "")[:80],
        "agent_endpoint": (call["agent_endpoint"] or "")[:80],
        "campaign": (call["campaign"] or "")[:80],
        "dial_status": call["dial_status"],
        "hangup_cause": call["hangup_cause"],
        "hung_up_by": call["hung_up_by"],
        "record": json.dumps(call, separators=(",", ":"), ensure_ascii=False),
    }


def _summary(row: Any) -> dict[str, Any]:
    return {
        "linkedid": row.linkedid, "uniqueid": row.uniqueid, "node_id": row.node_id,
        "started_at": row.started_at, "answered_at": row.answered_at, "ended_at": row.ended_at,
        "direction": row.direction, "caller": row.caller, "dialed_number": row.dialed_number,
        "agent_endpoint": row.agent_endpoint, "campaign": row.campaign, "dial_status": row.dial_status,
        "hangup_cause": row.hangup_cause, "hung_up_by": row.hung_up_by,
    }


async def list_records(store: Store, *, since: float, limit: int = 100) -> list[dict[str, Any]]:
    """Calls that ended at or after ``since`` (epoch s), newest first, at most ``limit``."""
    t = call_records
    query = (sa.select(*[c for c in t.c if c.name != "record"]).where(t.c.ended_at >= since)
             .order_by(t.c.ended_at.desc()).limit(max(1, limit)))
    async with store.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_summary(row) for row in rows]


#: Key prefix of the VICIdial source's reports of an outbound call (`telephonyd.vicidial.payload.outbox_key`:
#: ``vicidial:<vicidial_log.uniqueid>:<status>``). Calls do not import the VICIdial edge; a test
#: builds its rows with that function, so a change of the key shows there.
VICIDIAL_KEY_PREFIX = "vicidial:"


async def show_record(store: Store, key: str, *, call_log_target: str = "did_optimizer") -> dict[str, Any] | None:
    """One call by linkedid or by any leg's uniqueid: its full record plus what was reported for it
    to ``call_log_target``: ``call_log`` (the FastAGI outcome row of one of its legs: ``key``,
    ``state``, ``delivered_at``, ``payload``; or None) and ``vicidial`` (the VICIdial source's
    disposition reports for one of its legs, oldest first, each with its ``status``; ``[]`` when
    none: the source is off, or the call is an inbound closer call, keyed by ``closecallid``)."""
    t = call_records
    async with store.connect() as conn:
        row = (await conn.execute(sa.select(t).where(t.c.linkedid == key))).first()
        if row is None:
            row = (await conn.execute(sa.select(t).where(t.c.uniqueid == key))).first()
        if row is None:
            # Any leg: the record's JSON lists every leg's uniqueid.
            like = sa.select(t).where(t.c.record.contains(f'"uniqueid":"{key}"')).order_by(t.c.ended_at.desc())
            row = (await conn.execute(like.limit(1))).first()
        if row is None:
            return None
        record = json.loads(row.record)
        legs = [leg["uniqueid"] for leg in record.get("legs", [])] or [row.uniqueid]
        o = outbox
        found = (await conn.execute(
            sa.select(o.c.key, o.c.state, o.c.payload, o.c.delivered_at)
            .where(o.c.target == call_log_target, o.c.key.in_(legs)).order_by(o.c.id).limit(1))).first()
        reports = (await conn.execute(
            sa.select(o.c.key, o.c.state, o.c.payload, o.c.delivered_at)
            .where(o.c.target == call_log_target,
                   sa.or_(*[o.c.key.startswith(f"{VICIDIAL_KEY_PREFIX}{leg}:", autoescape=True) for leg in legs]))
            .order_by(o.c.id))).all()
    call_log = None
    if found is not None:
        call_log = {"key": found.key, "state": found.state, "delivered_at": found.delivered_at,
                    "payload": json.loads(found.payload)}
    vicidial = [{"key": r.key, "status": r.key.rsplit(":", 1)[-1], "state": r.state, "delivered_at": r.delivered_at,
                 "payload": json.loads(r.payload)} for r in reports]
    return {**_summary(row), "record": record, "call_log": call_log, "vicidial": vicidial}


def prune_statement(before: float) -> sa.Delete:
    """Delete the records of calls that ended before ``before`` (epoch s)."""
    return call_records.delete().where(call_records.c.ended_at < before)
