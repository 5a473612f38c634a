"""`MQTTSection`: ``telephonyd_mqtt_*`` of one `MQTTPublisher`, read from its typed state at scrape
time (the publisher builds it, `MQTTPublisher.collectors`; its ``health()`` is for ``/status``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import Metric

from ..metrics.section import Section, counter, gauge


class MQTTSection(Section):
    """``connected()``, ``published()`` (messages), ``dropped()`` (presence changes dropped while
    the broker was away), ``queued()`` (presence changes waiting for the broker)."""

    def __init__(self, *, connected: Callable[[], bool], published: Callable[[], int], dropped: Callable[[], int],
                 queued: Callable[[], int]) -> None:
        self.connected = connected
        self.published = published
        self.dropped = dropped
        self.queued = queued

    def collect(self) -> Iterator[Metric]:
        yield gauge("telephonyd_mqtt_connected", "1 while connected to the MQTT broker", 1 if self.connected() else 0)
        yield counter("telephonyd_mqtt_published", "MQTT messages published", self.published())
        yield counter("telephonyd_mqtt_dropped", "Presence changes dropped while the broker was away", self.dropped())
        yield gauge("telephonyd_mqtt_queued", "Presence changes waiting for the broker", self.queued())
