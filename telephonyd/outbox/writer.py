"""Group commit: one writer task turns concurrent writes into few transactions.

Used for new rows (`Outbox.enqueue`) and for the dispatcher's results. Callers queue an item and
await a future. The writer takes everything queued (up to ``batch_max``),
writes it in ONE transaction and resolves each future only after COMMIT; while a commit is under
way new rows pile up and go into the next one, so batches grow with the load by themselves
(no timer, no added latency when idle). A failed transaction fails exactly its callers with a
retryable `StoreError` and the writer carries on with the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import StoreError, raise_if_cancelling
from ..store.conflicts import StoreConflict
from .queries import STORE_ERRORS, short_error

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True)
class _Queued(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]


class GroupWriter(Generic[Item, Result]):
    """Batches items through ``write`` (one transaction per call, one result per item, in order).

    ``batch_max`` items at most per transaction; ``timeout_s`` bounds each transaction; ``name``
    names the task and log lines. `submit` raises `StoreError` when the batch failed or the
    writer is closed.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[list[Result]]],
        *,
        batch_max: int,
        timeout_s: float,
        name: str = "outbox-writer",
    ) -> None:
        self._write = write
        self.name = name
        self.batch_max = batch_max
        self.timeout_s = timeout_s
        self._queue: deque[_Queued[Item, Result]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows = 0
        self.largest_batch = 0
        self.failed_batches = 0
        self.last_error: str | None = None
        self.healthy = True
        self.failed_at = 0.0

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def submit(self, item: Item) -> Result:
        if self._closing or not self.running:
            raise StoreError(f"{self.name} is not running")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(item, future))
        self._wakeup.set()
        return await future

    async def close(self, timeout: float) -> None:
        """Write what is queued (within ``timeout``), then stop; later submits raise."""
        self._closing = True
        self._wakeup.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, timeout))
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_queued(StoreError(f"{self.name} stopped before writing"))

    def abort(self) -> None:
        """Stop at once without writing what is queued (the process is going down hard)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self._fail_queued(StoreError(f"{self.name} stopped before writing"))

    def stats(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "queued": len(self._queue),
            "batches": self.batches,
            "rows": self.rows,
            "largest_batch": self.largest_batch,
            "failed_batches": self.failed_batches,
        }

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch = [self._queue.popleft() for _ in range(min(self.batch_max, len(self._queue)))]
                await self._write_batch(batch)
        except asyncio.CancelledError:
            self._fail_queued(StoreError(f"{self.name} stopped before writing"))
            raise

    async def _write_batch(self, batch: list[_Queued[Item, Result]]) -> None:
        live = [q for q in batch if not q.future.done()]
        if not live:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                results = await self._write([q.item for q in live])
        except asyncio.CancelledError:
            _fail(live, StoreError(f"{self.name} stopped before the commit"))
            raise
        except StoreConflict as exc:  # contended rows: the store works, its callers may retry
            raise_if_cancelling()
            self.failed_batches += 1
            log.warning("outbox batch not written: write conflict", extra={"writer": self.name, "rows": len(live),
                                                                           "op": exc.op, "attempts": exc.attempts})
            _fail(live, exc)
            return
        except STORE_ERRORS as exc:
            raise_if_cancelling()
            self.failed_batches += 1
            self.healthy = False
            self.failed_at = time.monotonic()
            self.last_error = short_error(exc)
            log.warning("outbox batch not written", extra={"writer": self.name, "rows": len(live), "error": self.last_error})
            _fail(live, StoreError(f"{self.name}: write failed: {self.last_error}"))
            return
        except Exception as exc:  # a bug: its callers get it, later batches still run
            raise_if_cancelling()
            log.exception("outbox batch failed", extra={"writer": self.name, "rows": len(live)})
            for queued in live:
                if not queued.future.done():
                    queued.future.set_exception(exc)
            return
        self.healthy = True
        self.batches += 1
        self.rows += len(live)
        self.largest_batch = max(self.largest_batch, len(live))
        for queued, result in zip(live, results, strict=True):
            if not queued.future.done():
                queued.future.set_result(result)

    def _fail_queued(self, error: StoreError) -> None:
        queued = list(self._queue)
        self._queue.clear()
        _fail(queued, error)


def _fail(items: list[_Queued[Any, Any]], error: StoreError) -> None:
    for queued in items:
        if not queued.future.done():
            queued.future.set_exception(StoreConflict(str(error), op=error.op, attempts=error.attempts)
                                        if isinstance(error, StoreConflict) else StoreError(str(error)))

