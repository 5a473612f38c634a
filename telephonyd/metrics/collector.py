"""`TelephonydCollector`: a Prometheus collector that reads the components at scrape time.

Nothing here runs on the call path: every figure comes from a component's ``health()`` or its
counters when ``GET /metrics`` is scraped, except the outbox row counts, which `refresh` reads with
one ``Outbox.stats()`` query (bounded by a timeout) just before the registry is rendered. Metric
names, units and label sets are listed in each section below.

Nothing one component does can blank the scrape: a ``health()`` that raises shows as
``telephonyd_component_up 0``, and a section that fails is left out of that scrape (counted in
``telephonyd_metrics_collect_errors_total``) while the others are exported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .instruments import EventCounter, UpstreamStats

log = logging.getLogger(__name__)

#: Outbox states always exported (0 when empty), so a dashboard never sees a series vanish.
OUTBOX_STATES = ("pending", "in_flight", "delivered", "dead")


@dataclass
class MetricSources:
    """Where the collector reads. Every source is optional; a missing one exports nothing.

    - ``components``: name -> component with ``health() -> dict`` (the App's components: ``fastagi``,
      ``http``, ``outbox``, ``ami``, ``contacts``, ``presence``, ``mqtt``, ``ameyo`` are read by name).
    - ``fastagi_counters``: the FastAGI server's ``FastAGICounters``.
    - ``upstream``: `UpstreamStats` fed by the instrumented outbox senders.
    - ``ami_events``: `EventCounter` subscribed to every AMI event.
    - ``contacts``: returns the current contacts (objects with ``status``).
    - ``agents``: returns the current agent statuses (objects with ``state`` and ``online``).
    - ``outbox_stats``: ``async () -> Outbox.stats()`` document (``by_state``, ``targets``,
      ``oldest_pending_age_s``, ``dead``).
    - ``http_requests``: returns ``{(route, method, status): count}`` of the HTTP listener.
    """

    node_id: str = ""
    version: str = ""
    started_at: float = field(default_factory=time.time)
    components: Callable[[], Mapping[str, Any]] = dict
    fastagi_counters: Any = None
    upstream: UpstreamStats | None = None
    ami_events: EventCounter | None = None
    contacts: Callable[[], Iterable[Any]] | None = None
    agents: Callable[[], Iterable[Any]] | None = None
    outbox_stats: Callable[[], Awaitable[dict[str, Any]]] | None = None
    http_requests: Callable[[], Mapping[tuple[str, str, str], int]] | None = None


class TelephonydCollector(Collector):
    """Yields every ``telephonyd_*`` metric family from `MetricSources` (see the module docstring)."""

    def __init__(self, sources: MetricSources, clock: Callable[[], float] = time.time) -> None:
        self.sources = sources
        self._clock = clock
        self._outbox_stats: dict[str, Any] | None = None
        self.collect_errors = 0

    async def refresh(self, timeout_s: float = 2.0) -> None:
        """Read what needs the store (outbox row counts); on failure the health counts stand in."""
        stats_of = self.sources.outbox_stats
        if stats_of is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                self._outbox_stats = await stats_of()
        except Exception as exc:  # noqa: BLE001 - a timeout or a store failure must not fail the scrape
            log.debug("outbox stats unavailable for metrics", extra={"error": str(exc)[:200]})
            self._outbox_stats = None

    def describe(self) -> Iterable[Metric]:
        return []  # no fixed description: registration must not trigger a scrape

    def collect(self) -> Iterator[Metric]:
        health = self._health()
        sections: tuple[Callable[[dict[str, dict[str, Any]]], Iterable[Metric]], ...] = (
            self._process, self._fastagi, self._ami, self._contacts, self._agents, self._outbox,
            self._upstream, self._ameyo, self._http, self._mqtt,
        )
        for section in sections:
            try:
                yield from list(section(health))
            except Exception:  # noqa: BLE001 - one broken component must not blank the scrape
                self.collect_errors += 1
                log.warning("metrics section failed", exc_info=True, extra={"section": section.__name__})
        yield _counter("telephonyd_metrics_collect_errors", "Metric sections that failed to collect", self.collect_errors)

    def _health(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, component in dict(self.sources.components()).items():
            try:
                out[name] = dict(component.health())
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail on one component
                out[name] = {"ok": False, "state": "error", "error": str(exc)}
        return out

    # -- sections --------------------------------------------------------------------------------

    def _process(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
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
        for name, h in sorted(health.items()):
            up.add_metric([name], 1 if h.get("ok") else 0)
        yield up

    def _fastagi(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        counters = self.sources.fastagi_counters
        if counters is None:
            return
        sessions = CounterMetricFamily("telephonyd_agi_sessions", "Finished FastAGI sessions by script (route) "
                                       "and result word", labels=["script", "result"])
        for (route, result), n in sorted(counters.sessions.items()):
            sessions.add_metric([route, result], n)
        yield sessions
        duration = HistogramMetricFamily("telephonyd_agi_session_duration_seconds",
                                         "FastAGI session duration, connect to close")
        duration.add_metric([], [(_bound(b), n) for b, n in counters.cumulative_buckets()], counters.duration_sum_s)
        yield duration
        refused = CounterMetricFamily("telephonyd_agi_connections_refused", "FastAGI connections closed before "
                                      "a session (address, overload, stopping)", labels=["reason"])
        for reason, n in sorted(counters.refused.items()):
            refused.add_metric([reason], n)
        yield refused
        if "fastagi" in health:
            active = GaugeMetricFamily("telephonyd_agi_sessions_active", "FastAGI sessions in progress")
            active.add_metric([], _number(health["fastagi"].get("sessions_active")))
            yield active

    def _ami(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        h = health.get("ami")
        if h is not None:
            yield _gauge("telephonyd_ami_connected", "1 while an AMI session is logged in", 1 if h.get("connected") else 0)
            connects = int(_number(h.get("connects")))
            yield _counter("telephonyd_ami_connects", "Successful AMI logins", connects)
            yield _counter("telephonyd_ami_reconnects", "AMI logins after the first one", max(0, connects - 1))
            yield _counter("telephonyd_ami_disconnects", "Logged-in AMI sessions lost", _number(h.get("disconnects")))
            yield _counter("telephonyd_ami_login_failures", "AMI logins refused by Asterisk",
                           _number(h.get("login_failures")))
            yield _gauge("telephonyd_ami_pending_actions", "AMI actions awaiting their reply",
                         _number(h.get("pending_actions")))
            last = h.get("last_event_at")
            if isinstance(last, (int, float)):
                yield _gauge("telephonyd_ami_last_event_age_seconds", "Seconds since the last AMI event",
                             max(0.0, self._clock() - last))
        counter = self.sources.ami_events
        if counter is not None:
            events = CounterMetricFamily("telephonyd_ami_events", "AMI events received, by event name",
                                         labels=["event"])
            for name, n in sorted(counter.counts.items()):
                events.add_metric([name], n)
            yield events

    def _contacts(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        source = self.sources.contacts
        if source is not None:
            by_status: dict[str, int] = {}
            for contact in source():
                status = getattr(contact, "status", None) or "none"
                by_status[status] = by_status.get(status, 0) + 1
            gauge = GaugeMetricFamily("telephonyd_contacts", "Contacts held, by ContactStatus", labels=["status"])
            for status, n in sorted(by_status.items()):
                gauge.add_metric([status], n)
            yield gauge
        h = health.get("contacts")
        if h is not None:
            yield _gauge("telephonyd_contacts_pending_writes", "ps_contacts changes not yet written",
                         _number(h.get("pending_writes")))
            yield _counter("telephonyd_contacts_rows_written", "ps_contacts rows written", _number(h.get("rows_written")))
            yield _counter("telephonyd_contacts_write_failures", "ps_contacts write batches that failed",
                           _number(h.get("write_failures")))
            yield _counter("telephonyd_contacts_resyncs", "Full ps_contacts resyncs", _number(h.get("resyncs")))

    def _agents(self, _health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        source = self.sources.agents
        if source is None:
            return
        by_state: dict[str, int] = {}
        online = 0
        for agent in source():
            state = str(getattr(agent, "state", None) or "unknown")
            by_state[state] = by_state.get(state, 0) + 1
            online += 1 if getattr(agent, "online", False) else 0
        gauge = GaugeMetricFamily("telephonyd_agents", "Agents (endpoints) by presence state", labels=["state"])
        for state, n in sorted(by_state.items()):
            gauge.add_metric([state], n)
        yield gauge
        yield _gauge("telephonyd_agents_online", "Agents with a reachable contact", online)

    def _outbox(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        h = health.get("outbox")
        stats = self._outbox_stats
        if h is None and stats is None:
            return
        rows = GaugeMetricFamily("telephonyd_outbox_rows", "Outbox rows by target and state", labels=["target", "state"])
        registered = (h or {}).get("targets") or {}
        if stats is not None:
            per_target = stats.get("targets") or {}
            for target in sorted(set(per_target) | set(registered)):
                for state in OUTBOX_STATES:
                    rows.add_metric([target, state], _number((per_target.get(target) or {}).get(state)))
            dead = _number(stats.get("dead"))
            oldest = stats.get("oldest_pending_age_s")
        else:  # the store did not answer: the dispatcher's last periodic count of pending rows
            for target, t in sorted(registered.items()):
                rows.add_metric([target, "pending"], _number(t.get("pending")))
            dead = _number(((h or {}).get("counts") or {}).get("dead"))
            oldest = None
        yield rows
        yield _gauge("telephonyd_outbox_dead_letters", "Outbox rows dead-lettered and not retried or dropped", dead)
        yield _gauge("telephonyd_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row "
                     "(0 when none)", _number(oldest))
        yield _gauge("telephonyd_outbox_stats_ok", "1 when this scrape read the row counts from the store",
                     1 if stats is not None else 0)
        if h is None:
            return
        results = CounterMetricFamily("telephonyd_outbox_results", "Delivery results recorded by this node, "
                                      "after the outbox's own rules (max_attempts)", labels=["outcome"])
        for outcome, n in sorted((h.get("sent") or {}).items()):
            results.add_metric([outcome], n)
        yield results
        yield _gauge("telephonyd_outbox_sending", "Outbox sends in flight on this node", _number(h.get("sending")))
        writer = h.get("writer") or {}
        yield _counter("telephonyd_outbox_enqueued_rows", "Rows written by the group-commit writer",
                       _number(writer.get("rows")))
        yield _counter("telephonyd_outbox_write_failures", "Group-commit batches that failed",
                       _number(writer.get("failed_batches")))
        conflicts = h.get("conflicts") or {}
        for key, name, text in (
            ("by_op", "telephonyd_store_conflicts", "Transactions the database rolled back for a write conflict "
             "(deadlock 1213, lock wait 1205, Galera certification) and restarted, by operation"),
            ("exhausted", "telephonyd_store_conflicts_exhausted", "Operations that gave up after repeated conflicts"),
        ):
            family = CounterMetricFamily(name, text, labels=["op"])
            for op in ("claim", "result", "enqueue", *sorted(set(conflicts.get(key) or {}) - {"claim", "result", "enqueue"})):
                family.add_metric([op], _number((conflicts.get(key) or {}).get(op)))
            yield family
        per_target = {
            "enabled": ("telephonyd_outbox_target_enabled", "1 when the target's sender is enabled"),
            "unhealthy": ("telephonyd_outbox_target_unhealthy", "1 after a reply that needs a person (auth)"),
            "paused_for_s": ("telephonyd_outbox_target_paused_seconds", "Seconds until the target is tried again"),
            "consecutive_failures": ("telephonyd_outbox_target_consecutive_failures", "Retryable failures in a row"),
        }
        targets = h.get("targets") or {}
        for key, (name, text) in per_target.items():
            gauge = GaugeMetricFamily(name, text, labels=["target"])
            for target, t in sorted(targets.items()):
                gauge.add_metric([target], _number(t.get(key)))
            yield gauge

    def _upstream(self, _health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        stats = self.sources.upstream
        if stats is None:
            return
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
            duration.add_metric([target], [(_bound(b), n) for b, n in histogram.cumulative()], histogram.sum)
        yield duration

    def _ameyo(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        h = health.get("ameyo")
        if h is None:
            return
        counts = dict(h.get("counts") or {})
        expired = counts.pop("phone1_expired", 0)
        callbacks = CounterMetricFamily("telephonyd_ameyo_callbacks", "Ameyo callbacks by result (queued, "
                                        "duplicate, waiting_phone2, skipped, rejected, unauthorized, forbidden, "
                                        "unavailable)", labels=["result"])
        for result, n in sorted(counts.items()):
            callbacks.add_metric([result], n)
        yield callbacks
        yield _counter("telephonyd_ameyo_phone1_expired", "Phone-1 states expired without a phone-2 callback", expired)
        fallbacks = CounterMetricFamily("telephonyd_ameyo_fallbacks", "Callback values forwarded with a stand-in "
                                        "(unmapped_hangup_code, time_not_understood)", labels=["kind"])
        for kind, n in sorted((h.get("fallbacks") or {}).items()):
            fallbacks.add_metric([kind], n)
        yield fallbacks
        yield _gauge("telephonyd_ameyo_backlog", "Callbacks waiting for their group commit", _number(h.get("backlog")))
        yield _gauge("telephonyd_tops_unhealthy", "1 after TopS.II refused authentication or licence",
                     1 if h.get("tops_unhealthy") else 0)

    def _http(self, _health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        source = self.sources.http_requests
        if source is None:
            return
        requests = CounterMetricFamily("telephonyd_http_requests", "HTTP requests by route, method and status",
                                       labels=["route", "method", "status"])
        for (route, method, status), n in sorted(source().items()):
            requests.add_metric([route, method, status], n)
        yield requests

    def _mqtt(self, health: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        h = health.get("mqtt")
        if h is None:
            return
        yield _gauge("telephonyd_mqtt_connected", "1 while connected to the MQTT broker",
                     1 if h.get("state") == "connected" else 0)
        yield _counter("telephonyd_mqtt_published", "MQTT messages published", _number(h.get("published")))
        yield _counter("telephonyd_mqtt_dropped", "Presence changes dropped while the broker was away",
                       _number(h.get("dropped")))
        yield _gauge("telephonyd_mqtt_queued", "Presence changes waiting for the broker", _number(h.get("queued")))


def _number(value: Any) -> float:
    """A sample value from health data: numbers as they are, True/False as 1/0, anything else 0."""
    return float(value) if isinstance(value, (int, float)) else 0.0


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)
