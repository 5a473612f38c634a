"""The recorded VICIdial-style calls and what each must put in the outbox, shared by the unit and
component tests of the ``call_log`` handler (recordings: tests/fixtures/asterisk-22.10.1/vicidial/)."""

from __future__ import annotations

from typing import Any

from tests.fakes.agi import VICIDIAL_DIR, FakeChannel

#: The handler's clock in these tests: the payload's ``timestamp``.
NOW = 1795300000.0


def expected(uniqueid: str, **fields: Any) -> dict[str, Any]:
    body = {
        "uniqueid": uniqueid, "linkedid": uniqueid, "phoneNumber": "15551230001",
        "customerPhone": "915555550001", "campaignId": "TESTCAMP", "dialStatus": "", "disposition": "",
        "duration": 0, "dialedTime": 0, "ringTime": 0, "hangupCause": 0, "hangupSource": "",
        "agentId": "6001", "leadId": "12345", "listId": "", "amdStatus": "", "amdCause": "",
        "sipHangupCause": None, "sipHangupReason": "", "timestamp": int(NOW), "source": "telephonyd",
        "didUsed": "15551230001", "didSource": "OPTIMIZER_DID", "report": "outcome",
    }  # fmt: skip
    body.update(fields)
    body["disposition"] = body["dialStatus"]
    if "phoneNumber" in fields:
        body["didUsed"] = fields["phoneNumber"] or None
    return body


# What each recorded call must put in the outbox (None: nothing), and the result words of its
# call_log sessions in order (start stage, VICIdial's h,1 line, the argument-form h,2 line).
SCENARIOS: dict[str, tuple[dict[str, Any] | None, list[str]]] = {
    "01_ANSWER": (
        expected("1795237838.1", dialStatus="ANSWER", duration=2, dialedTime=3, ringTime=1, hangupCause=16,
                 sipHangupCause=200, sipHangupReason="OK"),
        ["STARTED", "QUEUED", "DUPLICATE"],
    ),
    "02_BUSY": (
        expected("1795237857.3", dialStatus="BUSY", hangupCause=17, sipHangupCause=486, sipHangupReason="Busy Here"),
        ["STARTED", "QUEUED", "DUPLICATE"],
    ),
    "04_CHANUNAVAIL": (
        expected("1795238008.24", dialStatus="CHANUNAVAIL", hangupCause=3),
        ["STARTED", "QUEUED", "DUPLICATE"],
    ),
    "07_AMD_SILENCE": (
        expected("1795237912.13", customerPhone="915555550007", dialStatus="ANSWER", hangupCause=16,
                 amdStatus="MACHINE", amdCause="INITIALSILENCE-2500-2500", sipHangupCause=200, sipHangupReason="OK"),
        ["STARTED", "QUEUED", "DUPLICATE"],
    ),
    "08_CALLER_HANGUP_DURING_START": (None, ["STARTED", "SKIPPED", "SKIPPED"]),
}  # fmt: skip


def call_log_sessions(scenario: str) -> list[FakeChannel]:
    channels = [FakeChannel.from_recording(p) for p in sorted(VICIDIAL_DIR.glob(f"{scenario}_agi*.txt"))]
    return [ch for ch in channels if ch.env["network_script"].startswith("call_log")]
