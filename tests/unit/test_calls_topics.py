"""Call topics and the publisher's call queue (no broker: nothing is sent)."""

from __future__ import annotations

from telephonyd.config import MQTTConfig
from telephonyd.mqtt import MQTTPublisher
from telephonyd.mqtt.topics import Topics


class NoAgents:
    seeded = False

    def agents(self) -> list:
        return []


def test_call_topics() -> None:
    topics = Topics("telephonyd", "ast1")
    assert topics.call("1795237838.1") == "telephonyd/ast1/calls/1795237838.1"
    assert topics.call("host/1#2") == "telephonyd/ast1/calls/host%2F1%232"  # one level, no wildcard
    assert topics.call_events == "telephonyd/ast1/events/call"
    assert topics.calls_filter == "telephonyd/ast1/calls/+"


def test_call_queue_is_bounded_keeps_order_and_clears_at_the_end() -> None:
    publisher = MQTTPublisher(MQTTConfig(enabled=True, queue_size=10), node_id="ast1", presence=NoAgents())
    for n in range(12):
        publisher.publish_call(f"1.{n}", b'{"n":%d}' % n, ended=n == 11)
    queued = list(publisher._calls)
    assert publisher.calls_dropped == 4 and len(queued) == 20  # 2 x queue_size entries at most, oldest dropped
    assert queued[-4:] == [("telephonyd/ast1/calls/1.10", b'{"n":10}', True),
                          ("telephonyd/ast1/events/call", b'{"n":10}', False),
                          ("telephonyd/ast1/calls/1.11", b"", True),  # ended: retained topic cleared
                          ("telephonyd/ast1/events/call", b'{"n":11}', False)]
    assert queued[0] == ("telephonyd/ast1/calls/1.2", b'{"n":2}', True)
    disabled = MQTTPublisher(MQTTConfig(enabled=False), node_id="ast1", presence=NoAgents())
    disabled.publish_call("1.0", b"{}", ended=False)
    assert not disabled._calls
