"""Topic names and payloads of the MQTT presence feed (pure).

Under ``<base>/<node_id>/``:
- ``status``: retained ``online`` / ``offline`` (also the last will);
- ``agents/<endpoint>``: retained JSON ``{"endpoint","state","online","since","seq"}``; an empty
  retained payload clears it when the endpoint is retired;
- ``events/agent_status``: the same JSON for every change, not retained;
- ``calls/<linkedid>``: retained call-event JSON (docs/call-events.md) while the call lives, cleared
  with an empty retained payload when it ends; ``events/call``: every call event, not retained.

An endpoint name becomes one topic level: ``/``, ``+``, ``#``, ``%`` and NUL are percent-encoded
(``%2F``...), so a name can neither add levels nor act as a wildcard; the payload keeps the real name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_ESCAPES = {"%": "%25", "/": "%2F", "+": "%2B", "#": "%23", "\x00": "%00"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_ESCAPED = re.compile("|".join(re.escape(v) for v in _ESCAPES.values()), re.IGNORECASE)

ONLINE = b"online"
OFFLINE = b"offline"


def topic_level(name: str) -> str:
    """``name`` made safe as a single topic level."""
    return "".join(_ESCAPES.get(ch, ch) for ch in name)


def level_name(level: str) -> str:
    """The inverse of `topic_level`."""
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(0).upper()], level)


@dataclass(frozen=True, slots=True)
class Topics:
    base: str
    node_id: str

    @property
    def root(self) -> str:
        return f"{self.base}/{topic_level(self.node_id)}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def agents_filter(self) -> str:
        """The subscription filter matching every agent topic of this node."""
        return f"{self.root}/agents/+"

    @property
    def agent_events(self) -> str:
        return f"{self.root}/events/agent_status"

    @property
    def sweep_marker(self) -> str:
        return f"{self.root}/sweep"

    @property
    def calls_filter(self) -> str:
        return f"{self.root}/calls/+"

    @property
    def call_events(self) -> str:
        return f"{self.root}/events/call"

    def call(self, linkedid: str) -> str:
        return f"{self.root}/calls/{topic_level(linkedid)}"

    def agent(self, endpoint: str) -> str:
        return f"{self.root}/agents/{topic_level(endpoint)}"

    def endpoint_of(self, topic: str) -> str | None:
        """The endpoint of an ``agents/<endpoint>`` topic of this node, else None."""
        prefix = f"{self.root}/agents/"
        if not topic.startswith(prefix) or "/" in topic[len(prefix):]:
            return None
        return level_name(topic[len(prefix):])


def agent_payload(agent: dict[str, Any]) -> bytes:
    """The JSON document of one agent (the five published fields, and ``reason`` when the agent is
    paused/dnd/away with one; compact)."""
    doc = {k: agent[k] for k in ("endpoint", "state", "online", "since", "seq")}
    if agent.get("reason") is not None:
        doc["reason"] = agent["reason"]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
