"""Prometheus metrics of the daemon: `MetricsExporter` (``GET /metrics``) reading the components
through `MetricSources` at scrape time, plus the few counters components do not keep themselves
(`UpstreamStats` around the outbox senders, `EventCounter` on the AMI client)."""

from .collector import MetricSources, TelephonydCollector
from .exporter import METRICS_PATH, MetricsExporter
from .instruments import (
    BucketHistogram,
    EventCounter,
    InstrumentedSender,
    UpstreamStats,
)

__all__ = [
    "METRICS_PATH",
    "BucketHistogram",
    "EventCounter",
    "InstrumentedSender",
    "MetricSources",
    "MetricsExporter",
    "TelephonydCollector",
    "UpstreamStats",
]
