"""Counters kept for the metrics exporter where a component has none of its own (pure, no I/O).

- `BucketHistogram`: fixed-bucket durations (Prometheus style: upper bounds in seconds, +Inf).
- `UpstreamStats` and `InstrumentedSender`: every outbox send attempt by target and outcome, with
  its duration. The wrapper sits between the outbox dispatcher and a sender; the call path (AGI,
  callbacks) never goes through it.
- `EventCounter`: AMI events by name, fed by a subscription on the AMI client (one dict update per
  event, inside the read loop, which only allows non-blocking callbacks).

Label values are capped (``max_labels``) so that a peer inventing names cannot grow memory without
bound; past the cap new names count as ``"other"``.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

#: Upper bounds of upstream request duration buckets, seconds.
UPSTREAM_BUCKETS_S: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

OTHER = "other"
#: Longest label value taken from a peer (event names).
MAX_LABEL_CHARS = 64
#: Outcome recorded when the sender raised (the dispatcher then retries the row).
ERROR = "error"
#: Outcome recorded when the send was cut off (dispatcher timeout or shutdown).
CANCELLED = "cancelled"


class BucketHistogram:
    """Counts observations per bucket (not cumulative; the last bucket is +Inf), sum and count."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(upper_bound, count_le_bound), ..., (inf, count)]``."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts):
            total += n
            out.append((bound, total))
        return out


class UpstreamStats:
    """Send attempts per (target, outcome) and a duration histogram per target.

    Outcomes are the sender's own verdict (``delivered``, ``retry``, ``dead``) or `ERROR` /
    `CANCELLED`; the outbox may still turn a ``retry`` into a dead letter after ``max_attempts``
    (that shows in ``telephonyd_outbox_results_total``).
    """

    def __init__(self, buckets: tuple[float, ...] = UPSTREAM_BUCKETS_S, max_labels: int = 100) -> None:
        self.buckets = buckets
        self.max_labels = max_labels
        self.requests: dict[tuple[str, str], int] = {}
        self.durations: dict[str, BucketHistogram] = {}
        self.statuses: dict[tuple[str, str], int] = {}

    def observe(self, target: str, outcome: str, duration_s: float, status: int | None = None) -> None:
        key = (target, outcome)
        if key not in self.requests and len(self.requests) >= self.max_labels:
            key = (OTHER, OTHER)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.durations.get(target)
        if histogram is None:
            if len(self.durations) >= self.max_labels:
                target = OTHER
            histogram = self.durations.setdefault(target, BucketHistogram(self.buckets))
        histogram.observe(max(0.0, duration_s))
        if status is not None:
            skey = (key[0], str(status) if 100 <= status <= 599 else OTHER)
            if skey in self.statuses or len(self.statuses) < self.max_labels:
                self.statuses[skey] = self.statuses.get(skey, 0) + 1

    def wrap(self, target: str, sender: Any) -> InstrumentedSender:
        """``sender`` (an outbox ``Sender``) measured under ``target``."""
        return InstrumentedSender(target, sender, self)


class InstrumentedSender:
    """An outbox ``Sender`` that times each ``send(row)`` of the wrapped sender and counts its
    outcome in `UpstreamStats`. Exceptions and cancellation pass through unchanged.

    Per send: two clock reads and one `UpstreamStats.observe` (bound once, slots: no instance dict)."""

    __slots__ = ("_clock", "_observe", "sender", "stats", "target")

    def __init__(self, target: str, sender: Any, stats: UpstreamStats,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.target = target
        self.sender = sender
        self.stats = stats
        self._clock = clock
        self._observe = stats.observe

    async def send(self, row: Any) -> Any:
        clock = self._clock
        started = clock()
        try:
            delivery = await self.sender.send(row)
        except asyncio.CancelledError:
            self._observe(self.target, CANCELLED, clock() - started)
            raise
        except Exception:
            self._observe(self.target, ERROR, clock() - started)
            raise
        outcome = getattr(delivery, "outcome", None)
        self._observe(self.target, outcome if isinstance(outcome, str) else OTHER, clock() - started,
                      getattr(delivery, "status", None))
        return delivery


class EventCounter:
    """Events by name (as Asterisk spells them, first spelling kept), capped at ``max_labels``.

    Use ``client.subscribe("*", counter.observe)`` on an AMI client; ``observe`` takes anything
    with an ``event`` attribute (an ``AMIMessage``).
    """

    def __init__(self, max_labels: int = 300) -> None:
        self.max_labels = max_labels
        self.counts: dict[str, int] = {}
        self._names: dict[str, str] = {}

    def observe(self, message: Any) -> None:
        event = getattr(message, "event", None)
        if not event:
            return
        key = event.lower()
        name = self._names.get(key)
        if name is None:
            name = event[:MAX_LABEL_CHARS] if len(self._names) < self.max_labels else OTHER
            if name != OTHER:
                self._names[key] = name
        self.counts[name] = self.counts.get(name, 0) + 1
