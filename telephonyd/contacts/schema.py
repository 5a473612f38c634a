"""The ``ps_contacts`` table: Asterisk's realtime columns exactly, plus three status columns of ours.

Asterisk's columns follow its alembic migrations as of 22.x (contrib/ast-db-manage/config/versions:
43956d550a44 created the table, e96a0b8071c widened ``id``/``uri``/``user_agent`` to 255,
1d3ed26d9978 ``uri`` to 511, 81b01a191a46 added ``reg_server`` and the unique key
``ps_contacts_uq`` (id, reg_server), 1ae0609b6646 widened ``reg_server`` to 255, ef7efc2d3964 added
``endpoint``, made ``expiration_time`` BIGINT and the index ``ps_contacts_qualifyfreq_exp``; the
boolean columns use the ``ast_bool_values`` enum). ``id`` is also UNIQUE on its own and indexed
(``ps_contacts_id``); there is no primary key. Asterisk ignores columns it does not know when it
reads a row, and names every column it knows when it inserts one, so our added columns must be
nullable.

Ours: ``status`` (the contact status: NonQualified, Reachable, Unreachable, Unknown),
``roundtrip_usec`` (the qualify round trip with that status), ``status_updated_at`` (epoch s of
the last status change).

Key sizes: the unique keys over ``id`` VARCHAR(255) and (``id``, ``reg_server``) 2 x VARCHAR(255)
take 1,020 and 2,040 bytes in utf8mb4. That exceeds the old 767-byte InnoDB limit, but InnoDB's
DYNAMIC row format (the default since MariaDB 10.2 / MySQL 5.7, large prefixes always on since
MariaDB 10.3) allows 3,072 bytes: checked on MariaDB 10.11 by tests/integration. These columns are
kept at Asterisk's sizes on purpose instead of the usual 191-character cap, so the table is
interchangeable with the one Asterisk's own alembic creates.
"""

from __future__ import annotations

import sqlalchemy as sa

#: Asterisk's ``ast_bool_values`` enum (22.x); we only ever write ``yes``/``no``, valid in every version.
AST_BOOL_VALUES = ("0", "1", "off", "on", "false", "true", "no", "yes")

metadata = sa.MetaData()


def _ast_bool() -> sa.Enum:
    return sa.Enum(*AST_BOOL_VALUES, name="ast_bool_values")


def _asterisk(name: str, type_: sa.types.TypeEngine | type, **kwargs: object) -> sa.Column:  # type: ignore[type-arg]
    """A column of Asterisk's schema. ``info["owner"]`` lets a migration leave such columns alone on
    an Asterisk-managed table (adding one there would break Asterisk's own later alembic upgrade)."""
    return sa.Column(name, type_, info={"owner": "asterisk"}, **kwargs)  # type: ignore[arg-type]


def _table(into: sa.MetaData, *, primary_key: bool) -> sa.Table:
    """``ps_contacts`` in ``into``; ``primary_key`` makes ``id`` (already NOT NULL and unique) the
    primary key, which Galera needs for DELETE and ``wsrep_mode=REQUIRED_PRIMARY_KEY`` for CREATE."""
    return sa.Table(
        "ps_contacts",
        into,
        _asterisk("id", sa.String(255), nullable=False, unique=True, primary_key=primary_key),
        _asterisk("uri", sa.String(511)),
        _asterisk("expiration_time", sa.BigInteger),
        _asterisk("qualify_frequency", sa.Integer),
        _asterisk("outbound_proxy", sa.String(255)),
        _asterisk("path", sa.Text),
        _asterisk("user_agent", sa.String(255)),
        _asterisk("qualify_timeout", sa.Float),
        _asterisk("reg_server", sa.String(255)),
        _asterisk("authenticate_qualify", _ast_bool()),
        _asterisk("via_addr", sa.String(40)),
        _asterisk("via_port", sa.Integer),
        _asterisk("call_id", sa.String(255)),
        _asterisk("endpoint", sa.String(255)),
        _asterisk("prune_on_boot", _ast_bool()),
        _asterisk("qualify_2xx_only", _ast_bool()),
        # telephonyd's own columns (added to an Asterisk-managed table by the additive migration)
        sa.Column("status", sa.String(40), info={"owner": "telephonyd"}),
        sa.Column("roundtrip_usec", sa.BigInteger, info={"owner": "telephonyd"}),
        sa.Column("status_updated_at", sa.Double, info={"owner": "telephonyd"}),
        sa.UniqueConstraint("id", "reg_server", name="ps_contacts_uq"),
        sa.Index("ps_contacts_id", "id"),
        sa.Index("ps_contacts_qualifyfreq_exp", "qualify_frequency", "expiration_time"),
    )


ps_contacts = _table(metadata, primary_key=False)

#: The same table with ``PRIMARY KEY (id)``: created this way in owned mode, where telephonyd creates
#: and writes the table and no Asterisk alembic will upgrade it. Asterisk's own reads and writes
#: name columns, never the key, so the table stays interchangeable.
owned_metadata = sa.MetaData()
_table(owned_metadata, primary_key=True)


def metadata_for(mode: str) -> sa.MetaData:
    """The MetaData to create ``ps_contacts`` from: with a primary key in ``owned`` mode, exactly
    Asterisk's schema (no primary key) in ``asterisk`` mode."""
    return owned_metadata if mode == "owned" else metadata


#: Columns telephonyd adds; everything else belongs to Asterisk.
OWN_COLUMNS = ("status", "roundtrip_usec", "status_updated_at")
