"""The presence and mqtt config sections: validation names the bad key."""

from __future__ import annotations

import pytest

from telephonyd.config import validate
from telephonyd.errors import ConfigError


@pytest.mark.parametrize(
    ("section", "values", "path"),
    [
        ("mqtt", {"url": "http://broker:1883"}, "mqtt.url"),
        ("mqtt", {"url": "mqtt://user:pw@broker:1883"}, "mqtt.url"),
        ("mqtt", {"url": "mqtt://broker:notaport"}, "mqtt.url"),
        ("mqtt", {"base_topic": "tele/#"}, "mqtt.base_topic"),
        ("mqtt", {"base_topic": "/telephonyd"}, "mqtt.base_topic"),
        ("mqtt", {"qos": 3}, "mqtt.qos"),
        ("mqtt", {"queue_size": 1}, "mqtt.queue_size"),
        ("presence", {"endpoint_pattern": "[0-9"}, "presence.endpoint_pattern"),
        ("presence", {"wrap_up_s": -1}, "presence.wrap_up_s"),
        ("presence", {"technologies": []}, "presence.technologies"),
        ("presence", {"ws_queue_size": 1}, "presence.ws_queue_size"),
    ],
)
def test_bad_values_are_refused_with_their_path(section: str, values: dict, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({section: values})
    assert err.value.path == path


def test_good_values() -> None:
    config = validate({"mqtt": {"url": "mqtts://broker.example", "base_topic": "site/a"},
                       "presence": {"technologies": ["pjsip", "sip"], "endpoint_pattern": "[0-9]{3,6}"}})
    assert config.mqtt.url == "mqtts://broker.example"
    assert config.presence.technologies == ["PJSIP", "SIP"]


async def test_an_unreadable_ca_file_is_a_config_error_at_start(tmp_path) -> None:
    from telephonyd.config import MQTTConfig
    from telephonyd.mqtt import MQTTPublisher

    class NoPresence:
        seeded = False

        def agents(self) -> list:
            return []

    config = MQTTConfig(enabled=True, url="mqtts://broker.example", ca_file=str(tmp_path / "missing.pem"))
    publisher = MQTTPublisher(config, node_id="ast1", presence=NoPresence())
    assert (publisher.tls, publisher.port) == (True, 8883)
    with pytest.raises(ConfigError) as err:
        await publisher.start()
    assert err.value.path == "mqtt.ca_file"
