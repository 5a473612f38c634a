"""Prometheus instruments of the ``did_select`` route, owned by `DIDSelectService`.

Created unregistered (``registry=None``); `DIDSelectMetrics` is itself a collector that the app
registers in the exporter's registry, so two daemons in one process (tests) never share a series.

- ``telephonyd_did_select_selections_total{result}``: sessions by result word (SELECTED, REUSED,
  FALLBACK, FAILED, DISABLED, ERROR);
- ``telephonyd_did_select_failures_total{reason}``: why the API's answer was not used;
- ``telephonyd_did_select_latency_seconds``: from the session's start to the decision;
- ``telephonyd_did_select_api_latency_seconds``: the API request alone (requests actually sent);
- ``telephonyd_did_select_breaker_state``: 0 closed, 1 half open, 2 open;
- ``telephonyd_did_select_breaker_opened_total``: times the breaker opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from . import constants as c

#: Upper bounds, seconds: the budget is 0.3 s by default, 1 s at most.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)


class DIDSelectMetrics(Collector):
    """The instruments; ``breaker_state``/``breaker_opened`` are read from the breaker at scrape time."""

    def __init__(self, breaker_state: Callable[[], float], breaker_opened: Callable[[], float]) -> None:
        self.selections = Counter("telephonyd_did_select_selections", "did_select sessions by result",
                                  ["result"], registry=None)  # fmt: skip
        self.failures = Counter("telephonyd_did_select_failures", "did_select answers not used, by reason",
                                ["reason"], registry=None)  # fmt: skip
        self.latency = Histogram("telephonyd_did_select_latency_seconds", "did_select session start to decision",
                                 buckets=LATENCY_BUCKETS_S, registry=None)  # fmt: skip
        self.api_latency = Histogram("telephonyd_did_select_api_latency_seconds", "GET /api/v1/dids/next duration",
                                     buckets=LATENCY_BUCKETS_S, registry=None)  # fmt: skip
        self.breaker = Gauge("telephonyd_did_select_breaker_state", "Circuit breaker: 0 closed, 1 half open, 2 open",
                             registry=None)  # fmt: skip
        self.breaker.set_function(breaker_state)
        self.breaker_opened = Gauge("telephonyd_did_select_breaker_opened_total", "Times the circuit breaker opened",
                                    registry=None)  # fmt: skip
        self.breaker_opened.set_function(breaker_opened)
        for result in c.RESULTS:  # every series exists from the start
            self.selections.labels(result)
        for reason in c.REASONS:
            self.failures.labels(reason)

    def collect(self) -> Iterable[Metric]:
        for instrument in (self.selections, self.failures, self.latency, self.api_latency, self.breaker,
                           self.breaker_opened):  # fmt: skip
            yield from instrument.collect()

    def describe(self) -> Iterable[Metric]:
        return []
