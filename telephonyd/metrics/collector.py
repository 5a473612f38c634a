"""`TelephonydCollector`: the daemon's own metric families and the sections its components own.

It exports what belongs to the process (``telephonyd_build_info``, ``telephonyd_start_time_seconds``,
``telephonyd_component_up``: 1 when a component's ``health()`` says ``ok``, the one key of the
component contract) and then every `Section` (and plain prometheus instrument) the features
declared. Each section reads its own component's typed attributes, never a ``health()`` dict.

Nothing one component does can blank the scrape: a ``health()`` that raises shows as
``telephonyd_component_up 0``, and a section that fails is left out of that scrape (counted in
``telephonyd_metrics_collect_errors_total``) while the others are exported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .instruments import UpstreamStats
from .section import Section, bound, counter

log = logging.getLogger(__name__)


@dataclass
class MetricSources:
    """What the process-level families read: ``node_id`` and ``version`` (``telephonyd_build_info``),
    ``started_at`` (epoch s) and ``components`` (name -> component with ``health() -> dict``, read
    only for its ``ok``, as ``/status`` reads it)."""

    node_id: str = ""
    version: str = ""
    started_at: float = field(default_factory=time.time)
    components: Callable[[], Mapping[str, Any]] = dict


class TelephonydCollector(Collector):
    """Yields the process families, then each of ``sections`` (see the module docstring)."""

    def __init__(self, sources: MetricSources, sections: Sequence[Collector] = ()) -> None:
        self.sources = sources
        self.sections = list(sections)
        self.collect_errors = 0

    async def refresh(self, timeout_s: float = 2.0) -> None:
        """Run every section's `Section.refresh` (each bounded by ``timeout_s``) before a scrape."""
        for section in self.sections:
            if isinstance(section, Section):
                await section.refresh(timeout_s)

    def describe(self) -> Iterable[Metric]:
        return []  # no fixed description: registration must not trigger a scrape

    def collect(self) -> Iterator[Metric]:
        parts: list[Callable[[], Iterable[Metric]]] = [self._process, *(s.collect for s in self.sections)]
        for part in parts:
            try:
                yield from list(part())
            except Exception:  # noqa: BLE001 - one broken component must not blank the scrape
                self.collect_errors += 1
                log.warning("metrics section failed", exc_info=True, extra={"section": repr(part)[:120]})
        yield counter("telephonyd_metrics_collect_errors", "Metric sections that failed to collect", self.collect_errors)

    def _process(self) -> Iterator[Metric]:
        s = self.sources
        info = GaugeMetricFamily("telephonyd_build_info", "Version and node of this telephonyd",
                                 labels=["version", "node_id"])
        info.add_metric([s.version, s.node_id], 1)
        yield info
        started = GaugeMetricFamily("telephonyd_start_time_seconds", "Start time of the daemon, epoch seconds")
        started.add_metric([], s.started_at)
        yield started
        up = GaugeMetricFamily("telephonyd_component_up", "1 when the component reports ok in its health",
                               labels=["component"])
        for name, component in sorted(dict(s.components()).items()):
            try:
                ok = bool(component.health().get("ok"))
            except Exception:  # noqa: BLE001 - a scrape must not fail on one component
                ok = False
            up.add_metric([name], 1 if ok else 0)
        yield up


class UpstreamSection(Section):
    """``telephonyd_upstream_*``: send attempts of the instrumented outbox senders (`UpstreamStats`)."""

    def __init__(self, stats: UpstreamStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        requests = CounterMetricFamily("telephonyd_upstream_requests", "Upstream send attempts by target and "
                                       "outcome (delivered, retry, dead, error, cancelled)", labels=["target", "outcome"])
        for (target, outcome), n in sorted(stats.requests.items()):
            requests.add_metric([target, outcome], n)
        yield requests
        statuses = CounterMetricFamily("telephonyd_upstream_responses", "Upstream HTTP replies by target and status",
                                       labels=["target", "status"])
        for (target, status), n in sorted(stats.statuses.items()):
            statuses.add_metric([target, status], n)
        yield statuses
        duration = HistogramMetricFamily("telephonyd_upstream_request_duration_seconds",
                                         "Duration of one upstream send attempt", labels=["target"])
        for target, histogram in sorted(stats.durations.items()):
            duration.add_metric([target], [(bound(b), n) for b, n in histogram.cumulative()], histogram.sum)
        yield duration
