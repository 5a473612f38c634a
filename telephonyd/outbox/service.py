"""`Outbox`: durable enqueue (group commit), the dispatcher's lifecycle, and administration.

Lifecycle: `start` (the group-commit writer runs from here on, so enqueues work before `run`),
`run` (claim due rows, send them with bounded concurrency, record results; housekeeping), `stop`
(finish or release in-flight sends, flush queued enqueues). A store outage only degrades health.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ..errors import StoreError
from ..logs import current_context
from . import report
from .dispatcher import Dispatcher
from .metrics import OutboxSection
from .model import (
    DEAD,
    IN_FLIGHT,
    MAX_KEY_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_TARGET_CHARS,
    PENDING,
    STATES,
    EnqueueResult,
    Sender,
)
from .queries import STORE_ERRORS, NewRow, OutboxQueries, short_error
from .schema import metadata
from .writer import GroupWriter

if TYPE_CHECKING:
    from ..config import OutboxConfig
    from ..store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


class Outbox:
    """The durable outbox of one node.

    Args:
        store: a started `Store` whose schemas include `metadata` (``telephonyd.outbox.metadata``).
        node_id: this instance's name (``Config.node_id``), written to ``node_id`` and
            ``claimed_by``. Instances sharing one MariaDB must use different names.
        config: ``OutboxConfig`` (batching, concurrency, backoff, lease, retention, timeouts).
        rng: random source for jitter (tests pass a seeded one).

    Register senders with `register_sender` before `run`. The admin methods (`stats`,
    `list_rows`, `retry`, `retry_all_dead`, `drop`) work without `start`.
    """

    metadata = metadata

    def __init__(
        self, store: Store, *, node_id: str, config: OutboxConfig, rng: random.Random | None = None
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.config = config
        self.queries = OutboxQueries(store, node_id)
        self._dispatcher = Dispatcher(self.queries, config, rng or random.Random())
        self._writer: GroupWriter[NewRow, EnqueueResult] = GroupWriter(
            self.queries.insert_batch, batch_max=config.write_batch_max, timeout_s=config.store_timeout_s
        )
        self._state = "created"
        self._run_done = asyncio.Event()

    def register_sender(self, target: str, sender: Sender, enabled: bool = True) -> None:
        """Deliver rows of ``target`` through ``sender``. Rows of a disabled target stay pending
        (visible in `stats`) until a run registers the target enabled."""
        self._dispatcher.register(target, sender, enabled)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the group-commit writer; `enqueue` works from here on."""
        self._dispatcher.stopping.clear()
        self._run_done.clear()
        self._writer.start()
        self._state = "ready"

    async def run(self) -> None:
        """Deliver due rows until `stop`. Store failures degrade health and are retried."""
        if self._state in ("stopping", "stopped"):
            return  # stopped before the loop got going
        if self._state != "ready":
            raise RuntimeError(f"Outbox.run() needs start() first (state {self._state})")
        self._state = "running"
        log.info("outbox dispatcher running",
                 extra={"node_id": self.node_id, "targets": sorted(self._dispatcher.senders)})
        try:
            await self._dispatcher.run()
        finally:
            self._run_done.set()

    async def stop(self, timeout: float) -> None:
        """Stop claiming; let sends in flight finish within ``timeout`` s, release the rest.

        Rows whose send is cut off go back to pending (due at once); enqueues already queued are
        committed before the writer stops, later ones raise `StoreError`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        was_running = self._state == "running"
        self._state = "stopping"
        await self._dispatcher.drain(timeout)
        if was_running:
            try:
                await asyncio.wait_for(self._run_done.wait(), max(0.1, deadline - loop.time()))
            except TimeoutError:
                log.warning("outbox dispatcher did not stop in time")
        await self._writer.close(max(0.1, deadline - loop.time()))
        self._state = "stopped"
        log.info("outbox stopped", extra={"node_id": self.node_id, "sent": dict(self._dispatcher.totals)})

    def collectors(self) -> list[OutboxSection]:
        """The outbox's metrics (``telephonyd_outbox_*``, ``telephonyd_store_conflicts*``), read from
        its dispatcher, writer and the store's conflict counter (row counts: `stats`, per scrape)."""
        writer = self._writer
        return [OutboxSection(dispatcher=self._dispatcher, written_rows=lambda: writer.rows,
                              failed_batches=lambda: writer.failed_batches, conflicts=self.store.conflicts,
                              stats=self.stats)]

    def health(self) -> dict[str, Any]:
        """``ok``, ``state`` (created, ready, running, degraded, stopping, stopped), ``counts``
        (pending / in_flight / dead of every node, refreshed every few seconds), ``sent``
        (outcomes recorded by this node since start), ``last_error`` (the store's while it fails,
        else the last failed delivery's as ``<target>: <error>``, at ``last_error_at`` epoch s),
        ``writer`` (group-commit figures) and ``targets`` (per target: ``enabled``, ``unhealthy``, ``paused_for_s``,
        ``consecutive_failures``, ``last_error``, ``last_status``, ``pending``)."""
        d = self._dispatcher
        now = time.monotonic()
        # A failed enqueue batch counts until a later batch or dispatcher round reached the store.
        writer_ok = self._writer.healthy or d.store_ok_at > self._writer.failed_at
        healthy_store = d.store_ok and writer_ok
        store_error = d.last_error or (None if writer_ok else self._writer.last_error)
        state = "degraded" if self._state == "running" and not healthy_store else self._state
        counts = dict.fromkeys((PENDING, IN_FLIGHT, DEAD), 0)
        for per_state in d.counts.values():
            for name, n in per_state.items():
                counts[name] = counts.get(name, 0) + n
        return {
            "ok": self._state in ("ready", "running") and healthy_store and self._writer.running,
            "state": state,
            "node_id": self.node_id,
            "counts": counts,
            "sending": len(d.sending),
            "sent": dict(d.totals),
            "conflicts": self.store.conflicts.snapshot(),
            "last_error": store_error or d.last_delivery_error,
            "last_error_at": None if store_error else d.last_delivery_error_at,
            "writer": self._writer.stats(),
            "targets": {
                name: {**ts.describe(now), "pending": d.counts.get(name, {}).get(PENDING, 0)}
                for name, ts in d.targets.items()
            },
        }

    async def refresh_counts(self) -> None:
        """Re-read the counts `health` shows now instead of at the next periodic refresh."""
        await _store_call(self._dispatcher.refresh_counts())

    def notify(self) -> None:
        """Wake the dispatcher now (rows were committed elsewhere, a row was retried)."""
        self._dispatcher.wakeup.set()

    # -- writing rows ----------------------------------------------------------------------------

    async def enqueue(self, target: str, key: str, payload: dict[str, Any]) -> EnqueueResult:
        """Store one row durably; returns after its transaction COMMITTED.

        ``key`` is the idempotency key: a (target, key) already stored creates nothing and gives
        ``created=False`` with the existing id. Concurrent calls share one transaction (group
        commit). Raises `StoreError` (retryable; nothing is acknowledged) when the store fails or
        the outbox is not started, `ValueError` for an empty or too long target/key or a payload
        that is not a JSON object. The log context of the caller (uniqueid, request_id, ...) is
        kept with the row and set again on every log line about its delivery.
        """
        result = await self._writer.submit(_new_row(target, key, payload))
        if result.created:
            self.notify()
        return result

    def add(self, conn: sa.Connection, target: str, key: str, payload: dict[str, Any]) -> bool:
        """Insert one row inside the caller's open transaction (a `Store.write` work function's
        connection); True when it was created. Raises `ValueError` as `enqueue` does, and the
        store's errors unchanged (the caller's transaction fails with them).

        The caller calls `notify` after its COMMIT.
        """
        return self.queries.add(conn, _new_row(target, key, payload))

    # -- administration --------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """``by_state`` counts, ``oldest_pending_age_s``, ``dead``, per-target counts (``targets``),
        in-flight ``claims`` by node (``node_id``, ``rows``, ``ids``: the first 20 of them,
        ``stuck``: those whose lease is already past, ``lease_expires_in_s`` /
        ``last_lease_expires_in_s``: the earliest and latest lease end in s from now, negative when
        past), ``stuck_leases`` (their total), ``db_now``; every time on the database clock."""
        return await _store_call(report.stats(self.store))

    async def list_rows(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Rows, oldest first: id, target, key, payload, state, attempts, next_attempt_at,
        last_error, last_status, node_id, claimed_by, lease_until, created/updated/delivered_at."""
        if state is not None and state not in STATES:
            raise ValueError(f"unknown outbox state {state!r} (one of {', '.join(STATES)})")
        return await _store_call(report.list_rows(self.store, state, max(1, limit)))

    async def retry(self, row_id: int) -> bool:
        """Make a dead (or backing-off pending) row due now, attempts reset; False when there is
        no such row (delivered rows are never sent again)."""
        done = await _store_call(self.queries.retry(row_id)) == 1
        self.notify()
        return done

    async def retry_all_dead(self) -> int:
        """Make every dead letter due again; returns how many."""
        count = await _store_call(self.queries.retry(None))
        self.notify()
        return count

    async def drop(self, row_id: int) -> bool:
        """Delete one row for good; False when it does not exist."""
        return await _store_call(self.queries.drop(row_id))


async def _store_call(operation: Awaitable[T]) -> T:
    """Await a store operation; its failures surface as `StoreError` (retryable)."""
    try:
        return await operation
    except StoreError:
        raise
    except STORE_ERRORS as exc:
        raise StoreError(f"outbox store operation failed: {short_error(exc)}") from exc


def _new_row(target: str, key: str, payload: dict[str, Any]) -> NewRow:
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET_CHARS:
        raise ValueError(f"outbox target must be 1..{MAX_TARGET_CHARS} characters")
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS or key != key.strip():
        raise ValueError(f"outbox key must be 1..{MAX_KEY_CHARS} characters without surrounding blanks")
    if not isinstance(payload, dict):
        raise ValueError("outbox payload must be a JSON object")
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"outbox payload is not JSON-able: {exc}") from None
    if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"outbox payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    context = {k: v for k, v in current_context().items() if isinstance(v, (str, int, float, bool))}
    context.pop("outbox_id", None)
    context.pop("outbox_target", None)
    return NewRow(target, key, text, json.dumps(context, ensure_ascii=False) if context else None)
