"""The metrics exporter rendered without sockets and read back with prometheus_client's parser."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from telephonyd.ameyo.metrics import AmeyoSection
from telephonyd.ami.metrics import AMISection
from telephonyd.contacts.metrics import ContactsSection
from telephonyd.fastagi.metrics import FastAGICounters, FastAGISection
from telephonyd.metrics import (
    EventCounter,
    MetricsExporter,
    MetricSources,
    UpstreamStats,
)
from telephonyd.metrics.collector import UpstreamSection
from telephonyd.metrics.instruments import CANCELLED, ERROR, OTHER, InstrumentedSender
from telephonyd.mqtt.metrics import MQTTSection
from telephonyd.outbox.metrics import OutboxSection
from telephonyd.outbox.targets import TargetState
from telephonyd.presence.metrics import AgentsSection
from telephonyd.store.conflicts import ConflictCounter
from telephonyd.web.metrics import HTTPRequestsSection


class Component:
    def __init__(self, health: dict[str, Any] | Exception) -> None:
        self._health = health

    def health(self) -> dict[str, Any]:
        if isinstance(self._health, Exception):
            raise self._health
        return self._health


def parse(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """sample name + sorted labels -> value, after a full parse of the exposition."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def render(sources: MetricSources, *collectors: Any) -> dict:
    exporter = MetricsExporter(sources, collectors, process=False)
    return parse(await exporter.render())


async def test_agi_sessions_by_script_and_result_and_duration_histogram() -> None:
    counters = FastAGICounters(buckets=(0.01, 0.1, 1.0))
    for route, result, duration in [("call_log", "QUEUED", 0.004), ("call_log", "QUEUED", 0.05),
                                    ("call_log", "DUPLICATE", 0.5), ("health", "OK", 3.0)]:
        counters.observe(route, result, duration)
    counters.refuse("address")
    components = {"fastagi": Component({"ok": True, "state": "listening"})}
    s = await render(MetricSources(components=lambda: components), FastAGISection(counters, lambda: 3))

    assert value(s, "telephonyd_agi_sessions_total", script="call_log", result="QUEUED") == 2
    assert value(s, "telephonyd_agi_sessions_total", script="call_log", result="DUPLICATE") == 1
    assert value(s, "telephonyd_agi_sessions_total", script="health", result="OK") == 1
    buckets = {le: value(s, "telephonyd_agi_session_duration_seconds_bucket", le=le) for le in ("0.01", "0.1", "1.0", "+Inf")}
    assert buckets == {"0.01": 1, "0.1": 2, "1.0": 3, "+Inf": 4}
    assert value(s, "telephonyd_agi_session_duration_seconds_count") == 4
    assert value(s, "telephonyd_agi_session_duration_seconds_sum") == pytest.approx(3.554)
    assert value(s, "telephonyd_agi_connections_refused_total", reason="address") == 1
    assert value(s, "telephonyd_agi_sessions_active") == 3
    assert value(s, "telephonyd_component_up", component="fastagi") == 1


async def test_ami_connection_reconnects_events_by_type_and_last_event_age() -> None:
    events = EventCounter()
    for name in ["ContactStatus", "ContactStatus", "PeerStatus", "contactstatus", "Hangup"]:
        events.observe(SimpleNamespace(event=name))
    events.observe(SimpleNamespace(event=None))  # a reply, not an event: not counted
    ami = AMISection(connected=lambda: True, counts={"connects": 3, "disconnects": 2, "login_failures": 1, "events": 5},
                     pending_actions=lambda: 0, last_event_at=lambda: 1000.0, events=events, clock=lambda: 1012.5)
    s = await render(MetricSources(components=lambda: {"ami": Component({"ok": True})}), ami)

    assert value(s, "telephonyd_ami_connected") == 1
    assert value(s, "telephonyd_ami_connects_total") == 3
    assert value(s, "telephonyd_ami_reconnects_total") == 2
    assert value(s, "telephonyd_ami_disconnects_total") == 2
    assert value(s, "telephonyd_ami_login_failures_total") == 1
    assert value(s, "telephonyd_ami_events_total", event="ContactStatus") == 3  # names compared case-insensitively
    assert value(s, "telephonyd_ami_events_total", event="PeerStatus") == 1
    assert value(s, "telephonyd_ami_events_total", event="Hangup") == 1
    assert value(s, "telephonyd_ami_last_event_age_seconds") == pytest.approx(12.5)


async def test_ami_down_before_any_event() -> None:
    ami = AMISection(connected=lambda: False, counts={"connects": 0, "disconnects": 0, "login_failures": 0},
                     pending_actions=lambda: 0, last_event_at=lambda: None)
    s = await render(MetricSources(components=lambda: {"ami": Component({"ok": False, "state": "backoff"})}), ami)
    assert value(s, "telephonyd_ami_connected") == 0
    assert value(s, "telephonyd_ami_reconnects_total") == 0
    assert value(s, "telephonyd_ami_last_event_age_seconds") is None  # no event yet: no age at all
    assert value(s, "telephonyd_component_up", component="ami") == 0


async def test_contacts_and_agents_by_state() -> None:
    contacts = [SimpleNamespace(status=st) for st in ("Reachable", "Reachable", "Unreachable", None)]
    agents = [SimpleNamespace(state="available", online=True), SimpleNamespace(state="in_call", online=True),
              SimpleNamespace(state="offline", online=False), SimpleNamespace(state="available", online=True)]
    section = ContactsSection(contacts=lambda: contacts, pending_writes=lambda: 4,
                              counts={"rows_written": 9, "write_failures": 1, "resyncs": 2})
    s = await render(MetricSources(), section, AgentsSection(lambda: agents))
    assert value(s, "telephonyd_contacts", status="Reachable") == 2
    assert value(s, "telephonyd_contacts", status="Unreachable") == 1
    assert value(s, "telephonyd_contacts", status="none") == 1
    assert value(s, "telephonyd_contacts_pending_writes") == 4
    assert value(s, "telephonyd_contacts_write_failures_total") == 1
    assert value(s, "telephonyd_agents", state="available") == 2
    assert value(s, "telephonyd_agents", state="offline") == 1
    assert value(s, "telephonyd_agents_online") == 3


def outbox_section(stats: Any, conflicts: ConflictCounter | None = None) -> OutboxSection:
    """An outbox with two targets: did_optimizer paused 1.5 s after 3 failures (6 pending, 1 in
    flight, 2 dead), tops disabled and unhealthy (1 pending); 40 delivered, 5 retried, 2 dead."""
    dispatcher = SimpleNamespace(
        targets={"did_optimizer": TargetState(enabled=True, consecutive_failures=3, paused_until=101.5),
                 "tops": TargetState(enabled=False, unhealthy=True)},
        counts={"did_optimizer": {"pending": 6, "in_flight": 1, "dead": 2}, "tops": {"pending": 1}},
        totals={"delivered": 40, "retry": 5, "dead": 2}, sending={"task": "row"})
    return OutboxSection(dispatcher=dispatcher, written_rows=lambda: 50, failed_batches=lambda: 1,
                         conflicts=conflicts or ConflictCounter(), stats=stats, clock=lambda: 100.0)


async def test_outbox_rows_by_target_and_state_from_the_store() -> None:
    async def stats() -> dict[str, Any]:
        return {"by_state": {"pending": 6, "in_flight": 1, "delivered": 40, "dead": 2}, "dead": 2,
                "oldest_pending_age_s": 93.25,
                "targets": {"did_optimizer": {"pending": 6, "in_flight": 1, "delivered": 40, "dead": 2}}}

    components = {"outbox": Component({"ok": True})}
    s = await render(MetricSources(components=lambda: components), outbox_section(stats))
    assert value(s, "telephonyd_outbox_rows", target="did_optimizer", state="pending") == 6
    assert value(s, "telephonyd_outbox_rows", target="did_optimizer", state="delivered") == 40
    assert value(s, "telephonyd_outbox_rows", target="tops", state="pending") == 0  # registered, no rows yet
    assert value(s, "telephonyd_outbox_dead_letters") == 2
    assert value(s, "telephonyd_outbox_oldest_pending_age_seconds") == 93.25
    assert value(s, "telephonyd_outbox_stats_ok") == 1
    assert value(s, "telephonyd_outbox_results_total", outcome="delivered") == 40
    assert value(s, "telephonyd_outbox_results_total", outcome="retry") == 5
    assert value(s, "telephonyd_outbox_target_enabled", target="did_optimizer") == 1
    assert value(s, "telephonyd_outbox_target_enabled", target="tops") == 0
    assert value(s, "telephonyd_outbox_target_unhealthy", target="tops") == 1
    assert value(s, "telephonyd_outbox_target_paused_seconds", target="did_optimizer") == 1.5
    assert value(s, "telephonyd_outbox_target_consecutive_failures", target="did_optimizer") == 3
    assert value(s, "telephonyd_outbox_write_failures_total") == 1


@pytest.mark.parametrize("failure", ["raises", "hangs"])
async def test_outbox_store_down_falls_back_to_health_counts(failure: str) -> None:
    async def stats() -> dict[str, Any]:
        if failure == "hangs":
            await asyncio.Event().wait()
        raise OSError("database is down")

    components = {"outbox": Component({"ok": False, "state": "degraded"})}
    exporter = MetricsExporter(MetricSources(components=lambda: components), [outbox_section(stats)],
                               process=False, stats_timeout_s=0.05)
    s = parse(await exporter.render())
    assert value(s, "telephonyd_outbox_stats_ok") == 0
    assert value(s, "telephonyd_outbox_rows", target="did_optimizer", state="pending") == 6
    assert value(s, "telephonyd_outbox_dead_letters") == 2
    assert value(s, "telephonyd_component_up", component="outbox") == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSender:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.script: list[tuple[float, Any]] = []

    async def send(self, row: Any) -> Any:
        took, answer = self.script.pop(0)
        self.clock.now += took
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_upstream_requests_by_target_and_outcome_with_latency() -> None:
    clock = Clock()
    stats = UpstreamStats(buckets=(0.1, 1.0))
    raw = FakeSender(clock)
    sender = InstrumentedSender("did_optimizer", raw, stats, clock=clock)
    delivered = SimpleNamespace(outcome="delivered", status=200)
    raw.script = [(0.05, delivered), (0.5, SimpleNamespace(outcome="retry", status=503)),
                  (2.0, SimpleNamespace(outcome="dead", status=401)), (0.2, RuntimeError("bug")),
                  (0.01, asyncio.CancelledError())]
    assert await sender.send(None) is delivered  # the wrapped sender's verdict passes through untouched
    await sender.send(None)
    await sender.send(None)
    with pytest.raises(RuntimeError):
        await sender.send(None)
    with pytest.raises(asyncio.CancelledError):
        await sender.send(None)

    s = await render(MetricSources(), UpstreamSection(stats))
    for outcome in ("delivered", "retry", "dead", ERROR, CANCELLED):
        assert value(s, "telephonyd_upstream_requests_total", target="did_optimizer", outcome=outcome) == 1, outcome
    assert value(s, "telephonyd_upstream_responses_total", target="did_optimizer", status="503") == 1
    assert value(s, "telephonyd_upstream_responses_total", target="did_optimizer", status="401") == 1
    bucket = "telephonyd_upstream_request_duration_seconds_bucket"
    assert value(s, bucket, target="did_optimizer", le="0.1") == 2  # 0.05 and the cancelled 0.01
    assert value(s, bucket, target="did_optimizer", le="1.0") == 4
    assert value(s, bucket, target="did_optimizer", le="+Inf") == 5
    assert value(s, "telephonyd_upstream_request_duration_seconds_sum", target="did_optimizer") == pytest.approx(2.76)


async def test_ameyo_callbacks_by_result_and_mqtt_connection() -> None:
    ameyo = AmeyoSection(counts={"queued": 5, "duplicate": 1, "rejected": 2, "unauthorized": 3, "phone1_expired": 4},
                         fallbacks={"unmapped_hangup_code": 6, "time_not_understood": 1}, backlog=lambda: 2,
                         tops_unhealthy=lambda: True)
    mqtt = {"state": "connected"}
    publisher = MQTTSection(connected=lambda: mqtt["state"] == "connected", published=lambda: 12,
                            dropped=lambda: 0, queued=lambda: 0)
    s = await render(MetricSources(), ameyo, publisher)
    assert value(s, "telephonyd_ameyo_callbacks_total", result="queued") == 5
    assert value(s, "telephonyd_ameyo_callbacks_total", result="unauthorized") == 3
    assert value(s, "telephonyd_ameyo_callbacks_total", result="phone1_expired") is None  # not a callback
    assert value(s, "telephonyd_ameyo_phone1_expired_total") == 4
    assert value(s, "telephonyd_ameyo_backlog") == 2
    assert value(s, "telephonyd_ameyo_fallbacks_total", kind="unmapped_hangup_code") == 6
    assert value(s, "telephonyd_ameyo_fallbacks_total", kind="time_not_understood") == 1
    assert value(s, "telephonyd_tops_unhealthy") == 1
    assert value(s, "telephonyd_mqtt_connected") == 1
    assert value(s, "telephonyd_mqtt_published_total") == 12
    mqtt["state"] = "backoff"
    s = await render(MetricSources(), ameyo, publisher)
    assert value(s, "telephonyd_mqtt_connected") == 0


async def test_http_requests_by_route_method_status() -> None:
    counts = {("/index.php", "GET", "200"): 7, ("/index.php", "GET", "401"): 2, ("unmatched", "GET", "404"): 1}
    s = await render(MetricSources(), HTTPRequestsSection(counts))
    assert value(s, "telephonyd_http_requests_total", route="/index.php", method="GET", status="401") == 2
    assert value(s, "telephonyd_http_requests_total", route="unmatched", method="GET", status="404") == 1


async def test_a_failing_component_does_not_blank_the_scrape() -> None:
    def contacts() -> list[Any]:
        raise RuntimeError("table being rebuilt")

    components = {"ami": Component(RuntimeError("boom")), "mqtt": Component({"ok": True, "state": "connected"})}
    sections = [ContactsSection(contacts=contacts, pending_writes=lambda: 0,
                                counts={"rows_written": 0, "write_failures": 0, "resyncs": 0}),
                MQTTSection(connected=lambda: True, published=lambda: 0, dropped=lambda: 0, queued=lambda: 0)]
    exporter = MetricsExporter(MetricSources(node_id="n1", version="9.9", components=lambda: components),
                               sections, process=False)
    s = parse(await exporter.render())
    assert value(s, "telephonyd_component_up", component="ami") == 0  # health() raised: down
    assert value(s, "telephonyd_mqtt_connected") == 1
    assert value(s, "telephonyd_build_info", node_id="n1", version="9.9") == 1
    assert value(s, "telephonyd_metrics_collect_errors_total") == 1  # the contacts section


async def test_each_exporter_has_its_own_registry() -> None:
    one = MetricsExporter(MetricSources(node_id="one"), process=False)
    two = MetricsExporter(MetricSources(node_id="two"))
    assert one.registry is not two.registry
    text_one, text_two = (await one.render()).decode(), (await two.render()).decode()
    assert 'node_id="one"' in text_one and 'node_id="two"' not in text_one
    assert "process_cpu_seconds_total" in text_two and "process_cpu_seconds_total" not in text_one
    assert "telephonyd_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()


def test_label_values_from_peers_are_capped() -> None:
    events = EventCounter(max_labels=3)
    for i in range(10):
        events.observe(SimpleNamespace(event=f"Event{i}" + "x" * 100))
    assert len(events.counts) == 4 and events.counts[OTHER] == 7
    assert all(len(name) <= 64 for name in events.counts)
    stats = UpstreamStats(max_labels=2)
    for i in range(5):
        stats.observe(f"t{i}", "delivered", 0.1, status=200 + i)
    assert len(stats.requests) == 3 and stats.requests[(OTHER, OTHER)] == 3
    assert len(stats.durations) == 3 and len(stats.statuses) <= 2
