"""The one list of what a store operation raises when the database is down, slow or refusing
(anything else is a bug and ends the process)."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError

#: ``except STORE_ERRORS``: the driver's and SQLAlchemy's errors, a socket error, a timeout, and
#: `StoreError` (what `Store` itself raises: missing, damaged, unreachable, refused).
STORE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError, StoreError)
