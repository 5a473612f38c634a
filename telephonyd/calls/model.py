"""Value types of the call tracker: legs, calls and the call events it emits (pure data).

A *call* is every channel sharing one ``Linkedid`` (Asterisk 22.10.1: the linkedid is the first
channel's uniqueid and every channel created on its behalf - dialed legs, Local channel halves -
inherits it). A *leg* is one channel (one ``Uniqueid``).

The JSON form of an event (`CallEvent.as_dict`) is the versioned schema documented in
``docs/call-events.md``: ``{"schema": "telephonyd.call-event", "version": 1, "event", "event_id",
"seq", "time", "node_id", "call": {...}}`` plus ``held`` / ``transfer`` on those events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "telephonyd.call-event"
SCHEMA_VERSION = 1

RINGING = "call.ringing"
ANSWERED = "call.answered"
HELD = "call.held"
TRANSFERRED = "call.transferred"
ENDED = "call.ended"
EVENT_KINDS: tuple[str, ...] = (RINGING, ANSWERED, HELD, TRANSFERRED, ENDED)

#: ``Call.end_reason``: how the tracker learnt that the call was over.
END_HANGUP = "hangup"  # every leg's Hangup was seen
END_RESYNC = "resync"  # CoreShowChannels after an AMI reconnect no longer lists it
END_EXPIRED = "expired"  # older than calls.max_age_s
END_EVICTED = "evicted"  # more live calls than calls.max_calls


def iso_utc(epoch: float | None) -> str | None:
    """``2026-11-21T05:10:38.123Z`` for an epoch time in seconds, None for None."""
    if epoch is None:
        return None
    whole = int(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((epoch - whole) * 1000):03d}Z"


def endpoint_of(channel: str) -> tuple[str, str]:
    """``("PJSIP", "1010")`` for ``PJSIP/1010-00000001``; ``("Local", "s@agitest")`` for a Local
    channel half; ``("", channel)`` when there is no technology prefix."""
    tech, sep, rest = channel.partition("/")
    if not sep:
        return "", channel
    if tech.lower() == "local":
        return tech, rest.rsplit("-", 1)[0] if ";" in rest else rest
    name = rest.rsplit("-", 1)[0] if "-" in rest else rest
    return tech, name


@dataclass(slots=True)
class Leg:
    """One channel of a call. Times are epoch seconds; ``role`` is caller | callee | other."""

    uniqueid: str
    channel: str = ""
    role: str = "other"
    state: str = ""
    caller_num: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""
    created_at: float = 0.0
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    dial_status: str | None = None
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    tech_cause: str | None = None
    bridge: str | None = None
    held: bool = False

    @property
    def endpoint(self) -> str:
        return endpoint_of(self.channel)[1] if self.channel else ""

    @property
    def technology(self) -> str:
        return endpoint_of(self.channel)[0] if self.channel else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "uniqueid": self.uniqueid,
            "channel": self.channel,
            "endpoint": self.endpoint,
            "role": self.role,
            "state": self.state,
            "caller": {"num": self.caller_num, "name": self.caller_name},
            "context": self.context,
            "dial_status": self.dial_status,
            "created_at": iso_utc(self.created_at),
            "answered_at": iso_utc(self.answered_at),
            "ended_at": iso_utc(self.ended_at),
            "hangup_cause": self.hangup_cause,
            "hangup_cause_txt": self.hangup_cause_txt,
            "tech_cause": self.tech_cause,
        }


@dataclass(slots=True)
class Call:
    """Everything known about one linkedid. ``legs`` in creation order (the first is the caller)."""

    linkedid: str
    started_at: float
    first_seq: int = 0
    legs: dict[str, Leg] = field(default_factory=dict)
    origin_state: str = ""
    contexts: list[str] = field(default_factory=list)
    dialed_number: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    hangup_requested_by: str | None = None
    held: bool = False
    transfers: int = 0
    seq: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    # -- derived ---------------------------------------------------------------------------------

    @property
    def origin(self) -> Leg | None:
        legs = self.legs
        leg = legs.get(self.linkedid)
        if leg is None and legs:
            leg = next(iter(legs.values()))
        return leg

    def callees(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.role == "callee"]

    def answered_leg(self) -> Leg | None:
        for leg in self.callees():
            if leg.dial_status == "ANSWER":
                return leg
        for leg in self.callees():
            if leg.answered_at is not None:
                return leg
        return None

    @property
    def dial_status(self) -> str | None:
        """ANSWER when any dialed leg answered, else the last final DialEnd status seen."""
        statuses = [leg.dial_status for leg in self.callees() if leg.dial_status]
        if "ANSWER" in statuses:
            return "ANSWER"
        return statuses[-1] if statuses else None

    @property
    def live(self) -> bool:
        return self.ended_at is None


class CallEvent:
    """One emitted event: ``kind`` (call.ringing ...), the `Call`, its per-call ``seq`` and
    occurrence ``n`` of this kind, the epoch ``time``, and ``extra`` (``held``, ``transfer``).
    ``snapshot`` is the schema-1 ``call`` object as it was when the event happened."""

    __slots__ = ("call", "extra", "kind", "n", "seq", "snapshot", "time")

    def __init__(self, kind: str, call: Call, snapshot: dict[str, Any], time: float,
                 extra: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.call = call
        call.seq += 1
        self.seq = call.seq
        self.n = call.counts[kind] = call.counts.get(kind, 0) + 1
        self.snapshot = snapshot
        self.time = time
        self.extra = extra or {}

    @property
    def linkedid(self) -> str:
        return self.call.linkedid

    @property
    def event_id(self) -> str:
        """Stable across duplicates: ``<linkedid>:<kind>:<n>`` (n counts this kind in the call)."""
        return f"{self.call.linkedid}:{self.kind}:{self.n}"

    def __repr__(self) -> str:
        return f"<CallEvent {self.event_id} seq={self.seq}>"
