"""`OutboxSection`: ``telephonyd_outbox_*`` and ``telephonyd_store_conflicts*`` of one `Outbox`, read
from its dispatcher, writer and the store's conflict counter at scrape time (the outbox builds it,
`Outbox.collectors`; its ``health()`` is for ``/status`` only).

Row counts come from one ``Outbox.stats()`` query per scrape (`refresh`, bounded by a timeout);
when the store does not answer, the dispatcher's last periodic count of open rows stands in
(``telephonyd_outbox_stats_ok 0``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..metrics.section import Section, counter, gauge
from .model import DEAD, PENDING

if TYPE_CHECKING:
    from ..store.conflicts import ConflictCounter
    from .dispatcher import Dispatcher

log = logging.getLogger(__name__)

#: Outbox states always exported (0 when empty), so a dashboard never sees a series vanish.
OUTBOX_STATES = ("pending", "in_flight", "delivered", "dead")
#: Operations always exported in the conflict counters (0 until one happens).
CONFLICT_OPS = ("claim", "result", "enqueue")


class OutboxSection(Section):
    """``dispatcher``: targets (`TargetState`), open-row counts, totals, sends in flight;
    ``written_rows()`` / ``failed_batches()``: the group-commit writer's figures; ``conflicts``: the
    store's `ConflictCounter`; ``stats()``: the ``Outbox.stats()`` document (``targets``, ``dead``,
    ``oldest_pending_age_s``); ``clock``: monotonic seconds, for pauses."""

    def __init__(self, *, dispatcher: Dispatcher, written_rows: Callable[[], int], failed_batches: Callable[[], int],
                 conflicts: ConflictCounter, stats: Callable[[], Awaitable[dict[str, Any]]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dispatcher = dispatcher
        self.written_rows = written_rows
        self.failed_batches = failed_batches
        self.conflicts = conflicts
        self.stats = stats
        self.clock = clock
        self._stats: dict[str, Any] | None = None

    async def refresh(self, timeout_s: float) -> None:
        """Read the row counts; on failure the dispatcher's counts stand in for this scrape."""
        try:
            async with asyncio.timeout(timeout_s):
                self._stats = await self.stats()
        except Exception as exc:  # noqa: BLE001 - a timeout or a store failure must not fail the scrape
            log.debug("outbox stats unavailable for metrics", extra={"error": str(exc)[:200]})
            self._stats = None

    def collect(self) -> Iterator[Metric]:
        d = self.dispatcher
        stats = self._stats
        rows = GaugeMetricFamily("telephonyd_outbox_rows", "Outbox rows by target and state", labels=["target", "state"])
        if stats is not None:
            per_target = stats.get("targets") or {}
            for target in sorted(set(per_target) | set(d.targets)):
                for state in OUTBOX_STATES:
                    rows.add_metric([target, state], float((per_target.get(target) or {}).get(state) or 0))
            dead = float(stats.get("dead") or 0)
            oldest = float(stats.get("oldest_pending_age_s") or 0)
        else:  # the store did not answer: the dispatcher's last periodic count of open rows
            for target in sorted(d.targets):
                rows.add_metric([target, "pending"], d.counts.get(target, {}).get(PENDING, 0))
            dead = float(sum(per_state.get(DEAD, 0) for per_state in d.counts.values()))
            oldest = 0.0
        yield rows
        yield gauge("telephonyd_outbox_dead_letters", "Outbox rows dead-lettered and not retried or dropped", dead)
        yield gauge("telephonyd_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row "
                    "(0 when none)", oldest)
        yield gauge("telephonyd_outbox_stats_ok", "1 when this scrape read the row counts from the store",
                    1 if stats is not None else 0)
        results = CounterMetricFamily("telephonyd_outbox_results", "Delivery results recorded by this node, "
                                      "after the outbox's own rules (max_attempts)", labels=["outcome"])
        for outcome, n in sorted(d.totals.items()):
            results.add_metric([outcome], n)
        yield results
        yield gauge("telephonyd_outbox_sending", "Outbox sends in flight on this node", len(d.sending))
        yield counter("telephonyd_outbox_enqueued_rows", "Rows written by the group-commit writer", self.written_rows())
        yield counter("telephonyd_outbox_write_failures", "Group-commit batches that failed", self.failed_batches())
        for by_op, name, text in (
            (dict(self.conflicts.restarted), "telephonyd_store_conflicts", "Transactions the database rolled back "
             "for a write conflict (deadlock 1213, lock wait 1205, Galera certification) and restarted, by operation"),
            (dict(self.conflicts.exhausted), "telephonyd_store_conflicts_exhausted",
             "Operations that gave up after repeated conflicts"),
        ):
            family = CounterMetricFamily(name, text, labels=["op"])
            for op in (*CONFLICT_OPS, *sorted(set(by_op) - set(CONFLICT_OPS))):
                family.add_metric([op], by_op.get(op, 0))
            yield family
        now = self.clock()
        targets = sorted(d.targets.items())
        for name, text, value in (
            ("telephonyd_outbox_target_enabled", "1 when the target's sender is enabled",
             lambda t: 1 if t.enabled else 0),
            ("telephonyd_outbox_target_unhealthy", "1 after a reply that needs a person (auth)",
             lambda t: 1 if t.unhealthy else 0),
            ("telephonyd_outbox_target_paused_seconds", "Seconds until the target is tried again",
             lambda t: round(max(0.0, t.paused_until - now), 3)),
            ("telephonyd_outbox_target_consecutive_failures", "Retryable failures in a row",
             lambda t: t.consecutive_failures),
        ):
            family = GaugeMetricFamily(name, text, labels=["target"])
            for target, state in targets:
                family.add_metric([target], value(state))
            yield family
