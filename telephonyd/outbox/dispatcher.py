"""The dispatcher: claims due rows, sends them with bounded concurrency, records each result.

Claims hold a lease (database clock) and this process's claim token; a send is cut off well before
the lease ends, so a live node never loses its own claim, and the result write is conditional on
still holding it. Rows of a node that died come back when their lease expires; those of this node's
own previous process, provably gone (`claimant.gone`), at the first round after a restart. Every row
taken back is named in the log (it will be sent again; the upstream's ``Idempotency-Key`` lets it
tell). Store failures are retried with backoff and
only degrade health.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import TYPE_CHECKING

from ..errors import raise_if_cancelling
from ..logs import log_context
from . import claimant
from ..store.conflicts import StoreConflict
from ..backoff import decorrelated_jitter, full_jitter, retry_delay
from .model import PENDING, Delivery, OutboxRow, Sender
from .queries import STORE_ERRORS, Finish, OutboxQueries, short_error
from .targets import TargetState
from .writer import GroupWriter

if TYPE_CHECKING:
    from ..config import OutboxConfig
    from .requeue import Requeued

log = logging.getLogger(__name__)

#: Health counts (pending / in flight / dead) are refreshed at most this often.
COUNTS_INTERVAL_S = 5.0
#: Longest wait between store retries while the store is down.
STORE_RETRY_MAX_S = 30.0
#: A send is cut off at this share of the lease; its result must be written within the second.
SEND_SHARE_OF_LEASE = 0.8
RESULT_SHARE_OF_LEASE = 0.95


class Dispatcher:
    """Delivery loop of one `Outbox` (see there for the arguments)."""

    def __init__(self, queries: OutboxQueries, config: OutboxConfig, rng: random.Random) -> None:
        self.queries = queries
        self.config = config
        self.rng = rng
        self.senders: dict[str, Sender] = {}
        self.targets: dict[str, TargetState] = {}
        self.sending: dict[asyncio.Task[None], OutboxRow] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.totals: Counter[str] = Counter()
        self.store_ok = True
        self.store_ok_at = 0.0
        self.last_error: str | None = None
        self.last_delivery_error: str | None = None
        self.last_delivery_error_at: float | None = None
        self.wakeup = asyncio.Event()
        self.stopping = asyncio.Event()
        # Results are group-committed too: one transaction for all sends finishing together.
        self.results: GroupWriter[Finish, bool] = GroupWriter(
            queries.finish_batch, batch_max=config.write_batch_max, timeout_s=config.store_timeout_s,
            name="outbox-results",
        )
        self._target_turn = 0
        self._took_back = False
        self._reported_targets: set[str] = set()
        self._next_sweep = self._next_counts = self._next_prune = 0.0

    def register(self, target: str, sender: Sender, enabled: bool) -> None:
        self.senders[target] = sender
        self.targets[target] = TargetState(enabled=enabled)
        self._reported_targets.discard(target)
        self.wakeup.set()

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        failure_wait: float | None = None
        self.results.start()
        try:
            while not self.stopping.is_set():
                self.wakeup.clear()
                try:
                    async with asyncio.timeout(self.config.store_timeout_s):
                        wait = await self._cycle()
                except StoreConflict as exc:  # contended rows, a working store: try again soon
                    raise_if_cancelling()
                    failure_wait = None
                    wait = full_jitter(1, self.config.backoff_base_s, self.config.backoff_base_s, self.rng)
                    log.warning("outbox write conflict; retries exhausted, trying again",
                                extra={"op": exc.op, "attempts": exc.attempts, "retry_in_s": round(wait, 3)})
                except STORE_ERRORS as exc:
                    raise_if_cancelling()
                    cap = min(self.config.backoff_max_s, STORE_RETRY_MAX_S)
                    failure_wait = decorrelated_jitter(failure_wait, self.config.backoff_base_s, cap, self.rng)
                    self._store_failed(exc, failure_wait)
                    wait = failure_wait
                else:
                    failure_wait = None
                    self._store_recovered()
                await self._wait(wait)
        finally:
            if not self.stopping.is_set():
                # Cancelled (the process is going down hard): sends die with the loop; their rows
                # stay claimed and come back after the lease.
                for task in list(self.sending):
                    task.cancel()
                self.results.abort()

    async def drain(self, timeout: float) -> None:
        """Stop claiming; wait ``timeout`` s for sends in flight, then cut them off and release."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        self.stopping.set()
        self.wakeup.set()
        if self.sending:
            _, unfinished = await asyncio.wait(list(self.sending), timeout=max(0.0, deadline - loop.time()))
            if unfinished:
                rows = [self.sending[task] for task in unfinished if task in self.sending]
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*unfinished, return_exceptions=True)
                await self._release(rows, max(0.1, deadline - loop.time()))
        await self.results.close(max(0.1, deadline - loop.time()))

    async def _cycle(self) -> float | None:
        """One round: housekeeping, then claims. Returns how long to wait before the next one."""
        now = time.monotonic()
        await self._housekeeping(now)
        free = self.config.concurrency - len(self.sending)
        if free < self._claim_from():
            # Claim in batches, not one row per finished send: wait for a few slots.
            return self.config.poll_interval_s
        available = self._available_targets(now)
        more_due = False
        for target in available:
            if free <= 0:
                break
            want = min(free, self.config.claim_batch)
            rows = await self.queries.claim(target, want, self.config.lease_s)
            if self.stopping.is_set():
                await self._release(rows, self.config.store_timeout_s)
                return None
            for row in rows:
                self._spawn(row)
            free -= len(rows)
            more_due = more_due or len(rows) == want
        if more_due and free > 0:
            return 0.0
        if free <= 0:
            return self.config.poll_interval_s
        wait = self.config.poll_interval_s
        due_in = await self.queries.next_due_in(available) if available else None
        if due_in is not None:
            wait = min(wait, due_in)
        for ts in self.targets.values():
            if ts.enabled and ts.paused_until > now:
                wait = min(wait, ts.paused_until - now)
        return wait

    def _claim_from(self) -> int:
        """Free slots needed before a round claims (a quarter of ``concurrency``)."""
        return max(1, self.config.concurrency // 4)

    def _available_targets(self, now: float) -> list[str]:
        names = [name for name, ts in self.targets.items() if ts.available(now)]
        if len(names) > 1:
            # Rotate so a target with a large backlog cannot starve the others.
            self._target_turn = (self._target_turn + 1) % len(names)
            names = names[self._target_turn:] + names[: self._target_turn]
        return names

    async def _housekeeping(self, now: float) -> None:
        if not self._took_back:
            # A restart after a crash (kill -9, OOM): this node's claims of the process that died
            # come back at once instead of after their lease.
            rows = await self.queries.take_back_predecessors(claimant.gone, self.config.max_attempts)
            self._took_back = True
            self._log_requeued(rows, "outbox claim of this node's previous process (gone) taken back; "
                                     "the row will be sent again")
        if now >= self._next_sweep:
            expired = await self.queries.expire_leases_rows(self.config.max_attempts)
            self._log_requeued(expired, "outbox claim expired; the row will be sent again")
            self._next_sweep = now + self.config.poll_interval_s
        if now >= self._next_counts:
            await self.refresh_counts()
            self._next_counts = now + COUNTS_INTERVAL_S
        if now >= self._next_prune:
            pruned = await self.queries.prune_delivered(self.config.delivered_retention_s)
            if pruned:
                log.info("outbox pruned delivered rows", extra={"rows": pruned})
            self._next_prune = now + self.config.prune_interval_s

    def _log_requeued(self, rows: list[Requeued], message: str) -> None:
        """One line per row that will be sent again (the upstream may have it already): outbox id,
        key, the node that held it and the call's log fields (uniqueid, request_id ...)."""
        for row in rows:
            with log_context(**{**row.context, "outbox_id": row.id, "outbox_target": row.target}):
                log.warning(message, extra={"key": row.key, "claimed_by": row.claimed_by})
        if rows:
            self.totals["claims_taken_back"] += len(rows)

    async def refresh_counts(self) -> None:
        """Re-read the pending / in-flight / dead counts for health; report idle targets."""
        self.counts = await self.queries.open_counts()
        self._report_idle_targets()

    def _report_idle_targets(self) -> None:
        """Log once per target that has pending rows nobody here will send."""
        for target, per_state in self.counts.items():
            pending = per_state.get(PENDING, 0)
            if not pending or target in self._reported_targets:
                continue
            ts = self.targets.get(target)
            if ts is None:
                log.warning("outbox rows for an unknown target stay pending",
                            extra={"outbox_target": target, "rows": pending})
            elif not ts.enabled:
                log.info("outbox target disabled; its rows stay pending until it is enabled",
                         extra={"outbox_target": target, "rows": pending})
            else:
                continue
            self._reported_targets.add(target)

    async def _wait(self, timeout: float | None) -> None:
        if self.stopping.is_set():
            return
        if timeout is not None and timeout <= 0:
            await asyncio.sleep(0)
            return
        try:
            # asyncio.timeout, not wait_for: no task of its own per wait (several waits a second under load).
            async with asyncio.timeout(timeout):
                await self.wakeup.wait()
        except TimeoutError:
            pass

    # -- one row ---------------------------------------------------------------------------------

    def _spawn(self, row: OutboxRow) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(row), name=f"outbox-send-{row.id}")
        self.sending[task] = row
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self.sending.pop(task, None)
        # Wake the loop when a round can claim again; a round woken with fewer free slots would
        # only wait again (its housekeeping runs on the timed wait as well).
        if self.config.concurrency - len(self.sending) >= self._claim_from():
            self.wakeup.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox send task failed", exc_info=task.exception())

    async def _deliver(self, row: OutboxRow) -> None:
        result_deadline = asyncio.get_running_loop().time() + self.config.lease_s * RESULT_SHARE_OF_LEASE
        with log_context(**{**row.context, "outbox_id": row.id, "outbox_target": row.target}):
            delivery = await self._attempt(row)
            ts = self.targets.get(row.target)
            if ts is not None:
                ts.record(delivery, time.monotonic(), self.config.backoff_base_s, self.config.backoff_max_s, self.rng)
            await self._record(row, delivery, result_deadline)

    async def _attempt(self, row: OutboxRow) -> Delivery:
        limit = self.config.lease_s * SEND_SHARE_OF_LEASE
        try:
            async with asyncio.timeout(limit):
                return await self.senders[row.target].send(row)
        except TimeoutError:
            return Delivery("retry", error=f"sender gave no answer within {limit:g}s")
        except Exception as exc:
            log.warning("outbox sender raised", exc_info=True)
            return Delivery("retry", error=f"{type(exc).__name__}: {exc}"[:500])

    async def _record(self, row: OutboxRow, delivery: Delivery, deadline: float) -> None:
        attempts = row.attempts + 1
        outcome, error, delay = delivery.outcome, delivery.error, 0.0
        if outcome == "retry" and 0 < self.config.max_attempts <= attempts:
            outcome, error = "dead", f"gave up after {attempts} attempts: {error}"
        if outcome == "delivered":
            finish = self.queries.delivered(row.id, delivery.status, attempts=row.attempts)
        elif outcome == "dead":
            finish = self.queries.dead_letter(row.id, error, delivery.status, attempts=row.attempts)
        else:
            cfg = self.config
            delay = retry_delay(attempts, cfg.backoff_base_s, cfg.backoff_max_s, self.rng, delivery.retry_after_s)
            finish = self.queries.retry_later(row.id, delay, error, delivery.status, attempts=row.attempts)
        if outcome != "delivered":
            self.last_delivery_error = f"{row.target}: {error}"
            self.last_delivery_error_at = time.time()
        held = await self._write_result(finish, deadline)
        if held is None:
            return
        fields = {"outcome": outcome, "status": delivery.status, "attempts": attempts}
        if not held:
            self.totals["claims_lost"] += 1
            log.warning("outbox claim lost before the result was recorded", extra=fields)
        elif outcome == "delivered":
            self.totals[outcome] += 1
            log.info("outbox row delivered", extra={**fields, "response": delivery.response})
        elif outcome == "dead":
            self.totals[outcome] += 1
            log.error("outbox row dead-lettered", extra={**fields, "error": error})
        else:
            self.totals[outcome] += 1
            log.warning("outbox delivery failed; will retry",
                        extra={**fields, "error": error, "retry_in_s": round(delay, 3)})

    async def _write_result(self, finish: Finish, deadline: float) -> bool | None:
        """Write ``finish`` (group commit) until it succeeds or the claim would run out; None when
        it never did. False when the claim was lost."""
        loop = asyncio.get_running_loop()
        wait: float | None = None
        while True:
            try:
                return await self.results.submit(finish)
            except STORE_ERRORS as exc:
                raise_if_cancelling()
                wait = decorrelated_jitter(wait, min(0.1, self.config.backoff_base_s), 2.0, self.rng)
                if loop.time() + wait >= deadline or self.stopping.is_set():
                    self.totals["results_not_recorded"] += 1
                    log.error("outbox result not recorded; the row will be sent again after its lease",
                              extra={"error": short_error(exc)})
                    return None
                await asyncio.sleep(wait)  # backoff between store attempts, not a wait for state

    async def _release(self, rows: list[OutboxRow], timeout: float) -> None:
        if not rows:
            return
        try:
            async with asyncio.timeout(timeout):
                released = await self.queries.release(r.id for r in rows)
            log.info("outbox claims released", extra={"rows": released})
        except STORE_ERRORS as exc:
            log.warning("outbox claims not released; they return after their lease",
                        extra={"rows": len(rows), "error": short_error(exc)})

    def _store_failed(self, exc: BaseException, retry_in: float) -> None:
        self.store_ok = False
        self.last_error = short_error(exc)
        log.warning("outbox store unavailable", extra={"error": self.last_error, "retry_in_s": round(retry_in, 3)})

    def _store_recovered(self) -> None:
        if not self.store_ok:
            log.info("outbox store available again")
        self.store_ok = True
        self.store_ok_at = time.monotonic()
        self.last_error = None

