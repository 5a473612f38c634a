"""Home Assistant MQTT discovery of agents (``mqtt.discovery: true``; pure).

Per Home Assistant's MQTT discovery conventions (https://www.home-assistant.io/integrations/mqtt/,
"Discovery messages"): each agent is a ``sensor`` announced by a retained JSON config on
``<discovery_prefix>/sensor/<object_id>/config``; its state is read from the agent topic this
daemon already retains (``<base>/<node_id>/agents/<endpoint>``, ``value_json.state``, the whole
document as attributes), and it is available while ``<base>/<node_id>/status`` is ``online`` (the
daemon's retained status and last will). A retired endpoint's config is removed with an empty
retained payload, which Home Assistant takes as "delete this entity".

``object_id`` is ``telephonyd_<node_id>_<endpoint>`` reduced to ``[a-zA-Z0-9_-]`` (what Home
Assistant accepts in the topic), with a short hash of the real names so two names that reduce alike
stay apart; ``unique_id`` is the same.
"""

from __future__ import annotations

import hashlib
import json
import re

from .topics import Topics

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


def object_id(node_id: str, endpoint: str) -> str:
    digest = hashlib.sha256(f"{node_id}\x00{endpoint}".encode()).hexdigest()[:6]
    return f"telephonyd_{_UNSAFE.sub('_', node_id)}_{_UNSAFE.sub('_', endpoint)}_{digest}"


def config_topic(prefix: str, node_id: str, endpoint: str) -> str:
    return f"{prefix}/sensor/{object_id(node_id, endpoint)}/config"


def config_payload(topics: Topics, node_id: str, endpoint: str, version: str) -> bytes:
    """The retained discovery config of one agent's sensor."""
    state_topic = topics.agent(endpoint)
    body = {
        "name": f"Agent {endpoint}",
        "unique_id": object_id(node_id, endpoint),
        "state_topic": state_topic,
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": state_topic,
        "availability_topic": topics.status,
        "payload_available": "online",
        "payload_not_available": "offline",
        "icon": "mdi:headset",
        "device": {
            "identifiers": [f"telephonyd_{_UNSAFE.sub('_', node_id)}"],
            "name": f"telephonyd {node_id}",
            "manufacturer": "telephonyd",
            "sw_version": version,
        },
        "origin": {"name": "telephonyd", "sw_version": version},
    }
    return json.dumps(body, separators=(",", ":")).encode()
