"""The ``call`` object of the call-event schema (version 1), derived from a tracked `Call` (pure).

Derived fields and where they come from (Asterisk 22.10.1 AMI; 20.20.1 with chan_sip):
- ``direction``: ``inbound`` when the first leg is a configured trunk endpoint or one of its contexts
  is in ``calls.inbound_contexts``; ``outbound`` when a dialed leg is a trunk, a context of the first
  leg is in ``calls.outbound_contexts``, or the first channel was created ``Down`` and never turned
  ``Ring`` (AMI Originate, call files and dialers create the channel before anyone rings, then it goes
  ``Ringing``/``Up``; a PJSIP phone calling in arrives ``Ring``, a chan_sip one (Asterisk 20.20.1)
  arrives ``Down`` and turns ``Ring`` before the dialplan runs); else ``internal``.
- ``dialed_number``: the first ``Exten`` of the first leg other than ``s`` (the number the caller dialed).
- ``did``: the configured ``did`` channel variable (VarSet), else for inbound calls the dialed number.
- ``agent_endpoint``: the configured ``agent`` variable when set, else for inbound calls the answered
  (or first) dialed leg's endpoint, for other calls the first leg's, when its technology is one of
  ``calls.agent_technologies`` and it is not a trunk.
- ``lead``: the ``lead`` variable, else the 10-digit lead id inside a VICIdial caller code in the
  caller id name (``V1121053000000012345`` -> ``12345``).
- ``hung_up_by``: the role (caller | callee) of the first leg whose peer asked to hang up
  (``HangupRequest``); ``callee`` for a busy callee without one (chan_sip, Asterisk 20.20.1: a 486
  queues no HangupRequest); ``system`` when Asterisk ended it (dialplan, no route, AMD abort).
- ``hangup_cause`` / ``tech_cause``: the first leg's ``Hangup`` (Asterisk copies the dialed leg's
  cause onto it, e.g. 17 / 486 for a busy callee); ``TechCause`` exists on 20.17+/22.7+ only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import Call, Leg, iso_utc

_CALLER_CODE = re.compile(r"^[A-Z]\d{10}(\d{9,10})$")


@dataclass(frozen=True, slots=True)
class CallRules:
    """What the operator configured (``calls`` section): trunk endpoints, contexts, variables."""

    trunks: frozenset[str] = frozenset()
    inbound_contexts: frozenset[str] = frozenset()
    outbound_contexts: frozenset[str] = frozenset()
    agent_technologies: frozenset[str] = frozenset({"PJSIP", "SIP", "IAX2"})
    #: field (campaign, agent, lead, did) -> channel variable names, first non-empty wins.
    variables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        trunks: Iterable[str] = (),
        inbound_contexts: Iterable[str] = (),
        outbound_contexts: Iterable[str] = (),
        agent_technologies: Iterable[str] = ("PJSIP", "SIP", "IAX2"),
        variables: Mapping[str, Iterable[str]] | None = None,
    ) -> CallRules:
        return cls(
            frozenset(trunks),
            frozenset(inbound_contexts),
            frozenset(outbound_contexts),
            frozenset(t.upper() for t in agent_technologies),
            {k: tuple(v) for k, v in (variables or {}).items()},
        )

    @property
    def watched_variables(self) -> frozenset[str]:
        """Every channel variable name a VarSet is read for (lower-cased)."""
        return frozenset(name.lower() for names in self.variables.values() for name in names)

    def variable(self, call: Call, name: str) -> str:
        for var in self.variables.get(name, ()):
            value = call.variables.get(var.lower())
            if value:
                return value
        return ""

    def is_trunk(self, leg: Leg) -> bool:
        return bool(self.trunks) and leg.endpoint in self.trunks

    def is_agent(self, leg: Leg) -> bool:
        return leg.technology.upper() in self.agent_technologies and not self.is_trunk(leg)


def direction(call: Call, rules: CallRules) -> str:
    origin = call.origin
    contexts = set(call.contexts)
    if origin is not None and rules.is_trunk(origin) or contexts & rules.inbound_contexts:
        return "inbound"
    if any(rules.is_trunk(leg) for leg in call.callees()) or contexts & rules.outbound_contexts:
        return "outbound"
    if call.origin_state == "Down":
        return "outbound"
    return "internal"


def lead_of(call: Call, rules: CallRules) -> str:
    lead = rules.variable(call, "lead")
    if lead:
        return lead
    origin = call.origin
    match = _CALLER_CODE.match(origin.caller_name) if origin is not None else None
    return str(int(match.group(1))) if match else ""


def agent_endpoint(call: Call, rules: CallRules, way: str) -> str:
    agent = rules.variable(call, "agent")
    if agent:
        return agent
    if way == "inbound":
        leg = call.answered_leg() or next(iter(call.callees()), None)
    else:
        leg = call.origin
    return leg.endpoint if leg is not None and rules.is_agent(leg) else ""


def hung_up_by(call: Call) -> str | None:
    if call.ended_at is None:
        return None
    if call.end_reason != "hangup":
        return "unknown"
    if call.hangup_requested_by is None and call.dial_status == "BUSY":
        return "callee"  # chan_sip queues no HangupRequest for a 486, Dial() ends the leg (20.20.1)
    return call.hangup_requested_by or "system"


def _duration(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(max(0.0, end - start), 3)


def describe(call: Call, rules: CallRules) -> dict[str, Any]:
    """The schema-1 ``call`` object (see docs/call-events.md for every field)."""
    origin = call.origin
    way = direction(call, rules)
    answered = call.answered_leg()
    callee = answered or next(iter(call.callees()), None)
    ended = origin if origin is not None and origin.ended_at is not None else None
    if ended is None:
        ended = next((leg for leg in call.legs.values() if leg.ended_at is not None), None)
    did = rules.variable(call, "did") or (call.dialed_number if way == "inbound" else "")
    state = "ended" if call.ended_at is not None else (
        "answered" if call.answered_at is not None else ("ringing" if call.ringing_at is not None else "new"))
    return {
        "linkedid": call.linkedid,
        "uniqueid": origin.uniqueid if origin is not None else call.linkedid,
        "state": state,
        "direction": way,
        "caller": {"num": origin.caller_num if origin else "", "name": origin.caller_name if origin else ""},
        "callee": {"num": callee.caller_num if callee else "", "name": callee.caller_name if callee else ""},
        "dialed_number": call.dialed_number,
        "did": did,
        "context": origin.context if origin is not None else "",
        "campaign": rules.variable(call, "campaign"),
        "lead": lead_of(call, rules),
        "agent_endpoint": agent_endpoint(call, rules, way),
        "started_at": iso_utc(call.started_at),
        "ringing_at": iso_utc(call.ringing_at),
        "answered_at": iso_utc(call.answered_at),
        "ended_at": iso_utc(call.ended_at),
        "duration_s": _duration(call.started_at, call.ended_at),
        "talk_s": _duration(call.answered_at, call.ended_at),
        "dial_status": call.dial_status,
        "hangup_cause": ended.hangup_cause if ended else None,
        "hangup_cause_txt": ended.hangup_cause_txt if ended else None,
        "tech_cause": ended.tech_cause if ended else None,
        "hung_up_by": hung_up_by(call),
        "end_reason": call.end_reason,
        "held": call.held,
        "transfers": call.transfers,
        "legs": [leg.as_dict() for leg in call.legs.values()],
    }
