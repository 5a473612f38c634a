"""`GroupCommit`: many callers' small writes share one transaction (one COMMIT, one fsync).

A caller submits an item (`GroupCommit.submit`) and awaits the future it gets back. That future is
resolved with the item's result only after the transaction holding the item has COMMITTED, so the
caller can answer its peer knowing the row is durable. If the write failed, the future gets the error instead.
One task (`GroupCommit.run`, or `GroupCommit.start` for a task of its own) takes up to ``max_batch``
queued items, oldest first, and passes them to ``commit(items) -> results``. That function runs ONE
transaction, normally one `Store.write` (``urgent=True`` when callers wait to answer a peer; on
SQLite one hand-over to the store's writer thread), and returns one result per item, in order.
Items submitted while a transaction is under way wait and go into the next one, so batches grow
with the load by themselves: no timer, and no added latency when idle. ``depth`` transactions may be
handed to the store at once, so the store starts the next batch as soon as one COMMITs. They still
commit in submission order (one writer thread on SQLite; on MariaDB a later batch waits on an
earlier one's row locks). ``timeout_s`` bounds each transaction; the store rolls back one that is
abandoned.

What a failed batch does to its callers is the writer's ``failure`` policy:

- `FailEach` (the default, used by the outbox): every caller in the batch gets an error, and the
  writer goes on with the next batch. A `StoreConflict` (the rows were contended but the store
  works) is passed on as it is and leaves ``healthy`` alone. Any other store error (`STORE_ERRORS`,
  including the timeout) reaches the callers as a retryable `StoreError` naming the writer. It
  also sets ``healthy`` False, ``last_error`` and ``failed_at`` (`time.monotonic`) until a later
  batch commits. Anything else is a bug: it is logged with its traceback and each caller gets it.
- `RetryAlone` (used by the Ameyo callbacks): each item of a failed batch of several is committed
  again in a transaction of its own, so one bad item fails only its own caller. An item alone that
  loses to a lock conflict (`conflicts.is_lock_conflict`) is tried again, up to ``attempts`` times, after a
  jittered pause (`backoff.full_jitter`); conflicts are counted in the store's `ConflictCounter`
  under ``op``. Any other failure of an item alone is final. A batch that timed out is not retried:
  every caller in it gets `StoreError`. An item that failed for good gets `StoreError` for a store
  error or a timeout, and a bug's exception unchanged. Items must touch nothing but their own
  transaction: they may run twice, and only one of those runs commits.

An item whose caller stopped waiting (its future cancelled) before its batch began is left out.
`close` stops the batching: `run` returns once what was queued before it has committed, and an
item submitted after it is committed alone (the outbox refuses those itself). If the writer is
cancelled, the callers of the transaction under way and of everything still queued get
`StoreError`.

Figures for ``/status``: ``batches`` committed (an item committed alone after its batch failed is
not one), ``items`` committed, ``largest_batch``, ``failed_batches`` (store errors and conflicts),
``failed_items`` (`RetryAlone`: items that failed for good), ``backlog`` (items queued). The queue
is not bounded: callers bound their own wait (an Ameyo callback answers 503 after
``ameyo.record_timeout_s``; a ``call_log`` session gives up after ``call_log.enqueue_timeout_s``).

This is the shape for callers that WAIT for a durable answer. The call-event sink
(`calls.sink.CallSink`) and the DID selection recorder (`didselect.recorder.SelectionRecorder`) are
spools instead: nobody waits, a failed batch stays queued and is retried with backoff until it is
written, and a full queue drops rows. They keep their own loops.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..backoff import full_jitter
from ..errors import StoreError, raise_if_cancelling
from .conflicts import ConflictCounter, StoreConflict, is_conflict, is_lock_conflict
from .errors import STORE_ERRORS, short_error

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

#: ``commit(items) -> results``: one transaction, one result per item in the same order.
Commit = Callable[[Sequence[Item]], Awaitable[list[Result]]]


@dataclass(frozen=True, slots=True)
class FailEach:
    """A failed batch fails each of its callers (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class RetryAlone:
    """A failed batch is committed again item by item (see the module docstring).

    ``attempts``: tries of an item alone that keeps losing to lock conflicts; ``base_s``/``cap_s``:
    the jittered pause before each (`backoff.full_jitter`); ``conflicts``/``op``: where conflicts
    (`conflicts.is_conflict`) are counted, as ``telephonyd_store_conflicts_total{op}``.
    """

    base_s: float
    cap_s: float
    attempts: int = 3
    conflicts: ConflictCounter | None = None
    op: str = "write"
    rng: random.Random = field(default_factory=random.Random)


@dataclass(slots=True)
class _Queued(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]


class GroupCommit(Generic[Item, Result]):
    """Queues items and commits them in shared transactions through ``commit`` (module docstring).

    Args:
        commit: ``async commit(items) -> results``, ONE transaction for all ``items``.
        name: names the task, log lines and errors (``outbox-writer``, ``ameyo-writer``).
        max_batch: most items per transaction (may be changed while running).
        timeout_s: bound of each transaction, seconds.
        depth: transactions handed to the store at once (1: one after the other).
        failure: `FailEach` (None: the default) or `RetryAlone`.
        after_commit: called after every committed transaction (a hook's error is logged).
    """

    def __init__(
        self,
        commit: Commit[Item, Result],
        *,
        name: str,
        max_batch: int,
        timeout_s: float,
        depth: int = 1,
        failure: FailEach | RetryAlone | None = None,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._commit_items = commit
        self.name = name
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.depth = max(1, depth)
        self.failure = failure if failure is not None else FailEach()
        self.after_commit = after_commit
        self._queue: deque[_Queued[Item, Result]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._active = False
        self._task: asyncio.Task[None] | None = None
        self._late: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0
        self.largest_batch = 0
        self.failed_batches = 0
        self.failed_items = 0
        self.healthy = True
        self.failed_at = 0.0
        self.last_error: str | None = None

    # -- callers ---------------------------------------------------------------------------------

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """Queue ``item``; the future resolves with its result after COMMIT, or fails with the
        error (see the module docstring). After `close`, ``item`` is committed alone at once.
        A caller that may stop waiting without cancelling the future (``asyncio.shield``, fire and
        forget) should retrieve its outcome (`retrieve`), or asyncio warns of an exception never
        retrieved."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        queued = _Queued(item, future)
        if self._closing:
            task = asyncio.create_task(self._alone(queued), name=f"{self.name}:late")
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        else:
            self._queue.append(queued)
            self._wakeup.set()
        return future

    @property
    def backlog(self) -> int:
        """Items queued and not yet handed to a transaction."""
        return len(self._queue)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def running(self) -> bool:
        """True while `run` is under way (or its `start` task is about to run it)."""
        return self._active or (self._task is not None and not self._task.done())

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task `start` made (None when `run` is driven by the caller)."""
        return self._task

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Run `run` in a task of its own (again after `stop`)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name=self.name)

    def close(self) -> None:
        """Stop batching: `run` returns once what is queued is committed; later items go alone."""
        self._closing = True
        self._wakeup.set()

    async def stop(self, timeout: float) -> None:
        """`close`, then wait up to ``timeout`` s for the `start` task to commit what is queued;
        cancel it after that. Items still queued then fail with `StoreError`."""
        self.close()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, timeout))
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_queued()

    def abort(self) -> None:
        """Stop at once without committing what is queued (the process is going down hard)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self._fail_queued()

    async def run(self) -> None:
        """Commit batches until `close` and an empty queue (module docstring)."""
        self._active = True
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch = [self._queue.popleft() for _ in range(min(max(1, self.max_batch), len(self._queue)))]
                if self.depth == 1:
                    await self._commit(batch)
                    continue
                task = asyncio.create_task(self._commit(batch), name=f"{self.name}:batch")
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                while len(in_flight) >= self.depth:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            if in_flight:
                await asyncio.wait(in_flight)
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            self._fail_queued()
            raise
        finally:
            self._active = False

    # -- one transaction -------------------------------------------------------------------------

    async def _transaction(self, items: list[_Queued[Item, Result]]) -> list[Result]:
        async with asyncio.timeout(self.timeout_s):
            results = await self._commit_items([q.item for q in items])
        if len(results) != len(items):
            raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        return results

    async def _commit(self, batch: list[_Queued[Item, Result]]) -> None:
        live = [q for q in batch if not q.future.done()]
        if not live:
            return
        try:
            results = await self._transaction(live)
        except asyncio.CancelledError:
            _fail(live, StoreError(f"{self.name} stopped before the commit"))
            raise
        except Exception as exc:  # noqa: BLE001 - sorted out by the failure policy
            raise_if_cancelling()
            if isinstance(self.failure, RetryAlone):
                await self._retry_alone(live, exc, self.failure)
            else:
                self._fail_each(live, exc)
            return
        self._committed(live, results)

    def _committed(self, items: list[_Queued[Item, Result]], results: list[Result], *, batch: bool = True) -> None:
        self.healthy = True
        self.batches += batch
        self.items += len(items)
        self.largest_batch = max(self.largest_batch, len(items))
        for queued, result in zip(items, results, strict=True):
            if not queued.future.done():
                queued.future.set_result(result)
        if self.after_commit is not None:
            try:
                self.after_commit()
            except Exception:
                log.exception("after-commit hook failed", extra={"writer": self.name})

    def _fail_each(self, live: list[_Queued[Item, Result]], exc: Exception) -> None:
        if isinstance(exc, StoreConflict):  # contended rows: the store works, its callers may retry
            self.failed_batches += 1
            log.warning("batch not written: write conflict", extra={"writer": self.name, "rows": len(live),
                                                                     "op": exc.op, "attempts": exc.attempts})
            _fail(live, exc)
        elif isinstance(exc, STORE_ERRORS):
            self.failed_batches += 1
            self.healthy = False
            self.failed_at = time.monotonic()
            self.last_error = short_error(exc)
            log.warning("batch not written", extra={"writer": self.name, "rows": len(live), "error": self.last_error})
            _fail(live, StoreError(f"{self.name}: write failed: {self.last_error}"))
        else:  # a bug: its callers get it, later batches still run
            log.error("batch failed", exc_info=exc, extra={"writer": self.name, "rows": len(live)})
            for queued in live:
                if not queued.future.done():
                    queued.future.set_exception(exc)

    async def _retry_alone(self, live: list[_Queued[Item, Result]], exc: Exception, policy: RetryAlone) -> None:
        if isinstance(exc, TimeoutError):
            self.failed_batches += 1
            self.failed_items += len(live)
            log.error("store write timed out", extra={"writer": self.name, "units": len(live),
                                                      "timeout_s": self.timeout_s})
            _fail(live, StoreError(f"store write timed out after {self.timeout_s:g}s"))
            return
        if is_lock_conflict(exc) or isinstance(exc, STORE_ERRORS):
            self.failed_batches += 1
        if len(live) > 1:
            log.warning("group commit failed, retrying units one by one",
                        extra={"writer": self.name, "units": len(live), "error": short_error(exc)})
        try:
            for queued in live:
                await self._single(queued, exc if len(live) == 1 else None, policy)
        except asyncio.CancelledError:
            _fail(live, StoreError(f"{self.name} stopped before the commit"))  # those not yet retried
            raise

    async def _single(self, queued: _Queued[Item, Result], first_error: Exception | None, policy: RetryAlone) -> None:
        error = first_error
        for attempt in range(policy.attempts):
            if error is not None and not is_lock_conflict(error):
                break
            if error is not None and policy.conflicts is not None and is_conflict(error):
                policy.conflicts.record(policy.op, exhausted=attempt == policy.attempts - 1)
            if attempt or error is not None:
                await asyncio.sleep(full_jitter(attempt + 1, policy.base_s, policy.cap_s, policy.rng))
            try:
                results = await self._transaction([queued])
            except asyncio.CancelledError:
                _fail([queued], StoreError(f"{self.name} stopped before the commit"))
                raise
            except Exception as exc:  # noqa: BLE001 - tried again while it is a lock conflict
                raise_if_cancelling()
                error = exc
                continue
            self._committed([queued], results, batch=False)
            return
        self.failed_items += 1
        if not queued.future.done():
            queued.future.set_exception(self._as_store_error(error))

    def _as_store_error(self, exc: BaseException | None) -> BaseException:
        if isinstance(exc, TimeoutError):
            return StoreError(f"store write timed out after {self.timeout_s:g}s")
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, STORE_ERRORS):
            return StoreError(f"store write failed: {short_error(exc)}")
        return exc if isinstance(exc, Exception) else StoreError("store write failed")

    async def _alone(self, queued: _Queued[Item, Result]) -> None:
        if isinstance(self.failure, RetryAlone):
            await self._single(queued, None, self.failure)
        else:
            await self._commit([queued])

    def _fail_queued(self) -> None:
        queued = list(self._queue)
        self._queue.clear()
        _fail(queued, StoreError(f"{self.name} stopped before writing"))


def _fail(items: list[_Queued[Any, Any]], error: StoreError) -> None:
    """Each caller gets its own copy of ``error`` (one exception object per waiting task)."""
    for queued in items:
        if not queued.future.done():
            queued.future.set_exception(StoreConflict(str(error), op=error.op, attempts=error.attempts)
                                        if isinstance(error, StoreConflict) else StoreError(str(error)))


def retrieve(future: asyncio.Future[Any]) -> None:
    """A done callback that marks a future's exception as retrieved (for callers that may not)."""
    if not future.cancelled():
        future.exception()
