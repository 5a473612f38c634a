"""`AvailabilityFacts`: the presence machine's queue, Custom: and presence-state facts (pure).

Mixed into `PresenceMachine` (which owns ``_endpoints``, ``_generation``, ``_endpoint`` and
``_update``); the overlay they make is `availability.overlay`, its precedence in `state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .availability import Membership, PresenceValue

if TYPE_CHECKING:
    from .events import EndpointState, PresenceEvent


class AvailabilityFacts:
    _endpoints: dict[str, EndpointState]
    _generation: int

    def _endpoint(self, endpoint: str) -> EndpointState: ...  # noqa: D102 - provided by PresenceMachine
    def _update(self, endpoint: str, ep: EndpointState) -> list[PresenceEvent]: ...  # noqa: D102

    def availability_of(self, endpoint: str) -> dict[str, Any] | None:
        """Queues (``{queue: {"paused", "reason"}}``), Custom: overlays and the presence state."""
        ep = self._endpoints.get(endpoint)
        if ep is None:
            return None
        presence = ({"status": ep.presence[0], "subtype": ep.presence[1], "message": ep.presence[2]}
                    if ep.presence else None)
        return {"queues": {q: {"paused": p, "reason": r or None} for q, (p, r) in sorted(ep.queues.items())},
                "custom": dict(ep.custom), "presence": presence}

    def queue_member(self, endpoint: str, queue: str, membership: Membership | None) -> list[PresenceEvent]:
        """A QueueMember* event: membership ``(paused, reason)``, or None when removed from ``queue``."""
        self._generation += 1
        ep = self._endpoints.get(endpoint)
        if ep is None and membership is None:
            return []
        ep = ep or self._endpoint(endpoint)
        if membership is None:
            ep.queues.pop(queue, None)
        else:
            ep.queues[queue] = membership
        ep.overlay_gen = self._generation
        return self._update(endpoint, ep)

    def custom_state(self, endpoint: str, overlay_state: str, active: bool) -> list[PresenceEvent]:
        """A mapped ``Custom:`` device state changed (see `availability.custom_device`)."""
        self._generation += 1
        ep = self._endpoint(endpoint)
        ep.custom[overlay_state] = active
        ep.overlay_gen = self._generation
        return self._update(endpoint, ep)

    def presence_state(self, endpoint: str, value: PresenceValue) -> list[PresenceEvent]:
        """A ``PresenceStateChange``: (status, subtype, message)."""
        self._generation += 1
        ep = self._endpoint(endpoint)
        ep.presence = value
        ep.overlay_gen = self._generation
        return self._update(endpoint, ep)
