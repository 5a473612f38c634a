"""The call tracker on the lab's recorded calls (Asterisk 22.10.1, SIPp phones; every AMI event of
each call: tests/fixtures/asterisk-22.10.1/ami/calls/, see the README there). Each recording must
give its event sequence and a call record with these fields."""

from __future__ import annotations

import pytest

from telephonyd.ami.message import AMIMessage
from telephonyd.calls import CallTracker
from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.ami_wire import split_raw

CALLS = ASTERISK_FIXTURES / "ami" / "calls"

ANSWERED = ["call.ringing", "call.answered", "call.ended"]
REFUSED = ["call.ringing", "call.ended"]
INTERNAL = {"direction": "internal", "caller": {"num": "1019", "name": "Phone 1019"}, "agent_endpoint": "1019"}

# recording -> (event kinds, fields of the call.ended record)
EXPECTED: dict[str, tuple[list[str], dict]] = {
    "01_answered_caller_hangs_up": (ANSWERED, {
        **INTERNAL, "dialed_number": "1011", "callee": {"num": "1011", "name": "Phone 1011"},
        "dial_status": "ANSWER", "hangup_cause": 16, "tech_cause": None, "hung_up_by": "caller"}),
    "02_answered_callee_hangs_up": (ANSWERED, {
        **INTERNAL, "dial_status": "ANSWER", "hangup_cause": 16, "hung_up_by": "callee"}),
    "03_busy_486": (REFUSED, {
        **INTERNAL, "dial_status": "BUSY", "hangup_cause": 17, "tech_cause": "486", "hung_up_by": "callee",
        "answered_at": None}),
    # A 603 arrives as Q.850 21 with TechCause 403 on the wire; DialEnd says NOANSWER.
    "04_decline_603": (REFUSED, {
        **INTERNAL, "dial_status": "NOANSWER", "hangup_cause": 21, "tech_cause": "403", "hung_up_by": "callee"}),
    "05_not_found_404": (REFUSED, {
        **INTERNAL, "dial_status": "NOANSWER", "hangup_cause": 1, "tech_cause": "404", "hung_up_by": "callee"}),
    # Dial()'s 20 s timeout: Asterisk ends it, cause 16, not 19.
    "06_no_answer_ringout": (REFUSED, {
        **INTERNAL, "dial_status": "NOANSWER", "hangup_cause": 16, "tech_cause": None, "hung_up_by": "system"}),
    "07_caller_cancels_while_ringing": (REFUSED, {
        **INTERNAL, "dial_status": "CANCEL", "hangup_cause": 127, "tech_cause": "487", "hung_up_by": "caller"}),
    # No contact: Dial() creates no channel, so there is no dialed leg at all.
    "08_callee_unregistered": (["call.ended"], {
        **INTERNAL, "dialed_number": "1015", "dial_status": None, "hangup_cause": 3, "tech_cause": "404",
        "hung_up_by": "system", "callee": {"num": "", "name": ""}}),
    "09_hold_unhold_reinvite": (["call.ringing", "call.answered", "call.held", "call.held", "call.ended"], {
        **INTERNAL, "dial_status": "ANSWER", "hung_up_by": "caller", "held": False}),
    # AMI Redirect of the caller to music on hold: no Hold event (MOH is not a hold), the callee's leg
    # is hung up by Asterisk, then an AMI Hangup.
    "10_moh_via_ami_redirect": (ANSWERED, {**INTERNAL, "dial_status": "ANSWER", "hung_up_by": "system"}),
    "11_blind_transfer_ami": (["call.ringing", "call.answered", "call.transferred", "call.ended"], {
        **INTERNAL, "dial_status": "ANSWER", "transfers": 1}),
    # Atxfer sent as DTMF only: the recording has no AttendedTransfer (no 1012 channel was made).
    "12_attended_transfer_ami": (ANSWERED, {**INTERNAL, "transfers": 0, "hung_up_by": "callee"}),
    "13_originate_local_then_endpoint": (ANSWERED, {
        "direction": "outbound", "caller": {"num": "5550001111", "name": "Lab"},
        "callee": {"num": "1011", "name": "Phone 1011"}, "dial_status": "ANSWER", "hung_up_by": "caller"}),
    "14_originate_vicidial_outbound_answered": (ANSWERED, {
        "direction": "outbound", "caller": {"num": "5550001111", "name": "V1121053000000012345"},
        "dialed_number": "915552345678", "lead": "12345", "dial_status": "ANSWER", "hangup_cause": 16}),
    "15_originate_vicidial_outbound_busy": (REFUSED, {
        "direction": "outbound", "dial_status": "BUSY", "hangup_cause": 17, "hung_up_by": "callee"}),
    # Answer() then Queue(): answered by the dialplan; the members ring while it is already answered.
    "16_queue_call_answered_by_member": (["call.answered", "call.ended"], {
        **INTERNAL, "dialed_number": "8000", "callee": {"num": "1010", "name": "Phone 1010"},
        "dial_status": "ANSWER", "hung_up_by": "caller"}),
}


def feed(name: str) -> tuple[CallTracker, list]:
    tracker = CallTracker()
    events = []
    for i, pairs in enumerate(split_raw((CALLS / f"{name}.ami_events.raw").read_bytes())):
        events += tracker.feed(AMIMessage(pairs), 1000.0 + i)
    return tracker, events


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lab_call(name: str) -> None:
    kinds, fields = EXPECTED[name]
    tracker, events = feed(name)
    assert [e.kind for e in events] == kinds
    assert len({e.linkedid for e in events}) == 1
    record = events[-1].snapshot
    for key, value in fields.items():
        assert record[key] == value, key
    assert record["end_reason"] == "hangup" and tracker.calls == {}


def test_hold_and_transfer_details() -> None:
    _, events = feed("09_hold_unhold_reinvite")
    held = [e for e in events if e.kind == "call.held"]
    assert [e.extra["held"] for e in held] == [True, False]
    assert held[0].snapshot["held"] is True and held[1].snapshot["held"] is False
    _, events = feed("11_blind_transfer_ami")
    transfer = next(e for e in events if e.kind == "call.transferred").extra["transfer"]
    assert transfer["type"] == "blind" and transfer["extension"] == "1012" and transfer["result"] == "Success"
    _, events = feed("16_queue_call_answered_by_member")
    legs = {leg["endpoint"]: leg for leg in events[-1].snapshot["legs"]}
    assert {"1010", "1011", "1012"} <= set(legs) and legs["1010"]["answered_at"] is not None


def test_every_lab_call_recording_is_covered() -> None:
    recorded = {p.name.removesuffix(".ami_events.raw") for p in CALLS.glob("*.ami_events.raw")}
    assert recorded == set(EXPECTED)
