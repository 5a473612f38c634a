"""Database failover: several servers of one MariaDB database (Galera nodes), used one at a time.

The store works through the first URL that answers, in the configured order. A health check runs
every `Failover.interval_s` (an answer within `Failover.check_timeout_s`, and on Galera
``wsrep_ready`` ON); a connection lost on
any query (SQLAlchemy's ``is_disconnect``) runs it at once. When the active server does not answer,
the next URLs are tried in order (then the earlier ones) and the first that answers becomes the
active one: its engine replaces the old one, which is disposed in the background. With the defaults
(1 s, 1.5 s) a server that died (connection refused) is left within about 1 s, one that hangs within
about 2.5 s, without a restart. While a later URL is active, the earlier ones are tried every
`Failover.failback_s`, and the store goes back to the first one that answers.

A transaction under way on the old server fails (its caller retries, as for any lost connection).
A server that hangs (a frozen process: the kernel still accepts connections, nothing answers) would
hold such a transaction until its caller's own timeout (``outbox.store_timeout_s``, 15 s), and with
it every group commit queued behind it: so `Store.write` transactions run inside `Failover.cuts`,
and the switch cuts every one still under way on the server left (`StoreError`, retryable). Nothing
else changes: claims, leases and gates are rows of the shared database, the same on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import StoreError

log = logging.getLogger(__name__)


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def answers(engine: AsyncEngine, timeout_s: float) -> bool:
    """True when the server behind ``engine`` answers within ``timeout_s`` and, on a Galera node,
    is ready for clients (``wsrep_ready`` ON: a node cut off from the primary component answers
    ``SELECT 1`` but refuses every table with error 1047)."""
    try:
        async with asyncio.timeout(timeout_s):
            async with engine.connect() as conn:
                galera = (await conn.execute(sa.text("SHOW VARIABLES LIKE 'wsrep_on'"))).first()
                if galera is None or str(galera[1]).upper() != "ON":
                    return True  # not a Galera node: answering is enough
                row = (await conn.execute(sa.text("SHOW STATUS LIKE 'wsrep_ready'"))).first()
        return row is not None and str(row[1]).upper() == "ON"
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


class TransactionCuts:
    """The transactions under way on the active server, so a switch can cut them short."""

    def __init__(self) -> None:
        self._scopes: set[asyncio.Timeout] = set()

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block until it ends or `cut_all` is called; a cut block raises `StoreError`
        (retryable). The block's work is cancelled at its current await (the connection it was
        waiting on is closed)."""
        scope = asyncio.timeout(None)
        try:
            async with scope:
                self._scopes.add(scope)
                try:
                    yield
                finally:
                    self._scopes.discard(scope)
        except TimeoutError:
            if not scope.expired():
                raise  # a timeout of the work itself
            raise StoreError("transaction cut: the store switched to another server", retryable=True) from None

    def cut_all(self) -> int:
        """Cut every guarded block under way now; how many there were."""
        scopes, self._scopes = self._scopes, set()
        now = asyncio.get_running_loop().time()
        for scope in scopes:
            scope.reschedule(now)
        return len(scopes)


class Failover:
    """Watches the active server of ``urls`` and switches the store's engine (see the module doc).

    ``make_engine(url)`` builds an engine (not yet connected); ``install(engine)`` swaps it in as
    the store's engine and returns the one it replaced. ``active`` is the index of the URL in use.
    """

    def __init__(
        self,
        urls: Sequence[str],
        make_engine: Callable[[str], AsyncEngine],
        install: Callable[[AsyncEngine, int], AsyncEngine | None],
        *,
        interval_s: float = 1.0,
        check_timeout_s: float = 1.5,
        failback_s: float = 30.0,
    ) -> None:
        self.urls = list(urls)
        self._make_engine = make_engine
        self._install = install
        self.interval_s = interval_s
        self.check_timeout_s = check_timeout_s
        self.failback_s = failback_s
        self.active = 0
        self.switches = 0
        #: Transactions on the active server (`Store.write`), cut when it is left.
        self.cuts = TransactionCuts()
        self.last_switch_at: float | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._disposals: set[asyncio.Task[None]] = set()
        self._held: dict[Any, set[Any]] = {}  # engine -> pool records checked out of it
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, engine: AsyncEngine) -> None:
        """Run a check at once when ``engine`` loses a connection, and keep track of the connections
        checked out of it (`_sever`); called for every engine."""
        sync = engine.sync_engine
        event.listen(sync, "handle_error", self._on_error)
        held: set[Any] = set()
        self._held[sync] = held
        event.listen(sync, "checkout", lambda _dbapi, record, _proxy: held.add(record))
        event.listen(sync, "checkin", lambda _dbapi, record: held.discard(record))

    def start(self, engine: AsyncEngine, active: int) -> None:
        self._loop = asyncio.get_running_loop()
        self.active = active
        self.watch(engine)
        self._task = self._loop.create_task(self._run(engine), name="store-failover")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._disposals:
            await asyncio.gather(*self._disposals, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        return {"url": redact(self.urls[self.active]), "url_index": self.active, "failovers": self.switches,
                "last_failover_at": self.last_switch_at}

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self, engine: AsyncEngine) -> None:
        tried_earlier = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.interval_s)
            self._wakeup.clear()
            if not await answers(engine, self.check_timeout_s):
                log.warning("store server not answering; trying the others",
                            extra={"store": redact(self.urls[self.active])})
                order = [*range(self.active + 1, len(self.urls)), *range(0, self.active)]
                engine = await self._switch(engine, order) or engine
                tried_earlier = time.monotonic()
            elif self.active > 0 and time.monotonic() - tried_earlier >= self.failback_s:
                tried_earlier = time.monotonic()
                engine = await self._switch(engine, list(range(0, self.active)), failback=True) or engine

    async def _switch(self, current: AsyncEngine, order: list[int], *, failback: bool = False) -> AsyncEngine | None:
        for index in order:
            candidate = self._make_engine(self.urls[index])
            if not await answers(candidate, self.check_timeout_s):
                await self._dispose(candidate)
                continue
            was = self.active
            self.watch(candidate)
            old = self._install(candidate, index)
            self.active = index
            self.switches += 1
            self.last_switch_at = time.time()
            cut = self.cuts.cut_all()
            self._sever(old)
            log.warning("store switched to another server" if not failback else "store back on an earlier server",
                        extra={"store": redact(self.urls[index]), "was": redact(self.urls[was]),
                               "transactions_cut": cut})
            if old is not None:
                self._background(self._dispose(old))
            return candidate
        if not failback:
            log.error("no store server answers", extra={"servers": len(self.urls)})
        return None

    def _sever(self, engine: AsyncEngine | None) -> None:
        """Close the sockets of the connections still checked out of ``engine`` (the server left):
        whatever still waits on one, a cut transaction's ROLLBACK included, fails at once instead
        of waiting on a server that may never answer."""
        held = self._held.pop(engine.sync_engine, set()) if engine is not None else set()
        for record in list(held):
            driver = getattr(record.dbapi_connection, "driver_connection", None)
            with contextlib.suppress(Exception):
                if driver is not None:
                    driver.close()  # aiomysql: closes the transport, no round trip

    async def _dispose(self, engine: AsyncEngine) -> None:
        """Close ``engine``'s pool; a server that hangs must not hold the loop, so bounded."""
        self._held.pop(engine.sync_engine, None)
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(self.check_timeout_s * 2):
                await engine.dispose()

    def _background(self, work: Awaitable[None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(work)  # type: ignore[arg-type]
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    def _on_error(self, context: Any) -> None:
        if context.is_disconnect and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process is going down
                self._loop.call_soon_threadsafe(self._wakeup.set)
