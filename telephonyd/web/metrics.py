"""`HTTPRequestsSection`: ``telephonyd_http_requests_total`` of one `HTTPServer`, read from its
request counts at scrape time (the server builds it, `HTTPServer.collectors`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from ..metrics.section import Section


class HTTPRequestsSection(Section):
    """``counts``: ``{(route, method, status): requests}``, updated by the listener."""

    def __init__(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("telephonyd_http_requests", "HTTP requests by route, method and status",
                                       labels=["route", "method", "status"])
        for (route, method, status), n in sorted(dict(self.counts).items()):
            requests.add_metric([route, method, status], n)
        yield requests
