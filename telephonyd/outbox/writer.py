"""`GroupWriter`: the outbox's group commit (`store.groupcommit.GroupCommit` with `FailEach`).

Used for new rows (`Outbox.enqueue`, through `OutboxQueries.insert_batch`) and for the
dispatcher's results (`OutboxQueries.finish_batch`). A caller awaits `GroupWriter.submit`, which
returns only after COMMIT. A failed transaction fails exactly its callers: a `StoreConflict` as it
is, any other store error as a retryable `StoreError`. The writer carries on with the next batch.
Its task runs from `start` to `close`, and a submit outside that window raises `StoreError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from ..errors import StoreError
from ..store.groupcommit import GroupCommit

Item = TypeVar("Item")
Result = TypeVar("Result")


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
        self.group: GroupCommit[Item, Result] = GroupCommit(write, name=name, max_batch=batch_max,
                                                            timeout_s=timeout_s)

    def start(self) -> None:
        self.group.start()

    @property
    def running(self) -> bool:
        return self.group.task is not None and not self.group.task.done()

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self.group.task

    @property
    def healthy(self) -> bool:
        return self.group.healthy

    @property
    def failed_at(self) -> float:
        return self.group.failed_at

    @property
    def rows(self) -> int:
        """Items committed so far."""
        return self.group.items

    @property
    def failed_batches(self) -> int:
        return self.group.failed_batches

    @property
    def last_error(self) -> str | None:
        return self.group.last_error

    async def submit(self, item: Item) -> Result:
        group = self.group
        if group.closing or group.task is None or group.task.done():
            raise StoreError(f"{group.name} is not running")
        return await group.submit(item)

    async def close(self, timeout: float) -> None:
        """Write what is queued (within ``timeout``), then stop; later submits raise."""
        await self.group.stop(timeout)

    def abort(self) -> None:
        """Stop at once without writing what is queued (the process is going down hard)."""
        self.group.abort()

    def stats(self) -> dict[str, Any]:
        g = self.group
        return {
            "running": self.running,
            "queued": g.backlog,
            "batches": g.batches,
            "rows": self.rows,
            "largest_batch": g.largest_batch,
            "failed_batches": self.failed_batches,
        }
