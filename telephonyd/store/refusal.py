"""Whether the store accepts writes: a full disk, a read-only file system or database.

A store that answers ``SELECT 1`` may still refuse every write (SQLite: ``database or disk is
full``, ``attempt to write a readonly database``, ``disk I/O error``; MariaDB/MySQL: errors 1021
disk full, 1114 table full, 1290/1792 read-only, 1036 table read-only). `WriteState` hears every
such error of the store's engines (SQLAlchemy's ``handle_error`` event) and keeps the reason until
the store is shown to accept writes again. With the probe (the daemon's store), only the probe
shows it: a real write of `PROBE_PAD_BYTES` to the store's own ``store_probe`` table, at most every
`PROBE_INTERVAL_S`, which finds out when space or write access is back even when no traffic
arrives (a load balancer waiting on ``/readyz`` sends none). A small write of the traffic does not:
on a nearly full disk SQLite still fits a one-page UPDATE into WAL space it reuses while a call's
record (several pages) is refused, and readiness must not flap on that. Without the probe, a
write that changed rows clears the reason.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

log = logging.getLogger(__name__)

#: Seconds between probe writes while the store refuses writes.
PROBE_INTERVAL_S = 1.0
#: Bytes each probe writes: more than the largest routine write (a call record with its outbox
#: item, a few 4 KiB pages), so a store that takes the probe takes the traffic.
PROBE_PAD_BYTES = 32768
#: Probe rows of processes that are gone are deleted after this many seconds.
_PROBE_ROW_TTL_S = 86400.0

_SQLITE_REFUSALS = ("database or disk is full", "readonly database", "disk i/o error", "read-only file system",
                    "no space left")
_MYSQL_REFUSALS = (1021, 1114, 1290, 1792, 1036)

probe_metadata = sa.MetaData()
#: One row per process using the store (``holder``), rewritten by each probe.
probe_table = sa.Table(
    "store_probe",
    probe_metadata,
    sa.Column("holder", sa.String(32), primary_key=True),
    sa.Column("at", sa.Double(), nullable=False),
    sa.Column("pad", sa.LargeBinary(), nullable=True),  # PROBE_PAD_BYTES (added to older stores)
)


def refusal_reason(exc: BaseException) -> str | None:
    """A short reason when ``exc`` (a SQLAlchemy or driver error) says the store refuses writes."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_REFUSALS:
        return f"MySQL error {args[0]}: {str(args[1]) if len(args) > 1 else ''}"[:300]
    text = str(orig).splitlines()[0] if str(orig) else ""
    if any(marker in text.lower() for marker in _SQLITE_REFUSALS):
        return text[:300]
    return None


class WriteState:
    """The store's write health: ``reason`` (None while writes work) and ``since`` (epoch s).

    Thread-safe: errors arrive from the SQLite writer thread as well as the event loop.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.since: float | None = None
        self.changed = 0
        self.holder = uuid.uuid4().hex
        self._next_probe = 0.0
        self._lock = threading.Lock()

    def install(self, engine: sa.Engine) -> None:
        """Listen to ``engine``'s errors and row-changing statements."""
        event.listen(engine, "handle_error", self._on_error)
        event.listen(engine, "after_cursor_execute", self._on_execute)

    def refused(self, reason: str) -> None:
        with self._lock:
            first = self.reason is None
            self.reason = reason
            if first:
                self.since = time.time()
        if first:
            log.error("the store refuses writes; not ready until it accepts them again", extra={"error": reason})

    def accepted(self) -> None:
        with self._lock:
            was, self.reason, self.since = self.reason, None, None
        if was is not None:
            log.info("the store accepts writes again", extra={"was": was})

    def probe_due(self) -> bool:
        """True (and the next probe scheduled) when a refusing store should be probed now."""
        now = time.monotonic()
        with self._lock:
            if self.reason is None or now < self._next_probe:
                return False
            self._next_probe = now + PROBE_INTERVAL_S
            return True

    def probe_work(self, conn: sa.Connection) -> None:
        """The probe: rewrite this process's row with `PROBE_PAD_BYTES` (real pages), drop rows of
        old processes."""
        now = time.time()
        conn.execute(sa.delete(probe_table).where(sa.or_(probe_table.c.holder == self.holder,
                                                         probe_table.c.at < now - _PROBE_ROW_TTL_S)))
        conn.execute(sa.insert(probe_table).values(holder=self.holder, at=now, pad=bytes(PROBE_PAD_BYTES)))

    def describe(self) -> dict[str, Any]:
        return {"write_error": self.reason, "refusing_since": self.since}

    # -- SQLAlchemy events -----------------------------------------------------------------------

    def _on_error(self, context: Any) -> None:
        reason = refusal_reason(context.original_exception)
        if reason is not None:
            self.refused(reason)

    def _on_execute(self, _conn: Any, cursor: Any, _statement: str, _params: Any, context: Any,
                    _executemany: bool) -> None:
        if context is not None and (context.isinsert or context.isupdate or context.isdelete):
            if (cursor.rowcount or 0) > 0:
                with self._lock:
                    self.changed += 1
