"""What the presence machine publishes (`AgentStatus`, `AgentRetired`, `AgentsResynced`) and
what it keeps per endpoint (`EndpointState`); pure data, shared by `telephonyd.presence.state`
and its availability facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .availability import Membership, PresenceValue

#: Contact statuses that do not make an endpoint online (Asterisk 22 ContactStatus).
UNUSABLE_CONTACT_STATUSES = frozenset({"Unreachable", "Removed"})


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """One agent's published presence: what MQTT, the WebSocket and the API carry."""

    kind: ClassVar[str] = "status"
    endpoint: str
    state: str
    online: bool
    since: str
    seq: int
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """``endpoint``, ``state``, ``online``, ``since``, ``seq``, and ``reason`` when there is one."""
        out = {"endpoint": self.endpoint, "state": self.state, "online": self.online,
               "since": self.since, "seq": self.seq}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class AgentRetired:
    """The endpoint is no longer known to Asterisk (absent after a resync); ``seq`` continues."""

    kind: ClassVar[str] = "retired"
    endpoint: str
    seq: int

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "seq": self.seq}


@dataclass(frozen=True, slots=True)
class AgentsResynced:
    """A complete resync finished; ``endpoints`` are every agent known now (others are gone)."""

    kind: ClassVar[str] = "resynced"
    endpoints: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"endpoints": list(self.endpoints)}


PresenceEvent = AgentStatus | AgentRetired | AgentsResynced


@dataclass(slots=True)
class EndpointState:
    """What the presence machine knows of one endpoint (device state, contacts, channels, overlays)."""

    device_state: str | None = None
    device_state_gen: int = -1
    contacts: dict[str, str] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)  # channel -> generation it was seen
    wrap_up_until: float | None = None
    status: AgentStatus | None = None
    queues: dict[str, Membership] = field(default_factory=dict)  # queue -> (paused, reason)
    custom: dict[str, bool] = field(default_factory=dict)  # overlay state -> Custom: device active
    presence: PresenceValue | None = None
    overlay_gen: int = -1

    @property
    def known(self) -> bool:
        return self.device_state is not None or bool(self.contacts)

    @property
    def online(self) -> bool:
        return any(status not in UNUSABLE_CONTACT_STATUSES for status in self.contacts.values())
