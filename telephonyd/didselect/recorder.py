"""`SelectionRecorder`: selections written to the ``did_selection`` table off the call path.

The AGI session never waits for the store: `add` queues the selection (bounded; a full queue drops
and counts) and `run` writes whatever has gathered within `LINGER_S` as one transaction (delete + insert, so the
last ask of a uniqueid wins), retrying a failed batch with the project's backoff. `lookup` reads
one row back for a hangup that another instance (or a restart) sees.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..errors import raise_if_cancelling
from ..backoff import decorrelated_jitter
from ..store import Store
from .model import Selection
from .schema import did_selection

log = logging.getLogger(__name__)

BATCH_MAX = 256
#: Seconds a first selection waits for others to share its transaction.
LINGER_S = 0.2
PRUNE_INTERVAL_S = 300.0


class SelectionRecorder:
    """Queues and writes `Selection` rows. ``timeout_s`` bounds each write and each lookup."""

    def __init__(
        self,
        store: Store,
        *,
        timeout_s: float,
        retention_s: float,
        max_queue: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.retention_s = retention_s
        self.max_queue = max_queue
        self._clock = clock
        self._queue: deque[Selection] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._rng = random.Random()
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None

    def add(self, selection: Selection) -> None:
        """Queue one selection (never blocks)."""
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            log.warning("DID selection not recorded: queue full", extra={"uniqueid": selection.uniqueid})
            return
        self._queue.append(selection)
        self._idle.clear()
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self, stopping: asyncio.Event) -> None:
        """Write batches until ``stopping`` is set and the queue is empty; prune old rows now and then."""
        delay: float | None = None
        next_prune = 0.0
        while True:
            if not self._queue:
                self._idle.set()
                if stopping.is_set():
                    return
                self._wakeup.clear()
                waiter = asyncio.ensure_future(self._wakeup.wait())
                stopper = asyncio.ensure_future(stopping.wait())
                try:
                    await asyncio.wait({waiter, stopper}, timeout=PRUNE_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()
            if len(self._queue) < BATCH_MAX and not stopping.is_set():
                # Let a batch gather: one transaction (one fsync on SQLite) for many selections
                # instead of one each; the hangup of the same call finds it in memory meanwhile.
                try:
                    await asyncio.wait_for(stopping.wait(), LINGER_S)
                except TimeoutError:
                    pass
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_INTERVAL_S
                await self._prune()
            if not self._queue:
                continue
            batch = [self._queue.popleft() for _ in range(min(BATCH_MAX, len(self._queue)))]
            try:
                await self._write(batch)
                delay = None
                self.written += len(batch)
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a store failure: keep the rows, retry later
                raise_if_cancelling()
                self._queue.extendleft(reversed(batch))
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                delay = decorrelated_jitter(delay, 0.5, 30.0, self._rng)
                log.warning("DID selections not written, retrying", extra={"error": self.last_error,
                                                                           "rows": len(batch), "retry_in_s": round(delay, 2)})  # fmt: skip
                if stopping.is_set():
                    return
                try:
                    await asyncio.wait_for(stopping.wait(), delay)
                except TimeoutError:
                    pass

    async def flushed(self, timeout_s: float) -> bool:
        """Wait until the queue is written (True) or ``timeout_s`` passes (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def _write(self, batch: list[Selection]) -> None:
        rows = list({s.uniqueid: s.row() for s in batch}.values())
        keys = [r["uniqueid"] for r in rows]

        def work(conn: sa.Connection) -> None:
            conn.execute(sa.delete(did_selection).where(did_selection.c.uniqueid.in_(keys)))
            conn.execute(sa.insert(did_selection), rows)

        async with asyncio.timeout(self.timeout_s):
            await self.store.write(work)

    async def _prune(self) -> None:
        cutoff = self._clock() - self.retention_s

        def work(conn: sa.Connection) -> int:
            return conn.execute(sa.delete(did_selection).where(did_selection.c.created_at < cutoff)).rowcount

        try:
            async with asyncio.timeout(self.timeout_s):
                removed = await self.store.write(work)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - pruning is housekeeping; the next round tries again
            raise_if_cancelling()
            log.info("old DID selections not pruned", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
            return
        if removed:
            log.info("old DID selections pruned", extra={"rows": removed})

    async def lookup(self, uniqueid: str) -> Selection | None:
        """The stored selection of ``uniqueid``, or None (none, or the store did not answer in time)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.store.connect() as conn:
                    row = (await conn.execute(
                        sa.select(did_selection).where(did_selection.c.uniqueid == uniqueid[:64])
                    )).first()  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lookup failure only loses the link, never the report
            raise_if_cancelling()
            log.info("DID selection lookup failed", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
            return None
        return None if row is None else Selection.from_row(row)

    def health(self) -> dict[str, Any]:
        return {"pending": self.pending, "written": self.written, "dropped": self.dropped, "last_error": self.last_error}
