"""`SQLiteWriter`: every write transaction of a SQLite store run whole on one thread of its own.

aiosqlite hands each SQLite call to a thread and every result back to the event loop: a
transaction of a dozen statements is a dozen hand-overs, each waiting for a turn of a busy loop,
and the write lock is held across all of them. Another writer of the same process meanwhile gets
SQLITE_BUSY and sleeps in SQLite's busy handler (1, 2, 5, 10 ms ...), which is where the latency
of a loaded SQLite store went. Here a write transaction is one plain function over a synchronous
SQLAlchemy `Connection`, run from ``BEGIN IMMEDIATE`` to ``COMMIT`` in one hand-over to a single
writer thread: writers of this process queue in order instead of sleeping on the lock, and the
event loop is woken once per transaction.

The writer has its own connection (pysqlite, same file, same pragmas as the async engine). Other
processes (the CLI, a second daemon on the same file) still meet the busy timeout as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds SQLite waits for a lock held by another connection before failing with "database is locked".
BUSY_TIMEOUT_S = 30


class AbandonedWrite(Exception):
    """The caller stopped waiting (cancelled, timed out) before COMMIT: the transaction was rolled back."""


class SQLiteWriter:
    """One thread, one connection, one write transaction at a time.

    ``url`` is the store's URL with any SQLite driver (the writer uses pysqlite). Transactions run
    in the order they were queued, urgent ones (a caller is answering a peer on it) ahead of the
    rest. `run` raises what the work raises (SQLAlchemy wraps SQLite's errors, as on the async
    engine).
    """

    def __init__(self, url: URL, pragmas: Callable[[Any, Any], None]) -> None:
        self.engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"),
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
            pool_size=1,
            max_overflow=0,
        )
        event.listen(self.engine, "connect", _autocommit_driver)
        event.listen(self.engine, "connect", pragmas)
        event.listen(self.engine, "begin", _begin_immediate)
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._conn: sa.Connection | None = None  # the writer thread's own (`_transaction`)
        self._thread = threading.Thread(target=self._serve, name="store-writer", daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[sa.Connection], T], *, urgent: bool = False) -> T:
        """Run ``work(conn)`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the writer thread.

        The caller's context variables (log context) are visible to ``work``. A caller cancelled
        while its work waits or runs gets `CancelledError`; the work, if it started, is rolled back
        at its end instead of committed (unless COMMIT had already begun).
        """
        loop = asyncio.get_running_loop()
        job = _Job(work, contextvars.copy_context(), loop, loop.create_future())
        self._queue.put((0 if urgent else 1, next(self._seq), job))
        try:
            return await job.future
        except asyncio.CancelledError:
            job.abandoned = True
            raise

    def _serve(self) -> None:
        try:
            self._serve_jobs()
        finally:
            if self._conn is not None:
                self._conn.close()

    def _serve_jobs(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            if job.abandoned:
                continue
            result, error = None, None
            try:
                result = job.context.run(self._transaction, job)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                error = exc
            try:
                job.loop.call_soon_threadsafe(_settle, job.future, result, error)
            except RuntimeError:  # the caller's event loop is closed: nobody is waiting any more
                pass

    def _transaction(self, job: _Job) -> Any:
        # One connection held for the thread's life, opened by the first transaction (a failure to
        # open it goes to that caller; the next one tries again): checking one out of the pool and
        # back for every transaction cost about a fifth of the thread's CPU per small transaction.
        conn = self._conn
        if conn is None:
            conn = self._conn = self.engine.connect()
        try:
            with conn.begin():
                result = job.work(conn)
                if job.abandoned:
                    raise AbandonedWrite("the caller stopped waiting; rolled back")
                return result
        except BaseException:
            if conn.invalidated:  # the driver connection is gone: a fresh one for the next
                self._conn = None
                conn.close()
            raise

    def close(self) -> None:
        """Finish the transactions queued so far, then stop the thread and close the connection."""
        self._queue.put((2, next(self._seq), None))
        self._thread.join()
        self.engine.dispose()


class _Job:
    __slots__ = ("abandoned", "context", "future", "loop", "work")

    def __init__(self, work: Callable[[sa.Connection], Any], context: contextvars.Context,
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.work = work
        self.context = context
        self.loop = loop
        self.future = future
        self.abandoned = False


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _autocommit_driver(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite would issue its own (deferred) BEGIN before the first write; SQLAlchemy's "begin"
    # event issues BEGIN IMMEDIATE instead (SQLAlchemy's documented recipe for pysqlite).
    dbapi_conn.isolation_level = None


def _begin_immediate(conn: sa.Connection) -> None:
    # IMMEDIATE: take the write lock first (waiting out the busy timeout), rather than fail with
    # SQLITE_BUSY_SNAPSHOT when a read snapshot would have to become a write.
    # Straight on the driver connection: through `Connection.exec_driver_sql` it took about 35 µs
    # of this thread (holding the GIL) per transaction against 16 µs. A driver error is raised as
    # SQLAlchemy's (`sa.exc.OperationalError` for "database is locked" ...), and a closed
    # connection is invalidated (the writer then opens a new one), as that path did.
    dialect = conn.dialect
    dbapi_conn = conn.connection.dbapi_connection
    try:
        dbapi_conn.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
    except dialect.loaded_dbapi.Error as exc:
        error = sa.exc.DBAPIError.instance("BEGIN IMMEDIATE", (), exc, dialect.loaded_dbapi.Error,
                                           hide_parameters=True, dialect=dialect)
        if dialect.is_disconnect(exc, dbapi_conn, None):
            conn.invalidate(error)
        raise error from exc
