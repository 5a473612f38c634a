"""What leaves the daemon for a call event (pure): the schema-1 JSON document, webhook filters,
and the DID Optimizer outcome built from a tracked call (``calls.outcomes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..calllog.outcome import CallOutcome
from ..calllog.payload import build_payload
from .model import SCHEMA, SCHEMA_VERSION, iso_utc
from .settings import WebhookConfig
from .tracker import CallEvent

#: Q.850 causes that Dial() reports as CHANUNAVAIL although AMI's DialEnd says NOANSWER
#: (Asterisk 22.10.1 recordings: a callee's 603 gives cause 21, a 404 cause 1).
_UNAVAILABLE_CAUSES = frozenset({1, 3, 18, 20, 21, 27, 28, 38, 41, 102})


def document(event: CallEvent, node_id: str) -> dict[str, Any]:
    """The event as published (MQTT, WebSocket, webhooks); see docs/call-events.md."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "event": event.kind,
        "event_id": event.event_id,
        "seq": event.seq,
        "time": iso_utc(event.time),
        "node_id": node_id,
        "call": event.snapshot,
    }
    doc.update(event.extra)
    return doc


def matches(webhook: WebhookConfig, kind: str, call: dict[str, Any]) -> bool:
    """True when ``webhook`` wants an event ``kind`` about ``call`` (a schema-1 ``call`` object)."""
    if not webhook.enabled or webhook.events and kind not in webhook.events:
        return False
    legs: Sequence[dict[str, Any]] = call.get("legs") or ()
    if webhook.contexts:
        contexts = {call.get("context")} | {leg.get("context") for leg in legs}
        if not contexts & set(webhook.contexts):
            return False
    if webhook.campaigns and call.get("campaign") not in webhook.campaigns:
        return False
    if webhook.endpoints:
        endpoints = {call.get("agent_endpoint")} | {leg.get("endpoint") for leg in legs}
        if not endpoints & set(webhook.endpoints):
            return False
    return True


def ami_dial_status(call: dict[str, Any]) -> str | None:
    """The DIALSTATUS Dial() would have set, from what AMI showed (None: nothing was dialed).

    DialEnd ``ABORT`` after the callee answered (AMD hang-up) is ``ANSWER`` for Dial(); DialEnd
    ``NOANSWER`` with an unavailable-type cause is ``CHANUNAVAIL``.
    """
    status = call.get("dial_status")
    if status is None:
        return None
    callee_answered = any(leg.get("role") == "callee" and leg.get("answered_at") for leg in call.get("legs", ()))
    if status == "ABORT" and callee_answered:
        return "ANSWER"
    if status == "NOANSWER" and call.get("hangup_cause") in _UNAVAILABLE_CAUSES:
        return "CHANUNAVAIL"
    return status


def outcome_payload(call: dict[str, Any], *, source: str, timestamp: int) -> dict[str, Any] | None:
    """The DID Optimizer body for a finished call, keyed (by the caller) by the first leg's uniqueid
    - the leg VICIdial's ``call_log`` AGI runs on, so both paths share one outbox key. None when
    nothing was dialed (``call_log`` reports nothing then either)."""
    dial_status = ami_dial_status(call)
    if dial_status is None:
        return None
    callees = [leg for leg in call.get("legs", ()) if leg.get("role") == "callee"]
    tech = call.get("tech_cause") or ""
    sip_reason = ""
    if not tech and dial_status == "ANSWER" and any(
            str(leg.get("channel", "")).startswith(("PJSIP/", "SIP/")) for leg in callees):
        # An answered SIP leg's tech cause is its 200 OK (HANGUPCAUSE(<leg>,tech) reads "SIP 200 OK" in
        # the 22.10.1 recordings); AMI's Hangup carries no TechCause for a normal clearing.
        tech, sip_reason = "200", "OK"
    outcome = CallOutcome(
        uniqueid=call["uniqueid"],
        linkedid=call["linkedid"],
        did=call.get("did") or call.get("caller", {}).get("num", ""),
        customer_phone=call.get("dialed_number", ""),
        campaign=call.get("campaign", ""),
        dial_status=dial_status,
        answered_time_s=int(call.get("talk_s") or 0),
        dialed_time_s=int(call.get("duration_s") or 0) if callees else 0,
        hangup_cause=max(0, int(call.get("hangup_cause") or 0)),
        hangup_source="",
        agent=call.get("agent_endpoint") or "0",
        lead=call.get("lead", ""),
        list_id="",
        amd_status="",
        amd_cause="",
        sip_cause=int(tech) if tech.isdigit() else None,
        sip_reason=sip_reason,
    )
    return build_payload(outcome, source=source, timestamp=timestamp)
