"""Tables of the Ameyo callback edge: the dedupe gate, phone-1 state, the request log.

Times are epoch seconds (DOUBLE) on the database clock (`Store.now_expr`), so several daemon
instances sharing one MariaDB judge TTLs alike. Keys are at most 150 characters (see
`routing.bounded_key`), within the 191-character limit of an indexed utf8mb4 column.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: Gate states. ``processing``: the send is queued in the outbox; ``processed``: TopS.II accepted it
#: (or the dry run recorded it); ``waiting_phone2``: phone 1 stored, phone 2 may pass; ``failed``:
#: the send became a dead letter (blocks nothing).
PROCESSING, PROCESSED, WAITING_PHONE2, FAILED = "processing", "processed", "waiting_phone2", "failed"

gate = sa.Table(
    "ameyo_gate",
    metadata,
    sa.Column("gate_key", sa.String(191), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("request_id", sa.String(32), nullable=False),
    sa.Column("flow", sa.String(24), nullable=False),
    sa.Index("ix_ameyo_gate_updated_at", "updated_at"),
)

phone1_state = sa.Table(
    "ameyo_phone1_state",
    metadata,
    sa.Column("state_key", sa.String(191), primary_key=True),
    sa.Column("call_id", sa.String(32), nullable=False),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(64), nullable=False),
    sa.Column("gate_key", sa.String(191), nullable=False),
    sa.Column("request_id", sa.String(32), nullable=False),
    sa.Column("stored_at", sa.Double(), nullable=False),
    # The one-phone createNotAnswer to send if phone 2 never comes.
    sa.Column("expiry_key", sa.String(191), nullable=False),
    sa.Column("expiry_body", sa.Text(), nullable=False),
    sa.Index("ix_ameyo_phone1_state_stored_at", "stored_at"),
)

request_log = sa.Table(
    "ameyo_request_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(32), nullable=False, unique=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("node_id", sa.String(64), nullable=False, server_default=""),
    # call_start, call_end, not_answer, general (a callback that could not be routed).
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("flow", sa.String(24), nullable=True),
    sa.Column("path", sa.String(64), nullable=False, server_default=""),
    sa.Column("call_id", sa.String(64), nullable=True),
    sa.Column("customer_id", sa.String(64), nullable=True),
    sa.Column("http_status", sa.Integer(), nullable=False),
    sa.Column("query", sa.Text(), nullable=True),  # JSON, without the token parameter
    sa.Column("decision", sa.Text(), nullable=True),  # JSON: flow, status, errorInfo*, phone1_state, skip
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("error_field", sa.String(64), nullable=True),
    sa.Column("api", sa.String(32), nullable=True),
    sa.Column("outbox_key", sa.String(191), nullable=True),
    sa.Column("payload", sa.Text(), nullable=True),  # JSON body sent to TopS.II
    # rejected, skipped, duplicate, waiting_phone2, combined, expired, discarded, queued, retry,
    # delivered, dry_run, dead.
    sa.Column("outcome", sa.String(24), nullable=False),
    sa.Column("upstream_status", sa.Integer(), nullable=True),
    sa.Column("upstream_body", sa.Text(), nullable=True),
    sa.Column("upstream_error", sa.Text(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("related_request_id", sa.String(32), nullable=True),
    sa.Index("ix_ameyo_request_log_created_at", "created_at"),
    sa.Index("ix_ameyo_request_log_call_id", "call_id"),
)
