"""The request log: every callback received, the decision, the TopS.II request and its reply.

One row per callback (and one per phone-1 result sent on expiry), keyed by ``request_id``, in the
style of VICIdial's ``vicidial_url_log``. Rows are written in the callback's own transaction and
updated as the outbox reports each attempt. Old rows go after ``ameyo.request_log_retention_s``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import sqlalchemy as sa

from ..store import Prepared, Store
from .batch import Transaction
from .schema import request_log

#: Upstream reply bodies are kept up to this many characters.
BODY_MAX = 4000


def new_request_id() -> str:
    """A 16-hex-digit id, answered to Ameyo and carried by every log line about the callback."""
    return secrets.token_hex(8)


#: One encoder for every row (``json.dumps`` with options builds a new one per call); the values
#: are plain data built here (no cycles), so the cycle check is left out.
_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"), default=str)


def dumps(value: Any) -> str | None:
    """Compact JSON (non-ASCII kept, anything else as ``str``); None stays None."""
    return None if value is None else _ENCODER.encode(value)


#: Every column a row may set; rows written together must carry the same keys.
_COLUMNS = ("request_id", "node_id", "channel", "flow", "path", "call_id", "customer_id", "http_status", "query",
            "decision", "error", "error_field", "api", "outbox_key", "payload", "outcome", "upstream_status",
            "upstream_body", "upstream_error", "attempts", "related_request_id")


#: `Transaction.memo` key: request id -> its row queued for the insert in this transaction.
_QUEUED = "request_log_rows"


class RequestLog:
    """Request log writes for one `Store`, all deferred to the end of the writer's transaction
    (`Transaction.later`): inserts go as one multi-row statement, updates as one executemany."""

    def __init__(self, store: Store) -> None:
        self.store = store
        now = store.now_expr()
        columns = {name: sa.bindparam(name) for name in _COLUMNS}
        self._insert = Prepared(sa.insert(request_log).values(created_at=now, updated_at=now, **columns))
        by_id = request_log.c.request_id == sa.bindparam("b_request_id")
        self._mark = Prepared(sa.update(request_log).where(by_id).values(
            outcome=sa.bindparam("b_outcome"), related_request_id=sa.bindparam("b_related"), updated_at=now))
        self._result = Prepared(sa.update(request_log).where(by_id).values(
            outcome=sa.bindparam("b_outcome"), upstream_status=sa.bindparam("b_status"),
            upstream_body=sa.bindparam("b_body"), upstream_error=sa.bindparam("b_error"),
            attempts=sa.bindparam("b_attempts"), updated_at=now))

    def insert(self, tx: Transaction, **values: Any) -> None:
        """Queue one row; JSON columns (query, decision, payload) may be given as data."""
        for column in ("query", "decision", "payload"):
            if column in values and not isinstance(values[column], (str, type(None))):
                values[column] = dumps(values[column])
        row = dict.fromkeys(_COLUMNS)
        row.update(attempts=0, node_id="", path="")
        row.update(values)
        tx.later(self._insert, row)
        tx.memo.setdefault(_QUEUED, {}).setdefault(row["request_id"], row)

    def mark(self, tx: Transaction, request_id: str, outcome: str, related_request_id: str | None) -> None:
        """Set the outcome of an earlier callback's row (its phone 1 was combined or expired)."""
        if not self._amend(tx, request_id, outcome=outcome, related_request_id=related_request_id):
            tx.later(self._mark, {"b_request_id": request_id, "b_outcome": outcome, "b_related": related_request_id})

    def note_result(self, tx: Transaction, request_id: str, outcome: str, *, status: int | None, body: str | None,
                    error: str | None, attempts: int) -> None:
        """Record one TopS.II attempt (outcome delivered, dry_run, retry or dead) on the row."""
        body = body[:BODY_MAX] if body is not None else None
        values = {"outcome": outcome, "upstream_status": status, "upstream_body": body, "upstream_error": error,
                  "attempts": attempts}
        if not self._amend(tx, request_id, **values):
            tx.later(self._result, {"b_request_id": request_id, "b_outcome": outcome, "b_status": status,
                                    "b_body": body, "b_error": error, "b_attempts": attempts})

    def _amend(self, tx: Transaction, request_id: str, **values: Any) -> bool:
        """Change the row of ``request_id`` if it is still queued in ``tx`` (found by id: a batch
        holds hundreds of rows and as many results to note)."""
        row = tx.memo.get(_QUEUED, {}).get(request_id)
        if row is None:
            return False
        row.update(values)
        return True

    def prune(self, conn: sa.Connection, retention_s: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` rows older than ``retention_s``; returns the count."""
        cutoff = self.store.now_expr() - retention_s
        stmt = sa.select(request_log.c.id).where(request_log.c.created_at < cutoff).limit(limit)
        ids = conn.execute(stmt).scalars().all()
        if not ids:
            return 0
        return conn.execute(sa.delete(request_log).where(request_log.c.id.in_(ids))).rowcount


async def query(
    store: Store,
    *,
    request_id: str | None = None,
    call_id: str | None = None,
    since_s: float | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Rows newest first, JSON columns decoded; filters combine."""
    stmt = sa.select(request_log).order_by(request_log.c.id.desc()).limit(limit)
    if request_id:
        stmt = stmt.where(request_log.c.request_id == request_id)
    if call_id:
        stmt = stmt.where(request_log.c.call_id == call_id)
    if since_s is not None:
        stmt = stmt.where(request_log.c.created_at >= store.now_expr() - since_s)
    async with store.connect() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        for column in ("query", "decision", "payload"):
            if item.get(column):
                try:
                    item[column] = json.loads(item[column])
                except ValueError:
                    pass
        out.append(item)
    return out
