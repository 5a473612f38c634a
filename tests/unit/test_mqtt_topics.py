"""MQTT topic names, payloads and the bounded latest-state buffer."""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from telephonyd.mqtt.buffer import LatestStateBuffer
from telephonyd.mqtt.topics import Topics, agent_payload, level_name, topic_level


def test_topic_names() -> None:
    t = Topics("td_test/abc", "ast1")
    assert t.status == "td_test/abc/ast1/status"
    assert t.agent("1010") == "td_test/abc/ast1/agents/1010"
    assert t.agent_events == "td_test/abc/ast1/events/agent_status"
    assert t.agents_filter == "td_test/abc/ast1/agents/+"
    assert t.endpoint_of("td_test/abc/ast1/agents/1010") == "1010"
    assert t.endpoint_of("td_test/abc/ast1/agents/a/b") is None
    assert t.endpoint_of("td_test/abc/ast2/agents/1010") is None


def test_an_endpoint_name_cannot_add_levels_or_wildcards() -> None:
    t = Topics("base", "n")
    topic = t.agent("a/b+#%")
    assert topic == "base/n/agents/a%2Fb%2B%23%25"
    assert t.endpoint_of(topic) == "a/b+#%"


@given(st.text())
def test_topic_level_round_trips(name: str) -> None:
    level = topic_level(name)
    assert not any(c in level for c in "/+#\x00")
    assert level_name(level) == name


def test_agent_payload_has_exactly_the_published_fields() -> None:
    agent = {"endpoint": "1010", "state": "available", "online": True, "since": "2026-11-21T04:54:15.000Z",
             "seq": 7, "contacts": []}
    assert json.loads(agent_payload(agent)) == {k: agent[k] for k in ("endpoint", "state", "online", "since", "seq")}


@dataclass
class Ev:
    endpoint: str
    seq: int


def test_buffer_keeps_order_while_there_is_room() -> None:
    buf = LatestStateBuffer(4)
    for i in range(4):
        buf.push(Ev("1010", i))
    assert [buf.pop().seq for _ in range(4)] == [0, 1, 2, 3]
    assert buf.pop() is None and buf.dropped == 0


def test_buffer_overflow_keeps_the_latest_state_per_endpoint() -> None:
    buf = LatestStateBuffer(3)
    buf.push(Ev("1010", 1))
    buf.push(Ev("1011", 1))
    buf.push(Ev("1010", 2))
    buf.push(Ev("1010", 3))  # overflow: 1010 collapses to its newest
    items = [buf.pop() for _ in range(len(buf))]
    assert [(e.endpoint, e.seq) for e in items] == [("1011", 1), ("1010", 3)]
    assert buf.dropped == 2 and not buf.resync_needed


def test_buffer_asks_for_a_resync_when_endpoints_outnumber_it() -> None:
    buf = LatestStateBuffer(2)
    for name in ("a", "b", "c"):
        buf.push(Ev(name, 1))
    assert buf.resync_needed and len(buf) == 0
    buf.push(Ev("d", 1))
    assert len(buf) == 0  # superseded by the coming full republish
    buf.clear()
    buf.push(Ev("d", 2))
    assert not buf.resync_needed and buf.pop().seq == 2
