"""The ``outbox`` table.

Times are epoch seconds of the database clock (``Store.now_expr()``) as DOUBLE. ``claimed_by``
keeps the node that claimed the row last (who delivered it, or who tried last), ``claim_token`` the
process of that node; ``lease_until`` is
set only while the row is ``in_flight``. ``enqueue_batch`` tells an enqueue batch which rows it
inserted itself (insert-or-ignore gives no per-row answer on either dialect).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from .model import MAX_KEY_CHARS, MAX_TARGET_CHARS

metadata = sa.MetaData()

_Payload = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _exact(length: int) -> sa.types.TypeEngine[str]:
    """A VARCHAR compared byte for byte on MySQL (its default collation ignores case)."""
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb")


outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("target", _exact(MAX_TARGET_CHARS), nullable=False),
    sa.Column("key", _exact(MAX_KEY_CHARS), nullable=False),
    sa.Column("payload", _Payload, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Double(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_status", sa.Integer(), nullable=True),
    sa.Column("node_id", sa.String(64), nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    # The claiming process (`telephonyd.outbox.claimant`): results and releases apply only to the
    # rows of this token; a restart takes back its dead predecessor's claims by it.
    sa.Column("claim_token", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Double(), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("delivered_at", sa.Double(), nullable=True),
    sa.Column("log_context", sa.Text(), nullable=True),
    sa.Column("enqueue_batch", sa.String(32), nullable=True),
    sa.UniqueConstraint("target", "key", name="uq_outbox_target_key"),
    # The claim query runs per target (state, target, next_attempt_at <= now ORDER BY
    # next_attempt_at), so a backlog of a disabled target never slows the others' claims.
    sa.Index("ix_outbox_claim", "state", "target", "next_attempt_at"),
    sa.Index("ix_outbox_prune", "state", "delivered_at"),
)
