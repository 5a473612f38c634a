"""`CallSink`: call events into the store, one transaction per batch.

For each event: an outbox row per matching webhook (target ``webhook:<name>``, key the event id
``<linkedid>:<kind>:<n>``, payload the schema-1 document); for ``call.ended`` also the call record
and, with ``calls.outcomes``, the DID Optimizer outcome (target ``did_optimizer``, key the first
leg's uniqueid - the key ``call_log`` uses for that leg, so a call both paths see is reported once).
Rows of one batch are inserted in event order, so outbox ids follow the order of a call's events.

The tracker pushes without waiting (`push`, never blocks): events wait in a bounded queue
(``calls.queue_size``; past it the oldest are dropped and counted). A store failure keeps the batch
and retries with the outbox's backoff helper; only health degrades. AMI events are not durable
before they reach this queue: a crash loses the events still queued.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import sqlalchemy as sa

from ..errors import raise_if_cancelling
from ..backoff import decorrelated_jitter
from ..outbox.queries import short_error
from ..store import STORE_ERRORS
from .documents import document, matches, outcome_payload
from .model import ENDED
from .records import call_records, prune_statement, record_row
from .settings import CallsConfig
from .tracker import CallEvent

log = logging.getLogger(__name__)

BATCH_MAX = 500
PRUNE_INTERVAL_S = 600.0


class OutboxLike(Protocol):
    def add(self, conn: sa.Connection, target: str, key: str, payload: dict[str, Any]) -> bool: ...
    def notify(self) -> None: ...


class StoreLike(Protocol):
    async def write(self, work: Callable[[sa.Connection], Any], *, urgent: bool = False) -> Any: ...
    def insert_ignore(self, table: sa.Table) -> sa.Insert: ...


class CallSink:
    """Component (`start`, `run`, `stop`, `health`). Connect ``push`` as a call-event listener.

    ``outcome_target``: the DID Optimizer's outbox target name; ``outcome_source``: the
    ``source`` field of those reports (``call_log.source``). ``clock``: epoch seconds.
    """

    def __init__(self, config: CallsConfig, *, store: StoreLike, outbox: OutboxLike, node_id: str,
                 outcome_target: str = "did_optimizer", outcome_source: str = "telephonyd",
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.node_id = node_id
        self.outcome_target = outcome_target
        self.outcome_source = outcome_source
        self._clock = clock
        self._queue: deque[tuple[CallEvent, dict[str, Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._rng = random.Random()
        self._next_prune = 0.0
        self.dropped = 0
        self._head_dropped = 0  # dropped from the front while a batch was being written
        self.written = 0
        self.rows = 0
        self.last_error: str | None = None
        self.state = "created"

    def push(self, event: CallEvent) -> None:
        """Queue one event (with its document built now); never blocks."""
        if len(self._queue) >= self.config.queue_size:
            self._queue.popleft()
            self.dropped += 1
            self._head_dropped += 1
        self._queue.append((event, document(event, self.node_id)))
        self._wakeup.set()

    def wanted(self, event: CallEvent) -> bool:
        """Whether an event leads to any row (used to skip work when nothing is configured)."""
        if event.kind == ENDED and (self.config.records or self.config.outcomes):
            return True
        return any(matches(w, event.kind, event.snapshot) for w in self.config.webhooks)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.state = "ready"

    async def run(self) -> None:
        self.state = "running"
        try:
            await self._loop()
        finally:
            self.state = "stopped"
            self._done.set()

    async def _loop(self) -> None:
        wait: float | None = None
        while True:
            if not self._queue:
                if self._stopping.is_set():
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue[i] for i in range(min(BATCH_MAX, len(self._queue)))]
            self._head_dropped = 0
            try:
                async with asyncio.timeout(30.0):
                    added = await self.store.write(lambda conn: self._write(conn, batch))
            except STORE_ERRORS as exc:
                raise_if_cancelling()
                wait = decorrelated_jitter(wait, 0.5, 30.0, self._rng)
                self.last_error = short_error(exc)
                self.state = "degraded"
                log.warning("call events not stored, retrying", extra={"error": self.last_error,
                                                                       "retry_in_s": round(wait, 2)})
                if self._stopping.is_set():
                    break
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                except TimeoutError:
                    pass
                continue
            wait, self.last_error, self.state = None, None, "running"
            for _ in range(max(0, len(batch) - self._head_dropped)):
                self._queue.popleft()
            self.written += len(batch)
            self.rows += added
            if added:
                self.outbox.notify()

    async def stop(self, timeout: float) -> None:
        """Store what is queued within ``timeout`` s, then stop."""
        self._stopping.set()
        self._wakeup.set()
        if self.state in ("running", "degraded"):
            try:
                await asyncio.wait_for(self._done.wait(), timeout)
            except TimeoutError:
                log.warning("call events not all stored before stop", extra={"queued": len(self._queue)})

    def health(self) -> dict[str, Any]:
        return {"ok": self.state in ("ready", "running", "stopped"), "state": self.state,
                "queued": len(self._queue), "written": self.written, "rows": self.rows,
                "dropped": self.dropped, "last_error": self.last_error}

    # -- one transaction -------------------------------------------------------------------------

    def _write(self, conn: sa.Connection, batch: list[tuple[CallEvent, dict[str, Any]]]) -> int:
        added = 0
        records: list[dict[str, Any]] = []
        for event, doc in batch:
            call = event.snapshot
            for webhook in self.config.webhooks:
                if matches(webhook, event.kind, call):
                    added += self.outbox.add(conn, webhook.target, event.event_id, doc)
            if event.kind != ENDED:
                continue
            if self.config.records:
                c = event.call
                records.append(record_row(call, node_id=self.node_id, started=c.started_at,
                                          answered=c.answered_at, ended=c.ended_at or event.time))
            if self.config.outcomes:
                payload = outcome_payload(call, source=self.outcome_source, timestamp=int(event.time))
                if payload is not None:
                    added += self.outbox.add(conn, self.outcome_target, payload["uniqueid"], payload)
        if records:
            conn.execute(self.store.insert_ignore(call_records), records)
        now = self._clock()
        if self.config.records and self.config.retention_s and now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL_S
            conn.execute(prune_statement(now - self.config.retention_s))
        return added
