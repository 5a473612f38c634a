"""Resolving a call leg's outcome from its sources, and the DID Optimizer payload built from it."""

from __future__ import annotations

import json

import pytest

from telephonyd.calllog import constants as c
from telephonyd.calllog.hangup_line import HangupFields
from telephonyd.calllog.outcome import (
    StartRecord,
    VariableNames,
    dialed_number,
    end_stage_names,
    local_channel_number,
    resolve_outcome,
    to_int,
)
from telephonyd.calllog.payload import PAYLOAD_FIELDS, build_payload
from telephonyd.config import CallLogConfig
from telephonyd.calllog.handler import variable_names

NAMES = variable_names(CallLogConfig())
ENV = {
    "uniqueid": "1795237857.3",
    "extension": "h",
    "dnid": "915555550001",
    "callerid": "1010",
    "calleridname": "V1121053000000012345",
}
CHANNEL = {
    c.DIALSTATUS: "BUSY",
    c.HANGUPCAUSE: "17",
    c.DIALEDTIME: "",
    c.ANSWEREDTIME: "",
    c.TECH_CAUSE_EXPR: "SIP 486 Busy Here",
    c.CALLERID_NUM: "1010",
    c.CALLERID_NAME: "V1121053000000012345",
    c.CHANNEL_LINKEDID: "1795237857.3",
    c.CHANNEL_HANGUPSOURCE: "PJSIP/1011-00000004",
    "campaign_id": "TESTCAMP",
    "agent": "6001",
    "OPTIMIZER_DID": "15551230001",
    "lead_id": "12345",
}


def resolve(
    values: dict[str, str] | None = None,
    line: HangupFields = HangupFields(),
    start: StartRecord | None = None,
    env: dict[str, str] | None = None,
    variables: VariableNames = NAMES,
):
    return resolve_outcome(
        env=ENV if env is None else env,
        line=line,
        values=CHANNEL if values is None else values,
        start=start,
        variables=variables,
        default_campaign="DEFAULT",
    )


def payload(**kwargs) -> dict:
    outcome = resolve(**kwargs)
    assert outcome is not None
    return build_payload(outcome, source="telephonyd", timestamp=1795237858)


def test_busy_call_payload_exact() -> None:
    assert payload() == {
        "uniqueid": "1795237857.3",
        "linkedid": "1795237857.3",
        "phoneNumber": "15551230001",
        "customerPhone": "915555550001",
        "campaignId": "TESTCAMP",
        "dialStatus": "BUSY",
        "disposition": "BUSY",
        "duration": 0,
        "dialedTime": 0,
        "ringTime": 0,
        "hangupCause": 17,
        "hangupSource": "PJSIP/1011-00000004",
        "agentId": "6001",
        "leadId": "12345",
        "listId": "",
        "amdStatus": "",
        "amdCause": "",
        "sipHangupCause": 486,
        "sipHangupReason": "Busy Here",
        "timestamp": 1795237858,
        "source": "telephonyd",
        "didUsed": "15551230001",
        "didSource": "OPTIMIZER_DID",
        "report": "outcome",
    }


def test_payload_has_exactly_the_documented_fields_and_types() -> None:
    body = payload(line=HangupFields("ANSWER", "16", "3", "2", "SIP 200 OK"))
    assert tuple(body) == PAYLOAD_FIELDS
    ints = {"duration", "dialedTime", "ringTime", "hangupCause", "timestamp", "sipHangupCause"}
    for key, value in body.items():
        assert isinstance(value, int if key in ints else str), key
        assert not isinstance(value, bool)
    assert json.loads(json.dumps(body)) == body


@pytest.mark.parametrize(
    ("dialed", "answered", "ring"),
    [("3", "2", 1), ("45", "", 45), ("", "", 0), ("2", "5", 0), ("10", "10", 0), ("x", "y", 0)],
)
def test_durations(dialed: str, answered: str, ring: int) -> None:
    body = payload(values={**CHANNEL, c.DIALEDTIME: dialed, c.ANSWEREDTIME: answered})
    assert body["dialedTime"] == to_int(dialed)
    assert body["duration"] == to_int(answered)
    assert body["ringTime"] == ring


def test_values_from_the_hangup_line_win_over_channel_variables() -> None:
    line = HangupFields("ANSWER", "16", "30", "20", "SIP 200 OK")
    body = payload(values={**CHANNEL, c.DIALSTATUS: "BUSY", c.DIALEDTIME: "1", c.ANSWEREDTIME: "1"}, line=line)
    assert (body["dialStatus"], body["hangupCause"], body["dialedTime"], body["duration"], body["ringTime"]) == (
        "ANSWER",
        16,
        30,
        20,
        10,
    )
    assert (body["sipHangupCause"], body["sipHangupReason"]) == (200, "OK")


def test_empty_hangup_line_fields_fall_back_to_the_channel() -> None:
    body = payload(line=HangupFields("", "", "", "", ""))
    assert (body["dialStatus"], body["hangupCause"], body["sipHangupCause"]) == ("BUSY", 17, 486)


@pytest.mark.parametrize(
    ("line", "values"),
    [
        (HangupFields("", "127"), {**CHANNEL, c.DIALSTATUS: ""}),  # recording 08
        (HangupFields(), {c.HANGUPCAUSE: "127"}),
        (HangupFields("  ", "16"), {}),
    ],
)
def test_no_dial_status_anywhere_means_no_outcome(line: HangupFields, values: dict[str, str]) -> None:
    assert resolve(values=values, line=line) is None


def test_dial_status_is_normalised() -> None:
    assert payload(line=HangupFields(" noanswer ", "16"))["dialStatus"] == "NOANSWER"


def test_did_falls_back_to_callerid_num() -> None:
    assert payload(values={**CHANNEL, "OPTIMIZER_DID": ""})["phoneNumber"] == "1010"


def test_customer_phone_precedence() -> None:
    start = StartRecord(dialed_number="915550000007", started_at=1.0, customer_phone="")
    assert payload(start=start)["customerPhone"] == "915550000007"
    start_vars = StartRecord(dialed_number="915550000007", started_at=1.0, customer_phone="5550000007")
    assert payload(start=start_vars)["customerPhone"] == "5550000007"
    assert payload(values={**CHANNEL, "CUSTOMER_PHONE": "5559999999"}, start=start_vars)["customerPhone"] == "5559999999"
    # no start record (another node, a restart): the DNID, never Asterisk's "unknown"
    assert payload()["customerPhone"] == "915555550001"
    assert payload(env={**ENV, "dnid": "unknown"})["customerPhone"] == ""
    # VICIdial's calls are Local channels originated over AMI: no dnid, the number is in the name
    local = {**ENV, "dnid": "unknown", "extension": "h", "channel": "Local/915552345678@default-0000001c;2"}
    assert payload(env=local)["customerPhone"] == "915552345678"
    assert payload(env=local, start=start)["customerPhone"] == "915550000007"


@pytest.mark.parametrize(
    ("channel", "number"),
    [
        ("Local/915552345678@default-0000001c;2", "915552345678"),
        ("Local/915552345678@i14b-vici-control-00000012;1", "915552345678"),
        ("Local/8368@vicilab-agent-00000003;2", "8368"),
        ("Local/s@lab-agi-h-00000001;2", ""),
        ("PJSIP/1010-00000004", ""),
        ("", ""),
    ],
)
def test_local_channel_number(channel: str, number: str) -> None:
    assert local_channel_number({"channel": channel}) == number


def test_campaign_agent_lead_list_precedence_and_defaults() -> None:
    bare = {k: v for k, v in CHANNEL.items() if k not in ("campaign_id", "agent", "lead_id")}
    body = payload(values={**bare, c.CALLERID_NAME: "Ext 1010"}, env={**ENV, "calleridname": "Ext 1010"})
    assert (body["campaignId"], body["agentId"], body["leadId"], body["listId"]) == ("DEFAULT", "0", "", "")

    # the lead from VICIdial's caller code, from the channel or else from the agi block
    assert payload(values=bare)["leadId"] == "12345"
    assert payload(values={**bare, c.CALLERID_NAME: ""})["leadId"] == "12345"

    start = StartRecord("9155", 1.0, campaign="STARTCAMP", agent="7001", lead="999", list_id="101")
    body = payload(values=bare, start=start)
    assert (body["campaignId"], body["agentId"], body["leadId"], body["listId"]) == ("STARTCAMP", "7001", "999", "101")

    # channel values at hangup win over what the start stage saw; first configured name wins
    body = payload(values={**CHANNEL, "CAMPCUST": "CUST1", "list_id": "202"}, start=start)
    assert (body["campaignId"], body["agentId"], body["leadId"], body["listId"]) == ("CUST1", "6001", "12345", "202")


def test_linkedid_falls_back_to_uniqueid() -> None:
    assert payload(values={**CHANNEL, c.CHANNEL_LINKEDID: ""})["linkedid"] == "1795237857.3"


def test_amd_and_non_sip_tech_cause() -> None:
    body = payload(values={**CHANNEL, c.AMDSTATUS: "MACHINE", c.AMDCAUSE: "INITIALSILENCE-2500-2500"},
                   line=HangupFields("ANSWER", "16", "", "", "DAHDI 16"))  # fmt: skip
    assert (body["amdStatus"], body["amdCause"]) == ("MACHINE", "INITIALSILENCE-2500-2500")
    assert (body["sipHangupCause"], body["sipHangupReason"]) == (None, "")


@pytest.mark.parametrize(
    ("env", "number"),
    [
        ({"extension": "915555550001", "dnid": "915555550001"}, "915555550001"),
        ({"extension": "915555550001", "dnid": "unknown"}, "915555550001"),  # AMI-originated Local
        ({"extension": "s", "dnid": "5551234"}, "5551234"),
        ({"extension": "s", "dnid": "unknown"}, ""),
        ({"extension": "+4930123", "dnid": ""}, "+4930123"),
    ],
)
def test_dialed_number(env: dict[str, str], number: str) -> None:
    assert dialed_number(env) == number


def test_end_stage_reads_every_configured_name_once() -> None:
    names = end_stage_names(NAMES)
    assert len(names) == len(set(names))
    for name in (*NAMES.all(), c.DIALSTATUS, c.TECH_CAUSE_EXPR, c.CHANNEL_HANGUPSOURCE):
        assert name in names
    assert "OPTIMIZER_DID" not in NAMES.start_stage()


@pytest.mark.parametrize(("text", "value"), [("", 0), ("17", 17), (" 3 ", 3), ("3.9", 3), ("abc", 0), ("-1", -1)])
def test_to_int(text: str, value: int) -> None:
    assert to_int(text) == value


@pytest.mark.parametrize(("set_vars", "did", "source"), [
    ({"OPTIMIZER_DID": "15551230001", "DID_NUMBER": "15559990000"}, "15551230001", "OPTIMIZER_DID"),
    ({"OPTIMIZER_DID": "", "DID_NUMBER": "15559990000"}, "15559990000", "DID_NUMBER"),  # the seed's variable
    ({"OPTIMIZER_DID": ""}, "1010", "CALLERID(num)"),  # no DID variable: said so, not silently
])
def test_did_used_names_where_the_did_came_from(set_vars, did, source) -> None:
    body = payload(values={**CHANNEL, **set_vars})
    assert body["didUsed"] == did == body["phoneNumber"] and body["didSource"] == source


def test_no_did_at_all_is_none() -> None:
    body = payload(values={**CHANNEL, "OPTIMIZER_DID": "", c.CALLERID_NUM: ""})
    assert body["didUsed"] is None and body["didSource"] == "none" and body["report"] == "outcome"


def test_selection_fields_follow_the_payload() -> None:
    from dataclasses import dataclass

    from telephonyd.calllog.payload import SELECTION_FIELDS

    @dataclass
    class Sel:
        did: str | None
        request_id: str
        result: str

    outcome = resolve()
    assert outcome is not None
    plain = build_payload(outcome, source="t", timestamp=1)
    assert tuple(plain) == PAYLOAD_FIELDS
    chosen = build_payload(outcome, source="t", timestamp=1, selection=Sel("14155550123", "1795.1", "SELECTED"))
    assert tuple(chosen) == PAYLOAD_FIELDS + SELECTION_FIELDS
    assert {k: chosen[k] for k in ("didUsed", *SELECTION_FIELDS)} == {
        "didUsed": "14155550123", "didRequestId": "1795.1", "didSelection": "SELECTED"}  # fmt: skip
    failed = build_payload(outcome, source="t", timestamp=1, selection=Sel(None, "1795.1", "FAILED"))
    assert failed["didUsed"] == outcome.did == failed["phoneNumber"]
