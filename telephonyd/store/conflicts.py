"""Write conflicts: a transaction the database rolled back so that another could go ahead.

MariaDB/MySQL: 1213 deadlock (InnoDB picked a victim; on Galera also "WSREP detected
deadlock/conflict and aborted the transaction", certification failing at COMMIT because another node
committed the same rows first) and 1205 lock wait timeout. A Galera node also reports a certification
failure as 1047 or 1180 with a ``WSREP`` text ("WSREP detected deadlock/conflict", "Got error 149
'Lock deadlock; Try restarting transaction' during COMMIT"), seen on MariaDB 10.11 with galera-4 26.4.
All of them ask the client to restart the transaction: the store is fine, the rows were contended.
They are counted (`ConflictCounter`, exported as ``telephonyd_store_conflicts_total{op}``) and are
never reported as the store being unavailable.
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from ..errors import StoreError

#: Errors that always mean "restart the transaction".
RESTART_ERRORS = (1213, 1205)
#: Errors that mean it only with a WSREP conflict text (otherwise: node not ready, commit failed).
_WSREP_ERRORS = (1047, 1180)
_WSREP_MARKERS = ("deadlock", "conflict")


class StoreConflict(StoreError):
    """A transaction kept losing to concurrent writers until its attempts ran out (retryable).

    ``op`` names the operation (``claim``, ``result``, ``enqueue``...), ``attempts`` how many were made.
    """

    retryable = True

    def __init__(self, message: str, *, op: str, attempts: int) -> None:
        super().__init__(message)
        self.op = op
        self.attempts = attempts


def is_conflict(exc: BaseException) -> bool:
    """True when ``exc`` (a SQLAlchemy error or a driver error) asks for the transaction to be
    restarted because of concurrent writers (see the module docstring for the codes)."""
    if isinstance(exc, StoreConflict):
        return True
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if not args or not isinstance(args[0], int):
        return False
    if args[0] in RESTART_ERRORS:
        return True
    if args[0] in _WSREP_ERRORS:
        text = " ".join(str(a) for a in args[1:]).lower()
        return "wsrep" in text and any(marker in text for marker in _WSREP_MARKERS)
    return False


def is_lock_conflict(exc: BaseException) -> bool:
    """True when the database refused ``exc``'s transaction over locks held by concurrent writers:
    a write conflict (`is_conflict`: MariaDB deadlock, lock wait timeout, Galera
    certification) or SQLite's ``database is locked`` (another process held the file past the
    busy timeout). Trying the same transaction again later may succeed."""
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    if is_conflict(exc):
        return True
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return any(s in text for s in ("deadlock", "lock wait timeout", "database is locked"))


class ConflictCounter:
    """Conflicts per operation (``restarted``: the transaction was run again; ``exhausted``: its
    attempts ran out). Thread-safe; label values are the callers' fixed op names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.restarted: dict[str, int] = {}
        self.exhausted: dict[str, int] = {}

    def record(self, op: str, *, exhausted: bool = False) -> None:
        with self._lock:
            self.restarted[op] = self.restarted.get(op, 0) + 1
            if exhausted:
                self.exhausted[op] = self.exhausted.get(op, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"by_op": dict(self.restarted), "exhausted": dict(self.exhausted)}
