"""`Section`: the metrics one component owns, read from its own typed attributes at scrape time.

A component that counts in plain attributes (the hot paths keep ints and dicts, not locked
prometheus instruments) declares its metric families in a `Section` it builds itself: the section
is given the component's typed readers (callables or objects), never its ``health()`` dict, so a
health key renamed for ``/status`` cannot change a metric. Sections are registered through the
`TelephonydCollector`, which leaves a section that raises out of that scrape (counted in
``telephonyd_metrics_collect_errors_total``) and exports the others.

Pure: no I/O here (a section that needs the store does it in `refresh`, before the scrape).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class Section(Collector):
    """A prometheus ``Collector`` owned by one component. ``refresh`` runs (bounded by
    ``timeout_s``) before each scrape; by default it does nothing."""

    async def refresh(self, timeout_s: float) -> None:
        return None

    def describe(self) -> Iterable[Metric]:
        return []  # no fixed description: registration must not trigger a scrape

    def collect(self) -> Iterator[Metric]:  # pragma: no cover - every section overrides it
        raise NotImplementedError


def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    """One unlabelled gauge sample."""
    return GaugeMetricFamily(name, text, value=value)


def counter(name: str, text: str, value: float) -> CounterMetricFamily:
    """One unlabelled counter sample (exported as ``<name>_total``)."""
    return CounterMetricFamily(name, text, value=value)


def bound(value: float) -> str:
    """A histogram bucket's ``le`` label: ``+Inf`` or the float's repr."""
    return "+Inf" if value == float("inf") else repr(float(value))
