"""telephonyd's own tables for the VICIdial source (in the main store, never in VICIdial's database).

- ``vicidial_checkpoint``: one row per VICIdial table read (``vicidial_log``,
  ``vicidial_closer_log``): where the reading of new rows stands (``head_date`` / ``head_key``) and
  where the sweep of the re-read window stands (``sweep_date``). ``version`` grows with every
  commit; a commit whose version no longer matches (another instance committed first) is rolled
  back whole, outbox rows included, so two instances never both report a batch.
- ``vicidial_seen``: the last status seen per call (``call_key``: ``vicidial_log.uniqueid`` or
  ``vicidial_closer_log.closecallid``), ``open`` while that status is transient; the calls still
  open are re-read by primary key on every poll. Rows older than the re-read window are pruned.

Dates are VICIdial's ``call_date`` as written by VICIdial (server local time), as
``YYYY-MM-DD HH:MM:SS`` text, which sorts like the DATETIME.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

checkpoint = sa.Table(
    "vicidial_checkpoint",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("head_date", sa.String(19), nullable=False),
    sa.Column("head_key", sa.String(32), nullable=False, server_default=""),
    sa.Column("sweep_date", sa.String(19), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("rows_read", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("reported", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("node_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("updated_at", sa.Double(), nullable=False),
)

seen = sa.Table(
    "vicidial_seen",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("call_key", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("open", sa.Boolean(), nullable=False),
    sa.Column("call_date", sa.String(19), nullable=False),
    sa.Index("ix_vicidial_seen_open", "source", "open", "call_date"),
    sa.Index("ix_vicidial_seen_call_date", "source", "call_date"),
)
