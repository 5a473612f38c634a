"""Call events on a real Mosquitto: ``calls/<linkedid>`` retained while the call lives and cleared
when it ends, every event on ``events/call``, stale call topics cleared on connect."""

from __future__ import annotations

import json

import aiomqtt
import pytest

from telephonyd.ami.message import AMIMessage
from telephonyd.calls import CallTracker
from telephonyd.config import MQTTConfig
from telephonyd.mqtt import MQTTPublisher
from telephonyd.wiring import mqtt_call_listener
from tests.fakes.ami_wire import recorded_events
from tests.fakes.mqtt_consumer import MQTTConsumer, retained
from tests.helpers import running, wait_until

pytestmark = pytest.mark.mosquitto


class NoAgents:
    seeded = False

    def agents(self) -> list:
        return []


async def test_call_topic_retained_while_live_and_cleared_at_the_end(mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    root = f"{topic_prefix}/ast1"
    tracker = CallTracker()
    # A call topic left retained by an earlier run whose call is gone: cleared on connect.
    async with aiomqtt.Client(host, port, identifier="stale-writer") as stale:
        await stale.publish(f"{root}/calls/1700000000.1", b'{"event":"call.answered"}', qos=1, retain=True)
    config = MQTTConfig(enabled=True, url=f"mqtt://{host}:{port}", base_topic=topic_prefix, keepalive_s=5,
                        client_id=f"td-{topic_prefix.rsplit('/', 1)[-1]}")
    publisher = MQTTPublisher(config, node_id="ast1", presence=NoAgents(), live_calls=lambda: list(tracker.calls))
    listener = mqtt_call_listener(publisher, "ast1")
    stream = [AMIMessage(p) for p in recorded_events("01_ANSWER_ami_events.txt")]
    hangups = [i for i, m in enumerate(stream) if m.event == "Hangup"]
    async with MQTTConsumer(host, port, topic_prefix) as consumer, running(publisher, 5.0):
        await wait_until(lambda: publisher.health()["state"] == "connected", what="connected")
        await consumer.wait_for(lambda: [m for m in consumer.on(f"{root}/calls/1700000000.1") if not m.payload])
        for i, message in enumerate(stream[: hangups[0]]):
            for event in tracker.feed(message, 1000.0 + i):
                listener(event)
        events = await consumer.wait_for(lambda: len(consumer.on(f"{root}/events/call")) == 2
                                         and consumer.on(f"{root}/events/call"))
        assert [e.json()["event"] for e in events] == ["call.ringing", "call.answered"]
        live = await retained(host, port, topic_prefix)
        assert json.loads(live[f"{root}/calls/1795237838.1"])["event"] == "call.answered"
        assert f"{root}/calls/1700000000.1" not in live
        for i, message in enumerate(stream[hangups[0]:]):
            for event in tracker.feed(message, 2000.0 + i):
                listener(event)
        ended = await consumer.wait_for(lambda: len(consumer.on(f"{root}/events/call")) == 3
                                        and consumer.on(f"{root}/events/call")[-1])
        assert ended.json()["event"] == "call.ended" and ended.json()["call"]["dial_status"] == "ANSWER"
        await consumer.wait_for(lambda: [m for m in consumer.on(f"{root}/calls/1795237838.1") if not m.payload])
        assert f"{root}/calls/1795237838.1" not in await retained(host, port, topic_prefix)
