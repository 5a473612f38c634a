"""Group commit: many small units of store work share one transaction (one fsync).

Each unit is a plain function ``work(tx) -> result`` on a `Transaction` (a synchronous SQLAlchemy
connection: the whole transaction is one `Store.write`, on SQLite one hand-over to the store's writer
thread); `GroupCommitter.submit` queues it and returns a future resolved once its transaction has
COMMITTED. The writer takes whatever is queued (up to ``max_batch``) and runs the units in order in
one transaction, so a later unit sees an earlier one's rows (two identical callbacks in one batch
still meet at the gate). Rows nobody reads back in the same transaction (request log rows, state
changes reported by deliveries) are queued with `Transaction.later` and run as one executemany per
statement before the commit. If the transaction fails, each unit is retried alone, so one bad unit
fails only itself. Units must therefore touch nothing but ``tx``: they may run twice, and only one
run commits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..errors import StoreError, raise_if_cancelling
from ..backoff import full_jitter
from ..outbox.queries import CONFLICT_BASE_S, CONFLICT_CAP_S
from ..store import Prepared, Store
from ..store.conflicts import is_conflict

log = logging.getLogger(__name__)


class Transaction:
    """One open transaction of the writer: ``conn``, plus statements deferred to its end."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.memo: dict[str, Any] = {}  # what `GroupCommitter.before` prepared for the units
        self._later: dict[Prepared, list[dict[str, Any]]] = {}

    def later(self, stmt: Prepared, params: dict[str, Any]) -> None:
        """Run ``stmt`` with ``params`` at the end of the transaction, in one executemany with the
        other parameter sets of the same ``stmt`` (all must have the same keys). For writes that no
        later unit of the batch reads back (or that `pending` lets it amend)."""
        self._later.setdefault(stmt, []).append(params)

    def pending(self, stmt: Prepared) -> list[dict[str, Any]]:
        """Parameter sets queued for ``stmt`` and not yet run (callers may still change them)."""
        return self._later.get(stmt, [])

    def flush(self) -> None:
        later, self._later = self._later, {}
        for stmt, params in later.items():
            stmt.executemany(self.conn, params)


Work = Callable[[Transaction], Any]
Before = Callable[[Transaction, list[Any]], None]

#: Transactions of the writer handed to the store at once (see `GroupCommitter.run`).
PIPELINE_DEPTH = 2
_SINGLE_ATTEMPTS = 3  # a unit retried alone after a lock conflict (MariaDB deadlock, SQLite busy)


class GroupCommitter:
    """See the module docstring.

    ``before(tx, tags)`` runs first in every transaction with the ``tag`` of each unit in it (units
    submitted without one are left out): bulk work for the whole batch, such as claiming all gates
    in one statement. ``after_commit`` runs after every committed transaction. A transaction that
    takes longer than ``timeout_s`` is abandoned (rolled back) and fails all its units.
    """

    def __init__(self, store: Store, *, max_batch: int, timeout_s: float = 30.0, before: Before | None = None,
                 after_commit: Callable[[], None] | None = None) -> None:
        self.store = store
        self._rng = random.Random()
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.before = before
        self.after_commit = after_commit
        self._queue: asyncio.Queue[tuple[Work, asyncio.Future[Any], Any]] = asyncio.Queue()
        self._closed = False
        self._late: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.units = 0
        self.failures = 0

    def submit(self, work: Work, tag: Any = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # a caller that gave up waiting leaves no "never retrieved"
        if self._closed:  # after close: each unit in its own transaction (results of late sends)
            task = asyncio.create_task(self._single((work, future, tag), first_error=None))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        else:
            self._queue.put_nowait((work, future, tag))
        return future

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Stop batching: `run` returns once what is queued is done; later units run alone."""
        self._closed = True
        self._queue.put_nowait((_stop, asyncio.get_running_loop().create_future(), None))

    async def run(self) -> None:
        """Commit batches until `close`; up to ``PIPELINE_DEPTH`` transactions are handed to the
        store at once, so its writer goes from one COMMIT straight to the next batch instead of
        waiting for this task's turn on the event loop. Batches still commit in order (one writer
        thread on SQLite; on MariaDB a later batch waits on the row locks of an earlier one)."""
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                first = await self._queue.get()
                if first[0] is _stop:
                    break
                batch = [first]
                stop_after = False
                while len(batch) < self.max_batch and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item[0] is _stop:
                        stop_after = True
                        break
                    batch.append(item)
                task = asyncio.create_task(self._commit(batch))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                if stop_after:
                    break
                while len(in_flight) >= PIPELINE_DEPTH:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            if in_flight:
                await asyncio.wait(in_flight)
        finally:
            for task in in_flight:
                task.cancel()

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any], Any]]) -> None:
        self.batches += 1
        self.units += len(batch)
        try:
            results = await self._transaction(batch)
        except asyncio.CancelledError:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(StoreError("the store writer was cancelled"))
            raise
        except TimeoutError:
            self.failures += len(batch)
            log.error("store write timed out", extra={"units": len(batch), "timeout_s": self.timeout_s})
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(StoreError(f"store write timed out after {self.timeout_s:g}s"))
            return
        except Exception as exc:  # noqa: BLE001 - any failure: retry each unit alone
            raise_if_cancelling()
            if len(batch) > 1:
                log.warning("group commit failed, retrying units one by one",
                            extra={"units": len(batch), "error": _short(exc)})
            for item in batch:
                await self._single(item, first_error=exc if len(batch) == 1 else None)
            return
        self._committed()
        for (_, future, _), result in zip(batch, results):
            if not future.done():
                future.set_result(result)

    async def _single(self, item: tuple[Work, asyncio.Future[Any], Any], first_error: Exception | None) -> None:
        future = item[1]
        error = first_error
        for attempt in range(_SINGLE_ATTEMPTS):
            if error is not None and not _is_lock_conflict(error):
                break
            if error is not None and is_conflict(error):
                self.store.conflicts.record("ameyo", exhausted=attempt == _SINGLE_ATTEMPTS - 1)
            if attempt or error is not None:
                # back off before retrying a lock conflict (the outbox's jittered backoff)
                await asyncio.sleep(full_jitter(attempt + 1, CONFLICT_BASE_S, CONFLICT_CAP_S, self._rng))
            try:
                (result,) = await self._transaction([item])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise_if_cancelling()
                error = exc
                continue
            self._committed()
            if not future.done():
                future.set_result(result)
            return
        self.failures += 1
        if not future.done():
            future.set_exception(_as_store_error(error))

    async def _transaction(self, items: list[tuple[Work, asyncio.Future[Any], Any]]) -> list[Any]:
        def run(conn: sa.Connection) -> list[Any]:
            tx = Transaction(conn)
            if self.before is not None:
                self.before(tx, [tag for _, _, tag in items if tag is not None])
            results = [work(tx) for work, _, _ in items]
            tx.flush()
            return results

        async with asyncio.timeout(self.timeout_s):
            return await self.store.write(run, urgent=True)  # callbacks wait to be answered

    def _committed(self) -> None:
        if self.after_commit is not None:
            try:
                self.after_commit()
            except Exception:
                log.exception("after-commit hook failed")


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _stop(_tx: Transaction) -> None:  # sentinel queued by close()
    return None


def _is_lock_conflict(exc: BaseException) -> bool:
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return any(s in text for s in ("deadlock", "lock wait timeout", "database is locked", "1213", "1205"))


def _as_store_error(exc: BaseException | None) -> Exception:
    if isinstance(exc, StoreError) or not isinstance(exc, (sa.exc.SQLAlchemyError, OSError)):
        return exc if isinstance(exc, Exception) else StoreError("store write failed")
    return StoreError(f"store write failed: {_short(exc)}")


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
