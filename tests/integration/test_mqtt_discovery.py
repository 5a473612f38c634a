"""Home Assistant MQTT discovery on a real Mosquitto: each agent a retained sensor config pointing at
its agent topic and the daemon's availability topic; a retired agent's config cleared; none when off."""

from __future__ import annotations

import json

import pytest

from telephonyd.mqtt.discovery import config_topic, object_id
from telephonyd.presence.state import AgentRetired
from tests.fakes.mqtt_consumer import MQTTConsumer, retained
from tests.helpers import running
from tests.integration.test_mqtt_publisher import StaticPresence, agent, make, until

pytestmark = pytest.mark.mosquitto


async def test_agents_announced_as_sensors_and_retired_ones_removed(mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    prefix = f"{topic_prefix}/ha"
    presence = StaticPresence(agent("1010"), agent("ext/1011"))
    publisher = make(host, port, topic_prefix, presence, discovery=True, discovery_prefix=prefix)
    root = f"{topic_prefix}/ast1"
    async with MQTTConsumer(host, port, topic_prefix) as consumer:
        async with running(publisher, 5.0):
            await consumer.wait_for(lambda: consumer.on(f"{root}/agents/ext%2F1011"))
            snapshot = await retained(host, port, topic_prefix)
            config = json.loads(snapshot[config_topic(prefix, "ast1", "1010")])
            assert config["state_topic"] == config["json_attributes_topic"] == f"{root}/agents/1010"
            assert config["value_template"] == "{{ value_json.state }}"
            assert config["availability_topic"] == f"{root}/status"
            assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
            assert config["unique_id"] == object_id("ast1", "1010") and config["device"]["identifiers"]
            other = config_topic(prefix, "ast1", "ext/1011")
            assert other.count("/") == prefix.count("/") + 3  # the endpoint's / adds no topic level
            assert json.loads(snapshot[other])["state_topic"] == f"{root}/agents/ext%2F1011"
            assert snapshot[f"{root}/status"] == b"online"

            del presence.current["ext/1011"]
            publisher.publish_event(AgentRetired("ext/1011", 5))
            await consumer.wait_for(lambda: [m for m in consumer.on(other) if not m.payload])
            await until(lambda: publisher.health()["state"] == "connected")
        after = await retained(host, port, topic_prefix)
    assert other not in after and f"{root}/agents/ext%2F1011" not in after
    assert config_topic(prefix, "ast1", "1010") in after  # the entity stays; unavailable via status
    assert after[f"{root}/status"] == b"offline"


async def test_no_discovery_topics_by_default(mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    presence = StaticPresence(agent("1010"))
    publisher = make(host, port, topic_prefix, presence)
    async with MQTTConsumer(host, port, topic_prefix) as consumer:
        async with running(publisher, 5.0):
            await consumer.wait_for(lambda: consumer.on(f"{topic_prefix}/ast1/agents/1010"))
        assert not [m for m in consumer.messages if "/sensor/" in m.topic]
    assert publisher.config.discovery is False
    assert config_topic("homeassistant", "ast1", "1010") not in await retained(host, port, "homeassistant")
