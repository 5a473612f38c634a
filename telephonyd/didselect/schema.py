"""The ``did_selection`` table: one row per call leg that asked ``did_select`` (last ask wins).

``uniqueid`` is the leg's Asterisk uniqueid, ``request_id`` what went in ``X-Request-ID`` (the same
uniqueid today; kept apart so a report can name the request it follows). ``result`` is the route's
word (`constants.RESULTS`), ``status`` the ``OPTIMIZER_STATUS`` set, ``did`` the DID set as caller
id (None: left alone), ``reason`` why the API's answer was not used, ``latency_ms`` from the session's
start to the decision. Times are epoch seconds of the host clock (DOUBLE).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

did_selection = sa.Table(
    "did_selection",
    metadata,
    sa.Column("uniqueid", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("did", sa.String(20), nullable=True),
    sa.Column("fallback", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("reason", sa.String(24), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("latency_ms", sa.Double(), nullable=False),
    sa.Column("campaign", sa.String(64), nullable=False, server_default=""),
    sa.Column("area_code", sa.String(8), nullable=False, server_default=""),
    sa.Column("node_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Index("ix_did_selection_created_at", "created_at"),
)
