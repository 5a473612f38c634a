"""The Mayday CRM dashboard's contract, offered beside the richer native payloads (pure).

The dashboard (Socket.IO client) consumes these events; ``ts`` is epoch seconds (int):
- ``agents:snapshot`` ``{"agents": [{"extension": "1010", "status": "Registered", "online": true}], "ts"}``
  on connect;
- ``agent:status`` ``{"extension", "status": "Registered"|"Offline", "online", "ts"}`` per change
  (``"removed": true`` when the endpoint is gone after a resync);
- ``extension:endpointStatus`` ``{"extension", "status", "online", "ts"}`` when registration changes;
- ``extension:availability_changed`` ``{"extension", "availability": "Available"|"DND"|"Paused"|...,
  "state" (native), "reason", "since", "ts"}`` when the presence state changes;
- ``extension:contactStatus`` ``{"extension", "contact" (ps_contacts id), "uri", "status"
  (ContactStatus: Reachable, Unreachable, NonQualified, Removed...), "ts"}`` per contact change;
- ``extension:statuses_refreshed`` ``{"count", "ts"}`` after a complete resync (re-read the snapshot
  or ``GET /api/ami/extensions``).
``GET /api/ami/extensions`` in this shape is ``{"1010": {"isRegistered": true, "status": "Available",
"lastSeen": "<UTC ISO-8601>"}}``; ``lastSeen`` is the newest contact status time of an online
extension, or when an offline one went offline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ..contacts.model import ContactChange
from .state import AgentStatus, PresenceEvent, iso_utc

AVAILABILITY_TEXT = {
    "available": "Available", "ringing": "Ringing", "on_call": "On Call", "on_hold": "On Hold",
    "wrap_up": "Wrap Up", "dnd": "DND", "paused": "Paused", "away": "Away", "offline": "Offline",
    "unknown": "Unknown",
}

Message = tuple[str, dict[str, Any]]  # (event name, data)


def registration(online: bool) -> str:
    return "Registered" if online else "Offline"


def agent_entry(status: AgentStatus) -> dict[str, Any]:
    return {"extension": status.endpoint, "status": registration(status.online), "online": status.online}


def snapshot(agents: Iterable[AgentStatus], ts: int) -> dict[str, Any]:
    return {"agents": [agent_entry(a) for a in agents], "ts": ts}


def extension_entry(status: AgentStatus, contact_times: Iterable[float | None]) -> dict[str, Any]:
    """One value of the ``GET /api/ami/extensions`` document."""
    times = [t for t in contact_times if t is not None]
    last_seen = iso_utc(max(times)) if status.online and times else status.since
    return {"isRegistered": status.online, "status": AVAILABILITY_TEXT.get(status.state, "Unknown"),
            "lastSeen": last_seen}


def extensions(agents: Iterable[AgentStatus], contacts_of: Callable[[str], Iterable[Any]]) -> dict[str, Any]:
    """The ``GET /api/ami/extensions`` document from the agents and each one's contacts."""
    return {a.endpoint: extension_entry(a, (c.status_updated_at for c in contacts_of(a.endpoint))) for a in agents}


def status(agents: list[AgentStatus], *, connected: bool, last_resync: dict[str, Any] | None, seeded: bool,
           last_seed: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """``{"connected", "lastDbSync", "cache": {"extensions", "registered", "seeded", "lastRefresh"}, "ts"}``:
    the AMI connection, the last ps_contacts resync, what the presence cache holds."""
    at = (last_resync or {}).get("at")
    return {
        "connected": connected,
        "lastDbSync": iso_utc(at) if isinstance(at, (int, float)) else None,
        "cache": {"extensions": len(agents), "registered": sum(1 for a in agents if a.online),
                  "seeded": seeded, "lastRefresh": (last_seed or {}).get("at")},
        "ts": int(now),
    }


class DashboardTranslator:
    """Native presence events and contact changes -> the dashboard's events, in order.

    Keeps the last (state, online) published per extension to tell which of the extension:* events a
    change makes (O(1) per event). ``clock``: epoch seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last: dict[str, tuple[str, bool]] = {}

    def now(self) -> int:
        return int(self._clock())

    def presence(self, event: PresenceEvent) -> list[Message]:
        ts = self.now()
        if isinstance(event, AgentStatus):
            before = self._last.get(event.endpoint)
            self._last[event.endpoint] = (event.state, event.online)
            out: list[Message] = [("agent:status", {**agent_entry(event), "ts": ts})]
            if before is None or before[1] != event.online:
                out.append(("extension:endpointStatus", {**agent_entry(event), "ts": ts}))
            if before is None or before[0] != event.state:
                out.append(("extension:availability_changed", {
                    "extension": event.endpoint, "availability": AVAILABILITY_TEXT.get(event.state, "Unknown"),
                    "state": event.state, "reason": event.reason, "since": event.since, "ts": ts}))
            return out
        if event.kind == "retired":
            self._last.pop(event.endpoint, None)  # type: ignore[union-attr]
            return [("agent:status", {"extension": event.endpoint, "status": "Offline",  # type: ignore[union-attr]
                                      "online": False, "removed": True, "ts": ts})]
        if event.kind == "resynced":
            return [("extension:statuses_refreshed", {"count": len(event.endpoints), "ts": ts})]  # type: ignore[union-attr]
        return []

    def contacts(self, changes: Iterable[ContactChange]) -> list[Message]:
        ts = self.now()
        return [("extension:contactStatus", {
            "extension": c.contact.endpoint, "contact": c.contact.id, "uri": c.contact.uri,
            "status": "Removed" if c.kind == "removed" else (c.contact.status or "Unknown"), "ts": ts})
            for c in changes if c.contact.endpoint]
