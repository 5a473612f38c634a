"""`MetricsExporter`: one Prometheus registry per daemon and its ``GET /metrics`` route.

The registry is made per instance (never prometheus_client's global default registry), holding the
`TelephonydCollector` (the daemon's own families and every metric section and prometheus instrument
the features declared, see `telephonyd.feature.Feature.metrics`) and the process collector (CPU,
memory, open files of this process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.registry import Collector

from .collector import MetricSources, TelephonydCollector

METRICS_PATH = "/metrics"
#: The classic text format, which `generate_latest` renders for our (legacy-valid) names and which
#: every Prometheus version reads; newer prometheus_client releases would announce 1.0.0 otherwise.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsExporter:
    """Renders the metrics of `MetricSources` and ``collectors`` in the Prometheus text format.

    ``collectors``: what the components own, in order: `Section` objects reading their component's
    typed attributes and prometheus_client instruments made with ``registry=None`` (HTTP and
    FastAGI refusals, timeouts, evictions, accept errors). ``stats_timeout_s`` bounds each
    section's `Section.refresh` (the outbox row counts: one store query per scrape). ``process``:
    also export ``process_*`` metrics (Linux ``/proc``).
    """

    def __init__(self, sources: MetricSources, collectors: Iterable[Collector] = (), *,
                 stats_timeout_s: float = 2.0, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = TelephonydCollector(sources, list(collectors))
        self.registry.register(self.collector)
        if process:
            ProcessCollector(namespace="", registry=self.registry)
        self.stats_timeout_s = stats_timeout_s
        self._lock = asyncio.Lock()

    async def render(self) -> bytes:
        """Refresh what needs the store, then the text exposition of every metric."""
        async with self._lock:  # concurrent scrapes share one store query at a time
            await self.collector.refresh(self.stats_timeout_s)
            return generate_latest(self.registry)

    def routes(self) -> list[web.RouteDef]:
        """``GET /metrics``; mount with ``auth='admin'``."""

        async def metrics(_request: web.Request) -> web.Response:
            body = await self.render()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        return [web.get(METRICS_PATH, metrics, allow_head=False)]
