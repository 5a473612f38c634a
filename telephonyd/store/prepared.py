"""`Prepared`: a statement compiled once and run straight on the DBAPI cursor of a write transaction.

SQLAlchemy's per-execution work (cache lookup, parameter processing, result wrapping; about 40 µs
a statement) was the largest share of the time the store writer held the GIL on the callback path,
where a transaction runs a few statements per callback. A `Prepared` statement is compiled by
SQLAlchemy for the connection's dialect on first use (SQL text and the order of its positional
parameters), then each execution is one DBAPI ``cursor.execute`` / ``executemany``.

Parameters must be plain values the driver takes as they are (str, int, float, None): no type
processing is applied, and result rows are the driver's tuples. Statements with expanding IN lists
or RETURNING over executemany stay with `Connection.execute`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa


class Prepared:
    """``stmt`` with named bind parameters; see the module docstring."""

    __slots__ = ("_defaults", "_dialect", "_order", "_required", "_sql", "stmt")

    def __init__(self, stmt: sa.Executable) -> None:
        self.stmt = stmt
        self._dialect: Any = None
        self._sql = ""
        self._order: tuple[str, ...] = ()
        self._defaults: dict[str, Any] = {}
        self._required: frozenset[str] = frozenset()

    def _compile(self, dialect: Any) -> None:
        compiled = self.stmt.compile(dialect=dialect)
        if compiled.positiontup is None:  # pragma: no cover - every dialect used here is positional
            raise TypeError(f"dialect {dialect.name} has no positional parameters")
        self._sql = str(compiled)
        self._order = tuple(compiled.positiontup)
        self._defaults = dict(compiled.params)
        self._required = frozenset(name for name, bind in compiled.binds.items() if bind.required)
        self._dialect = dialect

    def _args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        missing = self._required.difference(params)
        if missing:
            raise sa.exc.ArgumentError(f"missing bind parameters {sorted(missing)} for {self._sql[:80]!r}")
        defaults = self._defaults
        return tuple(params[name] if name in params else defaults[name] for name in self._order)

    def execute(self, conn: sa.Connection, params: Mapping[str, Any]) -> Any:
        """Run once with ``params``; returns the DBAPI cursor (``rowcount``, ``fetchone()``).

        The driver's errors are raised as SQLAlchemy's (`sa.exc.OperationalError`, ...), as
        `Connection.execute` would raise them.
        """
        if conn.dialect is not self._dialect:
            self._compile(conn.dialect)
        args = self._args(params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self._sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, self._sql, args, exc) from exc
        return cursor

    def executemany(self, conn: sa.Connection, params: Sequence[Mapping[str, Any]]) -> int:
        """Run once per parameter set in one driver call; returns the total row count."""
        if conn.dialect is not self._dialect:
            self._compile(conn.dialect)
        args = [self._args(p) for p in params]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(self._sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, self._sql, args, exc) from exc
        return int(cursor.rowcount)


def _wrapped(conn: sa.Connection, sql: str, args: Any, exc: Exception) -> sa.exc.DBAPIError:
    dbapi = conn.dialect.loaded_dbapi
    return sa.exc.DBAPIError.instance(  # type: ignore[return-value]
        sql, args, exc, dbapi.Error, hide_parameters=True, dialect=conn.dialect)
