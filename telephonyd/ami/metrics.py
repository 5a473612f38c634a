"""`AMISection`: ``telephonyd_ami_*`` of one `AMIClient`, read from its typed state at scrape time
(the client builds it, `AMIClient.collectors`; its ``health()`` is for ``/status`` only)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from ..metrics.instruments import EventCounter
from ..metrics.section import Section, counter, gauge


class AMISection(Section):
    """``connected()``: a session is logged in; ``counts``: the client's own counters (``connects``,
    ``disconnects``, ``login_failures``: a missing one fails the section loudly rather than export
    0); ``pending_actions()``: actions awaiting their reply; ``last_event_at()``: epoch s of the last
    event or None; ``events``: AMI events by name, when subscribed; ``clock``: epoch seconds."""

    def __init__(self, *, connected: Callable[[], bool], counts: Mapping[str, int],
                 pending_actions: Callable[[], int], last_event_at: Callable[[], float | None],
                 events: EventCounter | None = None, clock: Callable[[], float] = time.time) -> None:
        self.connected = connected
        self.counts = counts
        self.pending_actions = pending_actions
        self.last_event_at = last_event_at
        self.events = events
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        yield gauge("telephonyd_ami_connected", "1 while an AMI session is logged in", 1 if self.connected() else 0)
        connects = counts["connects"]
        yield counter("telephonyd_ami_connects", "Successful AMI logins", connects)
        yield counter("telephonyd_ami_reconnects", "AMI logins after the first one", max(0, connects - 1))
        yield counter("telephonyd_ami_disconnects", "Logged-in AMI sessions lost", counts["disconnects"])
        yield counter("telephonyd_ami_login_failures", "AMI logins refused by Asterisk", counts["login_failures"])
        yield gauge("telephonyd_ami_pending_actions", "AMI actions awaiting their reply", self.pending_actions())
        last = self.last_event_at()
        if last is not None:
            yield gauge("telephonyd_ami_last_event_age_seconds", "Seconds since the last AMI event",
                        max(0.0, self.clock() - last))
        if self.events is not None:
            events = CounterMetricFamily("telephonyd_ami_events", "AMI events received, by event name",
                                         labels=["event"])
            for name, n in sorted(self.events.counts.items()):
                events.add_metric([name], n)
            yield events
