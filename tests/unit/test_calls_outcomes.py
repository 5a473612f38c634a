"""The DID Optimizer outcome built from AMI agrees with what ``call_log`` reports for the same
recorded call (tests/calllog_scenarios.py): same outbox key, dial status, number, lead, cause."""

from __future__ import annotations

import pytest

from telephonyd.ami.message import AMIMessage
from telephonyd.calls import CallTracker
from telephonyd.calls.documents import ami_dial_status, outcome_payload
from tests.calllog_scenarios import SCENARIOS
from tests.fakes.ami_wire import recorded_events


def ended_call(scenario: str) -> dict:
    tracker = CallTracker()
    events = []
    for i, pairs in enumerate(recorded_events(f"{scenario}_ami_events.txt")):
        events += tracker.feed(AMIMessage(pairs), 1000.0 + i)
    assert events[-1].kind == "call.ended"
    return events[-1].snapshot


@pytest.mark.parametrize("scenario", ["01_ANSWER", "02_BUSY", "07_AMD_SILENCE", "08_CALLER_HANGUP_DURING_START"])
def test_ami_outcome_matches_call_log(scenario: str) -> None:
    expected, _ = SCENARIOS[scenario]
    payload = outcome_payload(ended_call(scenario), source="telephonyd", timestamp=1)
    if expected is None:
        assert payload is None  # nothing dialed: neither path reports
        return
    assert payload is not None
    for field in ("uniqueid", "linkedid", "dialStatus", "customerPhone", "leadId", "hangupCause",
                  "sipHangupCause"):
        assert payload[field] == expected[field], field


def test_unreachable_endpoint_is_invisible_to_ami() -> None:
    """Dial() to an unregistered endpoint creates no channel: AMI shows no DialBegin, so the AMI path
    reports nothing where call_log reports CHANUNAVAIL (documented in docs/call-events.md)."""
    call = ended_call("04_CHANUNAVAIL")
    assert SCENARIOS["04_CHANUNAVAIL"][0]["dialStatus"] == "CHANUNAVAIL"
    assert ami_dial_status(call) is None and outcome_payload(call, source="x", timestamp=1) is None
