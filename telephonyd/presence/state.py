"""The agent presence state machine (pure: no sockets, no timers, an injectable clock).

Per endpoint (the agent's extension, ``1010`` for ``PJSIP/1010``) it keeps the last device state, the
endpoint's contacts (id -> ContactStatus), the endpoint's live channels and a wrap-up deadline, and
derives two published facts:

- ``online``: at least one contact whose status is not ``Unreachable`` or ``Removed`` (``NonQualified``,
  ``Reachable``, ``Unknown`` count; compared exactly). The contacts provider also stands a
  registered chan_sip/IAX2 peer for one contact, so this holds for every technology.
- ``state``: ``offline`` whenever not online, even if the device state is stale; otherwise from the
  device state: NOT_INUSE available; INUSE/BUSY on_call; RINGING/RINGINUSE ringing; ONHOLD on_hold;
  UNAVAILABLE/INVALID offline; UNKNOWN (or none seen yet) unknown. During a register the contact
  arrives before ``DeviceStateChange NOT_INUSE``, so ``online: true`` with ``state: offline`` is a
  normal, short-lived combination.

Rules on top of the device state:
- Hangup cross-check: channels are tracked from ``Newchannel``/``Hangup`` (and a seed listing). When the
  last channel of an endpoint hangs up while its device state is a call state (INUSE, BUSY, RINGING,
  RINGINUSE, ONHOLD), the device state is taken as NOT_INUSE. The newest fact wins: a
  ``DeviceStateChange`` arriving after the Hangup replaces the inferred value (the usual
  ``NOT_INUSE`` then changes nothing and emits nothing).
- Wrap-up (only when ``wrap_up_s > 0``): when an agent leaves on_call/on_hold for available, it shows
  ``wrap_up`` until ``wrap_up_s`` has passed (`expire` ends it; the caller runs the timer from
  `next_deadline`). Any state other than available (a new call ringing or answered, offline) cancels
  the wrap-up at once. A call that only rang (ringing -> available) starts no wrap-up.

On top of that, an online agent not in a call (ringing, on_call, on_hold) shows an availability
overlay when one applies (`availability`: Do Not Disturb from a mapped ``Custom:`` device state or
presence ``dnd``; paused in every queue; away from presence ``away``/``xa``/``unavailable``).
Precedence, highest first: offline > ringing, on_call, on_hold > dnd > paused > away > wrap_up >
available > unknown. A call is shown over DND or a pause (the agent is busy either way, and a
dashboard must see the call); wrap-up is hidden under an overlay. ``reason`` carries the pause
reason or the presence subtype/message of the overlay shown.

Every change of (state, online, reason) yields an `AgentStatus` with ``since`` (UTC ISO-8601, when this
state began) and ``seq``, a per-endpoint counter that only grows: it continues across seeds and
retirements and is never reset while the process runs (``seq_origin`` lets the owner start above a
previous run's values). An update that changes neither field yields nothing.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from .availability import overlay
from .availability_facts import AvailabilityFacts
from .seed_apply import SeedApply
from .events import (  # the published events are imported from here too
    UNUSABLE_CONTACT_STATUSES,
    AgentRetired,
    AgentsResynced,
    AgentStatus,
    EndpointState,
    PresenceEvent,
)

__all__ = ["STATES", "UNUSABLE_CONTACT_STATUSES", "AgentRetired", "AgentStatus", "AgentsResynced", "PresenceEvent",
           "PresenceMachine", "iso_utc"]

STATES = ("offline", "available", "ringing", "on_call", "on_hold", "unknown", "wrap_up", "dnd", "paused", "away")

DEVICE_STATE_TO_STATE = {
    "NOT_INUSE": "available",
    "INUSE": "on_call",
    "BUSY": "on_call",
    "RINGING": "ringing",
    "RINGINUSE": "ringing",
    "ONHOLD": "on_hold",
    "UNAVAILABLE": "offline",
    "INVALID": "offline",
    "UNKNOWN": "unknown",
}

#: ContactStatus values that do not make an endpoint online (compare exactly, never by substring).

_CALL_DEVICE_STATES = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})
_WRAP_UP_AFTER = frozenset({"on_call", "on_hold"})
_IN_CALL = frozenset({"ringing", "on_call", "on_hold"})


def iso_utc(epoch_s: float) -> str:
    """``2026-11-21T04:52:23.627Z`` for an epoch time: exactly what
    ``datetime.fromtimestamp(epoch_s, UTC)`` shows to the millisecond (microseconds rounded half
    to even first, as datetime does, then cut), with the seconds part formatted once per second (a
    flood of device states stamps thousands of statuses within one second)."""
    second = math.floor(epoch_s)
    micro = round((epoch_s - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{_second_text(second)}{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    """``2026-11-21T04:52:23.`` for a whole epoch second."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


class PresenceMachine(AvailabilityFacts, SeedApply):
    """The presence of every known endpoint. Every mutator returns the events it caused, in order.

    ``wrap_up_s``: seconds of wrap-up after a call (0 disables it). ``clock``: epoch seconds, used
    for ``since`` and wrap-up deadlines. ``seq_origin``: the first event of an endpoint gets
    ``seq_origin + 1``.
    """

    def __init__(self, *, wrap_up_s: float = 0.0, clock: Callable[[], float] = time.time, seq_origin: int = 0) -> None:
        self.wrap_up_s = wrap_up_s
        self._clock = clock
        self._seq_origin = seq_origin
        self._endpoints: dict[str, EndpointState] = {}
        self._wrap_ups: dict[str, float] = {}  # endpoint -> wrap_up_until, only those in wrap-up
        self._seq: dict[str, int] = {}
        self._generation = 0
        self._seed_from: int | None = None
        self._hangups_during_seed: dict[str, int] = {}

    # -- queries ---------------------------------------------------------------------------------

    def agents(self) -> list[AgentStatus]:
        """Every known agent's current status, sorted by endpoint."""
        return [ep.status for _, ep in sorted(self._endpoints.items()) if ep.status is not None]

    def get(self, endpoint: str) -> AgentStatus | None:
        ep = self._endpoints.get(endpoint)
        return ep.status if ep is not None else None

    def device_state_of(self, endpoint: str) -> str | None:
        ep = self._endpoints.get(endpoint)
        return ep.device_state if ep is not None else None

    def channels_of(self, endpoint: str) -> list[str]:
        ep = self._endpoints.get(endpoint)
        return sorted(ep.channels) if ep is not None else []

    def next_deadline(self) -> float | None:
        """The earliest wrap-up end (clock time), or None."""
        return min(self._wrap_ups.values()) if self._wrap_ups else None

    # -- live facts ------------------------------------------------------------------------------

    def device_state(self, endpoint: str, device_state: str) -> list[PresenceEvent]:
        """A ``DeviceStateChange`` (canonical state, see `devices.normalize_device_state`)."""
        self._generation += 1
        ep = self._endpoint(endpoint)
        ep.device_state, ep.device_state_gen = device_state, self._generation
        return self._update(endpoint, ep)

    def set_contacts(self, endpoint: str, contacts: Mapping[str, str]) -> list[PresenceEvent]:
        """Replace the endpoint's contacts (contact id or URI -> ContactStatus)."""
        ep = self._endpoints.get(endpoint)
        if ep is None:
            if not contacts:
                return []
            ep = self._endpoint(endpoint)
        ep.contacts = dict(contacts)
        return self._update(endpoint, ep)

    def channel_created(self, endpoint: str, channel: str) -> list[PresenceEvent]:
        """A ``Newchannel`` of the endpoint: tracked for the Hangup cross-check; emits nothing."""
        self._generation += 1
        self._endpoint(endpoint).channels[channel] = self._generation
        return []

    def channel_hungup(self, endpoint: str, channel: str) -> list[PresenceEvent]:
        """A ``Hangup`` of the endpoint's channel (see the cross-check rule in the module doc)."""
        self._generation += 1
        if self._seed_from is not None:
            self._hangups_during_seed[channel] = self._generation
        ep = self._endpoints.get(endpoint)
        if ep is None:
            return []
        ep.channels.pop(channel, None)
        if ep.channels or ep.device_state not in _CALL_DEVICE_STATES:
            return []
        ep.device_state, ep.device_state_gen = "NOT_INUSE", self._generation
        return self._update(endpoint, ep)

    def expire(self) -> list[PresenceEvent]:
        """End every wrap-up whose deadline has passed."""
        now = self._clock()
        events: list[PresenceEvent] = []
        for endpoint in sorted(e for e, until in self._wrap_ups.items() if until <= now):
            events += self._update(endpoint, self._endpoints[endpoint])
        return events

    def set_wrap_up(self, wrap_up_s: float) -> list[PresenceEvent]:
        """Change the wrap-up length (a config reload); 0 ends every running wrap-up now."""
        self.wrap_up_s = wrap_up_s
        events: list[PresenceEvent] = []
        for endpoint in sorted(self._wrap_ups):
            ep = self._endpoints[endpoint]
            ep.wrap_up_until = None if wrap_up_s <= 0 else ep.wrap_up_until
            events += self._update(endpoint, ep)
        return events

    # -- seeding (after an AMI connect, or a forced refresh): see `SeedApply` ----------------

    def refresh(self, endpoints: Iterable[str]) -> list[PresenceEvent]:
        """Recompute these endpoints' status from their facts (unknown ones are skipped)."""
        events: list[PresenceEvent] = []
        for endpoint in endpoints:
            ep = self._endpoints.get(endpoint)
            if ep is not None:
                events += self._update(endpoint, ep)
        return events

    def retire(self, endpoint: str) -> list[PresenceEvent]:
        """Forget an endpoint; its ``seq`` keeps counting if it comes back."""
        ep = self._endpoints.pop(endpoint, None)
        self._wrap_ups.pop(endpoint, None)
        if ep is None or ep.status is None:
            return []
        return [AgentRetired(endpoint, self._next_seq(endpoint))]

    # -- internals -------------------------------------------------------------------------------

    def _endpoint(self, endpoint: str) -> EndpointState:
        ep = self._endpoints.get(endpoint)
        if ep is None:
            ep = self._endpoints[endpoint] = EndpointState()
        return ep

    def _next_seq(self, endpoint: str) -> int:
        seq = self._seq.get(endpoint, self._seq_origin) + 1
        self._seq[endpoint] = seq
        return seq

    def _update(self, endpoint: str, ep: EndpointState) -> list[PresenceEvent]:
        if not ep.known and ep.status is None:
            return []  # only channels seen so far: not an agent yet
        now = self._clock()
        online = ep.online
        if not online:
            state = "offline"
        elif ep.device_state is None:
            state = "unknown"
        else:
            state = DEVICE_STATE_TO_STATE.get(ep.device_state, "unknown")
        if state == "available" and self.wrap_up_s > 0:
            previous = ep.status.state if ep.status is not None else None
            if ep.wrap_up_until is None and previous in _WRAP_UP_AFTER:
                ep.wrap_up_until = now + self.wrap_up_s
            if ep.wrap_up_until is not None:
                if now < ep.wrap_up_until:
                    state = "wrap_up"
                else:
                    ep.wrap_up_until = None
        else:
            ep.wrap_up_until = None
        reason = None
        if online and state not in _IN_CALL:
            shown, why = overlay(ep.queues, ep.custom, ep.presence)
            if shown is not None:
                state, reason = shown, why
        if ep.wrap_up_until is None:
            self._wrap_ups.pop(endpoint, None)
        else:
            self._wrap_ups[endpoint] = ep.wrap_up_until
        current = ep.status
        if current is not None and current.state == state and current.online == online and current.reason == reason:
            return []
        ep.status = AgentStatus(endpoint, state, online, iso_utc(now), self._next_seq(endpoint), reason)
        return [ep.status]
