"""Prometheus metrics of the daemon: `MetricsExporter` (``GET /metrics``, one registry per
instance) over the collectors the features declare. A component owns its metrics: a `Section`
reading its own typed state at scrape time, or prometheus_client instruments it updates; nothing
here reads a ``health()`` dict but for its ``ok`` (``telephonyd_component_up``). Also the few
counters components do not keep themselves (`UpstreamStats` around the outbox senders,
`EventCounter` on the AMI client)."""

from .collector import MetricSources, TelephonydCollector, UpstreamSection
from .exporter import METRICS_PATH, MetricsExporter
from .instruments import (
    BucketHistogram,
    EventCounter,
    InstrumentedSender,
    UpstreamStats,
)
from .section import Section

__all__ = [
    "METRICS_PATH",
    "BucketHistogram",
    "EventCounter",
    "InstrumentedSender",
    "MetricSources",
    "MetricsExporter",
    "Section",
    "TelephonydCollector",
    "UpstreamSection",
    "UpstreamStats",
]
