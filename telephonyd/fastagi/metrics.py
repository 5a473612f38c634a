"""Counters of the FastAGI server, for health and for the app's metrics exporter (pure, no I/O).

`FastAGICounters` counts finished sessions by (route, result), keeps a duration histogram with
fixed buckets (Prometheus style: upper bounds in seconds, plus +Inf) and counts refused
connections by reason. Route and result labels are capped (`max_labels`) so that a client
inventing script names cannot grow memory without bound: past the cap, new labels count as
``"other"``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from ..metrics.section import Section, bound

#: Upper bounds of the duration buckets, seconds.
DURATION_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OTHER = "other"


class FastAGICounters:
    """Session counts, result counts, duration histogram and refusals of one FastAGI server.

    Read the attributes directly: ``sessions`` ((route, result) -> count), ``results`` (result ->
    count), ``refused`` (reason -> count: ``address``, ``overload``, ``stopping``),
    ``duration_buckets`` (per-bucket counts, NOT cumulative; last is +Inf), ``duration_sum_s``,
    ``duration_count``. `cumulative_buckets` gives Prometheus' cumulative form.
    """

    def __init__(self, buckets: tuple[float, ...] = DURATION_BUCKETS_S, max_labels: int = 200) -> None:
        self.buckets = tuple(sorted(buckets))
        self.max_labels = max_labels
        self.sessions: dict[tuple[str, str], int] = {}
        self.results: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.duration_buckets = [0] * (len(self.buckets) + 1)
        self.duration_sum_s = 0.0
        self.duration_count = 0

    def observe(self, route: str, result: str, duration_s: float) -> None:
        """Count one finished session."""
        key = (route, result)
        if key not in self.sessions and len(self.sessions) >= self.max_labels:
            key = (OTHER, OTHER)
        self.sessions[key] = self.sessions.get(key, 0) + 1
        if result not in self.results and len(self.results) >= self.max_labels:
            result = OTHER
        self.results[result] = self.results.get(result, 0) + 1
        self.duration_buckets[bisect_left(self.buckets, duration_s)] += 1
        self.duration_sum_s += duration_s
        self.duration_count += 1

    def refuse(self, reason: str) -> None:
        """Count one connection closed before any session started."""
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """``[(upper_bound_s, count_le_bound), ..., (inf, total)]``."""
        out: list[tuple[float, int]] = []
        total = 0
        for upper, count in zip((*self.buckets, float("inf")), self.duration_buckets):
            total += count
            out.append((upper, total))
        return out

    def snapshot(self) -> dict[str, Any]:
        """Plain data for health and status answers."""
        return {
            "sessions_total": self.duration_count,
            "results": dict(self.results),
            "by_route": {f"{route}:{result}": n for (route, result), n in self.sessions.items()},
            "refused": dict(self.refused),
            "duration_sum_s": round(self.duration_sum_s, 6),
        }


class FastAGISection(Section):
    """``telephonyd_agi_*`` of one server: its `FastAGICounters` and ``sessions_active()`` (the
    sessions in progress), both typed; the server builds it (`FastAGIServer.collectors`)."""

    def __init__(self, counters: FastAGICounters, sessions_active: Callable[[], int]) -> None:
        self.counters = counters
        self.sessions_active = sessions_active

    def collect(self) -> Iterator[Metric]:
        counters = self.counters
        sessions = CounterMetricFamily("telephonyd_agi_sessions", "Finished FastAGI sessions by script (route) "
                                       "and result word", labels=["script", "result"])
        for (route, result), n in sorted(counters.sessions.items()):
            sessions.add_metric([route, result], n)
        yield sessions
        duration = HistogramMetricFamily("telephonyd_agi_session_duration_seconds",
                                         "FastAGI session duration, connect to close")
        duration.add_metric([], [(bound(b), n) for b, n in counters.cumulative_buckets()], counters.duration_sum_s)
        yield duration
        refused = CounterMetricFamily("telephonyd_agi_connections_refused", "FastAGI connections closed before "
                                      "a session (address, overload, stopping)", labels=["reason"])
        for reason, n in sorted(counters.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        active = GaugeMetricFamily("telephonyd_agi_sessions_active", "FastAGI sessions in progress")
        active.add_metric([], self.sessions_active())
        yield active
