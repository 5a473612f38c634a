"""`Store`: one async engine, schema creation at start, dialect helpers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import StoreError
from . import integrity
from .conflicts import ConflictCounter
from .failover import Failover
from .migrate import ensure_schema, schema_lock
from .refusal import WriteState, probe_metadata
from .writer import SQLiteWriter

log = logging.getLogger(__name__)
T = TypeVar("T")


def dialect_of(url: str) -> str:
    """``'sqlite'`` or ``'mysql'`` (MariaDB counts as mysql) for a SQLAlchemy URL."""
    name = make_url(url).get_backend_name()
    if name == "sqlite":
        return "sqlite"
    if name in ("mysql", "mariadb"):
        return "mysql"
    raise StoreError(f"unsupported database backend {name!r}")


def redact_url(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """An async SQLAlchemy engine over SQLite or MariaDB/MySQL.

    ``schemas`` are the MetaData objects whose tables must exist; `start` creates missing tables and
    adds missing columns (never drops or alters existing ones), so the same code upgrades a store in
    place. Use `write` for a write transaction of several statements (one hand-over on SQLite),
    `begin` for an async transaction and `connect` for reads.

    SQLite runs in WAL mode with a busy timeout, so several connections and processes can share one
    file; ``durability`` (`DURABILITY`, config ``store.durability``) sets its ``synchronous``:
    ``full`` (default): a committed row survives kill -9 and power loss (an fsync of the WAL per
    commit); ``normal``: it survives a crash of the process, the last commits may be lost on power
    loss (the WAL is fsynced at checkpoints only). On MariaDB/MySQL the server decides (see
    ``docs/operations.md``); ``durability`` changes nothing there. Its pool returns
    connections without the usual extra ROLLBACK: `begin` and `connect` blocks end their own
    transactions, so whoever uses a driver connection directly must do the same.
    """

    def __init__(
        self,
        url: str,
        *,
        schemas: Sequence[sa.MetaData] = (),
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
        create: bool = True,
        check: bool = False,
        write_probe: bool = False,
        urls: Sequence[str] = (),
        durability: str = "full",
    ) -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}, not {durability!r}")
        self.durability = durability
        self._pragmas = _sqlite_pragmas if durability == "full" else _sqlite_pragmas_normal
        self.url = url
        #: MariaDB/MySQL servers of one database tried in order (``url`` first), with failover
        #: between them while running (`failover.Failover`); empty or one: no failover.
        self.urls = list(urls) if urls else [url]
        self._failover: Failover | None = None
        self.create = create
        self.check = check
        self.dialect = dialect_of(url)
        self.schemas = list(schemas)
        #: Write health (`refusal.WriteState`): a full disk or read-only store, heard from every
        #: engine; ``write_probe`` adds the ``store_probe`` table that `accepts_writes` writes to.
        self.write_state = WriteState()
        #: Write conflicts (deadlocks, Galera certification failures) by operation, counted by the
        #: callers that restart their transactions (`conflicts.ConflictCounter`).
        self.conflicts = ConflictCounter()
        self._write_probe = write_probe
        if write_probe:
            self.schemas.append(probe_metadata)
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self._engine: AsyncEngine | None = None
        self._writer: SQLiteWriter | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the engine and ensure every schema.

        A SQLite file is judged first (`integrity.preflight`): a missing or empty file that held the
        store, a foreign header or an unwritable directory raise `StoreDamaged` / `StoreError` with
        ``retryable=False``, and so does ``PRAGMA quick_check`` finding damage when ``check`` is set
        (the daemon's start; O(file size)). Without ``create`` (the CLI) a missing store raises
        `StoreMissing` instead of being created. Once the schema is in place the store's marker is
        written. Raises `StoreError` (``retryable`` True only for what waiting can fix: a database
        server down or unreachable, a lock held elsewhere) when the store cannot be used.
        """
        url = make_url(self.url)
        file = Path(url.database) if self.dialect == "sqlite" and url.database and url.database != ":memory:" else None
        if file is not None:
            new = await asyncio.to_thread(integrity.preflight, file, create=self.create)
            if self.check and not new:
                await asyncio.to_thread(integrity.check_whole, file)
        if len(self.urls) > 1 and self.dialect == "mysql":
            await self._start_first_answering()
        else:
            self._engine = await self._open(self.url)
        if file is not None:
            try:
                await asyncio.to_thread(integrity.write_marker, file)
            except OSError as exc:
                await self.engine.dispose()
                self._engine = None
                raise StoreError(f"cannot write the store marker beside {file}: {exc.strerror}",
                                 retryable=False) from None
            self._writer = SQLiteWriter(url, self._pragmas)
            self.write_state.install(self._writer.engine)
        log.info("store ready", extra={"store": redact_url(self.url), "dialect": self.dialect})

    def _make_engine(self, url_text: str) -> AsyncEngine:
        """An engine for ``url_text`` with the store's settings (not yet connected)."""
        url = make_url(url_text)
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
            # Every SQLAlchemy connection ends its own transaction on close (rollback unless
            # committed); the pool's extra ROLLBACK on return would be one more round trip to
            # aiosqlite's thread per transaction, for nothing.
            kwargs["pool_reset_on_return"] = None
        else:
            kwargs.update(
                pool_size=self.pool_size,
                max_overflow=self.pool_size,
                pool_recycle=1800,
                # `_mysql_checkout` pings only a connection that rested (`PING_AFTER_REST_S`).
                pool_pre_ping=False,
                # `_mysql_reset` instead: no ROLLBACK round trip after a COMMIT.
                pool_reset_on_return=None,
                isolation_level="READ COMMITTED",
                connect_args={"connect_timeout": int(max(1, self.connect_timeout_s)), "autocommit": False},
            )
        engine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(engine.sync_engine, "connect", self._pragmas)
        else:
            event.listen(engine.sync_engine, "commit", _mysql_committed)
            event.listen(engine.sync_engine, "reset", _mysql_reset)
            event.listen(engine.sync_engine, "checkin", _mysql_checkin)
            event.listen(engine.sync_engine, "checkout", _mysql_checkout)
        self.write_state.install(engine.sync_engine)
        return engine

    async def _open(self, url_text: str) -> AsyncEngine:
        """An engine for ``url_text`` whose server answered and whose schema is in place."""
        engine = self._make_engine(url_text)
        try:
            async with asyncio.timeout(self.connect_timeout_s * 4):
                async with engine.begin() as conn:
                    if self.dialect == "mysql":
                        check_server_version((await conn.execute(sa.text("SELECT VERSION()"))).scalar_one())
                    async with schema_lock(conn, self.dialect, self.connect_timeout_s * 2):
                        for metadata in self.schemas:
                            await conn.run_sync(ensure_schema, metadata)
        except (sa.exc.SQLAlchemyError, OSError, TimeoutError, StoreError) as exc:
            await engine.dispose()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"store {redact_url(url_text)} unavailable: {_short(exc)}",
                             retryable=start_error_retryable(self.dialect, exc)) from None
        return engine

    async def _start_first_answering(self) -> None:
        """Open the first of ``urls`` that answers and watch it (`Failover`); raises the last
        server's `StoreError` when none does (permanent only when every one was permanent)."""
        errors: list[StoreError] = []
        for index, url in enumerate(self.urls):
            try:
                engine = await self._open(url)
            except StoreError as exc:
                log.warning("store server unavailable, trying the next", extra={"error": str(exc)})
                errors.append(exc)
                continue
            self.url, self._engine = url, engine
            self._failover = Failover(self.urls, self._make_engine, self._install,
                                      check_timeout_s=min(self.connect_timeout_s, 1.5))
            self._failover.start(engine, index)
            return
        last = errors[-1]
        raise StoreError(f"no store server answers ({len(self.urls)} tried); last: {last}",
                         retryable=any(e.retryable for e in errors))

    def _install(self, engine: AsyncEngine, index: int) -> AsyncEngine | None:
        """Make ``engine`` (for ``urls[index]``) the store's engine; returns the one it replaces."""
        old, self._engine, self.url = self._engine, engine, self.urls[index]
        return old

    def describe(self) -> dict[str, Any]:
        """The server in use: ``url`` (password hidden) and, with several, ``url_index``,
        ``failovers`` (switches since start) and ``last_failover_at`` (epoch s)."""
        if self._failover is not None:
            return self._failover.describe()
        return {"url": redact_url(self.url)}

    async def close(self) -> None:
        if self._failover is not None:
            failover, self._failover = self._failover, None
            await failover.stop()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.to_thread(writer.close)
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # -- access ----------------------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StoreError("store is not started")
        return self._engine

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection inside a transaction, committed on normal exit, rolled back on error."""
        return self.engine.begin()

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.connect()

    async def write(self, work: Callable[[sa.Connection], T], *, urgent: bool = False) -> T:
        """Run ``work(conn)`` (a plain function over a synchronous SQLAlchemy `Connection`) in one
        transaction: COMMIT when it returns, ROLLBACK when it raises; returns its result.
        ``urgent``: a caller is waiting on it to answer a peer (an AGI session, an HTTP callback);
        on SQLite it goes ahead of queued background writes (outbox claims and results).

        SQLite (file): the whole transaction runs on the store's writer thread (`SQLiteWriter`), one
        hand-over from the event loop, writers of this process served in turn. MariaDB/MySQL (and
        SQLite in memory): `AsyncConnection.run_sync`, each statement a round trip as usual.
        Raises what ``work`` raises (SQLAlchemy errors for the database's); a cancelled caller's
        transaction is rolled back. With several ``urls``, a transaction under way when the
        failover switches servers is cut: `StoreError` (retryable), whether or not it committed. ``work`` may run again if the caller retries: it must touch
        nothing but ``conn``.
        """
        changed = self.write_state.changed
        if self._writer is not None:
            result = await self._writer.run(work, urgent=urgent)
        elif self._failover is not None:  # cut short when the failover leaves this server
            async with self._failover.cuts.guard(), self.engine.begin() as conn:
                result = await conn.run_sync(work)
        else:
            async with self.engine.begin() as conn:
                result = await conn.run_sync(work)
        if self.write_state.reason is not None and self.write_state.changed > changed and not self._write_probe:
            self.write_state.accepted()  # a write that changed rows was committed (no probe to ask)
        return result

    async def accepts_writes(self) -> bool:
        """False while the store refuses writes (disk full, read-only; see `refusal`). While it does,
        a probe write is tried at most every `refusal.PROBE_INTERVAL_S` (with ``write_probe``), so
        this turns True again once space or write access is back, traffic or not; with the probe,
        only the probe's success turns it True (a small write of the traffic may still fit)."""
        state = self.write_state
        if self._write_probe and state.probe_due():
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await self.write(state.probe_work)
            except Exception:  # noqa: BLE001 - the failure itself is recorded by `state`
                log.debug("store write probe failed", exc_info=True)
            else:
                state.accepted()
        return state.reason is None

    async def ping(self) -> bool:
        """True when a trivial query answers within the connect timeout."""
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                async with self.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False

    # -- dialect helpers -------------------------------------------------------------------------

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        """An INSERT that silently skips rows violating a unique key (SQLite and MySQL forms)."""
        if self.dialect == "sqlite":
            return sqlite_dialect.insert(table).prefix_with("OR IGNORE")
        return mysql_dialect.insert(table).prefix_with("IGNORE")

    def now_expr(self) -> sa.ColumnElement[float]:
        """A SQL expression for the database's clock in epoch seconds (float).

        Leases and TTLs shared by several instances compare against this, so a skewed host clock
        cannot make two instances disagree.
        """
        if self.dialect == "sqlite":
            return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)
        return sa.literal_column("UNIX_TIMESTAMP(NOW(6))", sa.Float)

    async def now(self, conn: AsyncConnection | None = None) -> float:
        """The database's clock, epoch seconds."""
        stmt = sa.select(self.now_expr())
        if conn is not None:
            return float((await conn.execute(stmt)).scalar_one())
        async with self.connect() as own:
            return float((await own.execute(stmt)).scalar_one())


#: MySQL/MariaDB errors at start that waiting does not fix: access denied (1044, 1045), unknown
#: database (1049), command denied (1142: the user may not CREATE/ALTER the tables), a table
#: refused for lacking a primary key (4165, Galera's wsrep_mode=REQUIRED_PRIMARY_KEY).
_PERMANENT_MYSQL_ERRORS = (1044, 1045, 1049, 1142, 4165)


def start_error_retryable(dialect: str, exc: BaseException) -> bool:
    """Whether a failure to start the store may go away by waiting.

    MariaDB/MySQL: yes (the server is down, restarting, unreachable, out of connections) except for
    a refused login, an unknown database or missing privileges. SQLite: only a lock held elsewhere
    ("database is locked") or a timeout; anything else (not a database, damaged, read-only,
    cannot open the file) needs an operator.
    """
    if isinstance(exc, TimeoutError):
        return True
    orig = getattr(exc, "orig", None) or exc
    if dialect == "mysql":
        args = getattr(orig, "args", ())
        return not (args and args[0] in _PERMANENT_MYSQL_ERRORS)
    text = str(orig).lower()
    return "locked" in text or "busy" in text


def check_server_version(version: str) -> None:
    """Refuse servers without ``SKIP LOCKED`` (MariaDB < 10.6, MySQL < 8.0), which the outbox's
    claim needs. ``version`` is ``SELECT VERSION()``, e.g. ``10.11.19-MariaDB-0+deb12u1``."""
    numbers = [int(p) for p in version.split("-", 1)[0].split(".")[:2] if p.isdigit()]
    major, minor = (numbers + [0, 0])[:2]
    mariadb = "mariadb" in version.lower()
    if (mariadb and (major, minor) < (10, 6)) or (not mariadb and major < 8):
        raise StoreError(
            f"database server {version} is too old: telephonyd needs MariaDB 10.6+ or MySQL 8.0+ (SKIP LOCKED)",
            retryable=False,
        )


#: ``store.durability`` -> SQLite's ``PRAGMA synchronous`` (WAL mode either way; sqlite.org/pragma.html#pragma_synchronous).
DURABILITY = {"full": "FULL", "normal": "NORMAL"}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, synchronous: str = "FULL") -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_pragmas_normal(dbapi_conn: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_conn, record, DURABILITY["normal"])


def _mysql_committed(conn: Any) -> None:
    conn.info["committed"] = True  # the driver connection's info: seen by `_mysql_reset`


def _mysql_reset(dbapi_conn: Any, record: Any, reset_state: Any) -> None:
    """A connection going back to the pool is rolled back unless SQLAlchemy just ended its
    transaction and the server agrees.

    The pool's usual reset is a ROLLBACK on every return: after `Store.write`'s COMMIT that is one
    more round trip per transaction for nothing. Skipped only when SQLAlchemy rolled back itself
    (``transaction_was_reset``) or committed (`_mysql_committed`) and the server's status flag
    ``SERVER_STATUS_IN_TRANS`` in that COMMIT's OK packet says no transaction is open; anything
    else (a failed COMMIT, a query on the driver connection) is rolled back as before.
    (SQLAlchemy's documented custom reset: ``pool_reset_on_return=None`` plus this ``reset`` event.)
    """
    committed = record.info.pop("committed", False) if record is not None else False
    if reset_state.transaction_was_reset or not reset_state.asyncio_safe:
        return
    driver = record.driver_connection if record is not None else None
    if committed and driver is not None and not driver.get_transaction_status():
        return
    dbapi_conn.rollback()


#: A pooled MariaDB/MySQL connection idle in the pool longer than this (seconds) is pinged before use.
PING_AFTER_REST_S = 1.0


def _mysql_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info["rested_since"] = time.monotonic()


def _mysql_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Ping a connection that rested in the pool longer than `PING_AFTER_REST_S` before handing it
    out; a failed ping invalidates the pool and SQLAlchemy checks out a fresh connection (as
    ``pool_pre_ping`` does, but without a round trip for every transaction under load).

    A connection handed back within the last second was working a second ago; a server restart or
    a dropped link since then takes longer than that, so a connection that crossed one has rested
    longer and is pinged. A fresh connection (no ``rested_since``) was just opened: no ping.
    """
    rested_since = record.info.get("rested_since")
    if rested_since is None or time.monotonic() - rested_since < PING_AFTER_REST_S:
        return
    try:
        dbapi_conn.ping(False)
    except Exception as exc:  # noqa: BLE001 - any failure: not usable, SQLAlchemy reconnects
        raise sa.exc.InvalidatePoolError(f"ping before use failed: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return text[:300]
