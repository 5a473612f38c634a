"""`MetricsExporter`: one Prometheus registry per daemon and its ``GET /metrics`` route.

The registry is made per instance (never prometheus_client's global default registry), holding the
`TelephonydCollector`, the process collector (CPU, memory, open files of this process) and the
prometheus instruments that components own and count themselves (``instruments``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from .collector import MetricSources, TelephonydCollector

METRICS_PATH = "/metrics"
#: The classic text format, which `generate_latest` renders for our (legacy-valid) names and which
#: every Prometheus version reads; newer prometheus_client releases would announce 1.0.0 otherwise.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsExporter:
    """Renders the metrics of `MetricSources` in the Prometheus text format.

    ``stats_timeout_s`` bounds the one store query (outbox row counts) made per scrape.
    ``process``: also export ``process_*`` metrics (Linux ``/proc``). ``clock``: epoch seconds, for
    ages (``telephonyd_ami_last_event_age_seconds``). ``instruments``: prometheus_client metrics
    made with ``registry=None`` by the components that count them (HTTP and FastAGI refusals,
    timeouts, evictions, accept errors), registered here.
    """

    def __init__(self, sources: MetricSources, *, stats_timeout_s: float = 2.0, process: bool = True,
                 clock: Callable[[], float] = time.time, instruments: Iterable[Any] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = TelephonydCollector(sources, clock=clock)
        self.registry.register(self.collector)
        for instrument in instruments:
            self.registry.register(instrument)
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
