"""The one list of what a store operation raises when the database is down, slow or refusing
(anything else is a bug and ends the process)."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError

#: ``except STORE_ERRORS``: the driver's and SQLAlchemy's errors, a socket error, a timeout, and
#: `StoreError` (what `Store` itself raises: missing, damaged, unreachable, refused).
STORE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError, StoreError)


def short_error(exc: BaseException) -> str:
    """One line about a store error, without the SQL statement: ``<Type>: <first line>`` (300
    characters at most), or ``timed out`` for a timeout."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    lines = str(getattr(exc, "orig", None) or exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"
