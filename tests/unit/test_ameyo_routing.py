"""Routing of Ameyo callbacks (pure): every rule of the relay, each decision, each rejection."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from telephonyd.ameyo.routing import (
    ROOT_KEYS,
    CallbackRejected,
    RoutingRules,
    bounded_key,
    route_call_end,
    route_call_start,
)
from telephonyd.ameyo.times import parse_time, tops_time

TOKYO = ZoneInfo("Asia/Tokyo")
RULES = RoutingRules(zone=TOKYO, phone1_final=frozenset({"CALL_DROP"}))
# 2026-03-06 04:53:54 UTC = 13:53:54 in Tokyo
RECEIVED = datetime(2026, 3, 6, 4, 53, 54, tzinfo=UTC)
NOW_TOKYO = "2026-03-06 13:53:54"
TWO_PHONES = '{"phoneList":["09011112222","08033334444"]}'

END_BASE = {"unique_id": "99999999", "customerId": "100", "crtObjectId": "crt-1", "userId": "agent7",
            "dialledPhone": "09011112222"}


def end(**extra: str) -> dict[str, str]:
    return {**END_BASE, **extra}


# (name, params, flow, api or None, fields expected in the request (None = waiting), phone1_field)
ROUTES = [
    ("rule 1: connected, one phone",
     end(systemDisposition="CONNECTED", customerCRTId="d336-1", callConnectedTime="2026/01/20 11:16:41 +0900"),
     "connected", "createCallEnd",
     {"callId": 99999999, "callStartTime": "2026-01-20 11:16:41", "callEndTime": NOW_TOKYO,
      "subCtiHistoryId": "d336-1", "targetTel": "09011112222", "predictiveStaffId": "agent7"}, None),
    ("rule 1: connected on phone 1 of two (dial index 0)",
     end(systemDisposition="connected", customerCRTId="d336-1", phoneList=TWO_PHONES,
         callStartTime="2026-01-20 11:16:41", callEndTime="2026-01-20 11:20:00"),
     "connected", "createCallEnd",
     {"callId": 99999999, "callStartTime": "2026-01-20 11:16:41", "callEndTime": "2026-01-20 11:20:00",
      "subCtiHistoryId": "d336-1", "targetTel": "09011112222", "predictiveStaffId": "agent7"}, None),
    ("rule 2: connected on phone 2",
     end(systemDisposition="CONNECTED", customerCRTId="d336-2", phoneList=TWO_PHONES, shareablePhonesDialIndex="1",
         dialledPhone="08033334444", callConnectedTime="2026/01/20 02:16:41 +0000"),
     "connected_phone2", "createCallEnd",
     {"callId": 99999999, "callStartTime": "2026-01-20 11:16:41", "callEndTime": NOW_TOKYO,
      "subCtiHistoryId": "d336-2", "targetTel": "08033334444", "predictiveStaffId": "agent7"}, "errorInfo"),
    ("rule 3: not connected, one phone",
     end(systemDisposition="NUMBER_TEMP_FAILURE", customerCRTId="d336-1",
         phoneList='{"phoneList":["03000000001"]}'),
     "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "NUMBER_TEMP_FAILURE"}, None),
    ("rule 3: the same number twice in phoneList is one phone",
     end(systemDisposition="NO_ANSWER", phoneList='{"phoneList":["0901","0901",""]}', callTime="2026-03-06 13:50:00"),
     "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": "2026-03-06 13:50:00", "errorInfo1": "NO_ANSWER"}, None),
    ("rule 4: phone 1 of two not connected waits",
     end(systemDisposition="PROVIDER_TEMP_FAILURE", phoneList=TWO_PHONES),
     "phone1_wait", None, None, None),
    ("rule 4: a final phone-1 disposition is sent at once",
     end(systemDisposition="CALL_DROP", phoneList=TWO_PHONES),
     "phone1_final", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "CALL_DROP"}, None),
    ("rule 5: phone 2 not connected",
     end(systemDisposition="BUSY", phoneList=TWO_PHONES, shareablePhonesDialIndex="1"),
     "not_answer_phone2", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo2": "BUSY"}, "errorInfo1"),
    ("two phones from phone1/phone2 when phoneList is absent",
     {"unique_id": "42", "customerId": "7", "phone1": "0901", "phone2": "0802", "systemDisposition": "NO_ANSWER"},
     "phone1_wait", None, None, None),
    ("status from hangupCauseCode when systemDisposition is empty",
     end(hangupCauseCode="486"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "BUSY"}, None),
    ("an unknown systemDisposition is forwarded as written",
     end(systemDisposition="Something_New", hangupCauseCode="403"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "Something_New"}, None),
    ("PROVIDER_FAILURE with code 403 is PROVIDER_FAILURE_403",
     end(systemDisposition="PROVIDER_FAILURE", hangupCauseCode="403"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "PROVIDER_FAILURE_403"}, None),
    ("code 403 alone is PROVIDER_FAILURE_403",
     end(hangupCauseCode="403"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "PROVIDER_FAILURE_403"}, None),
    ("a code outside the table is forwarded as UNKNOWN",
     end(hangupCauseCode="999"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "UNKNOWN"}, None),
    ("SIT 760 is ATTEMPT_FAILED as in the relay",
     end(hangupCauseCode="760"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "ATTEMPT_FAILED"}, None),
    ("a malformed phoneList falls back to the phone parameters (one phone here)",
     end(systemDisposition="NO_ANSWER", phoneList="{not json", callTime="2026-03-06 13:50:00"),
     "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": "2026-03-06 13:50:00", "errorInfo1": "NO_ANSWER"}, None),
    ("a time in no known form is replaced by the arrival time",
     end(systemDisposition="NO_ANSWER", callTime="06/03/2026"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "NO_ANSWER"}, None),
    ("a dialled phone equal to the second phone makes phone 2 without the dial index",
     end(systemDisposition="BUSY", phoneList=TWO_PHONES, dialledPhone="08033334444"),
     "not_answer_phone2", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo2": "BUSY"}, "errorInfo1"),
    ("a dial index PHP reads as 1 (1.5)",
     end(systemDisposition="BUSY", phoneList=TWO_PHONES, shareablePhonesDialIndex="1.5"),
     "not_answer_phone2", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo2": "BUSY"}, "errorInfo1"),
    ("cstmPhone is a targetTel fallback",
     {"unique_id": "5", "customerId": "1", "userId": "u", "customerCRTId": "c", "cstmPhone": "0705",
      "systemDisposition": "CONNECTED"},
     "connected", "createCallEnd",
     {"callId": 5, "callStartTime": NOW_TOKYO, "callEndTime": NOW_TOKYO, "subCtiHistoryId": "c",
      "targetTel": "0705", "predictiveStaffId": "u"}, None),
    ("leading zeros of unique_id do not make another call",
     end(unique_id="0099999999", systemDisposition="NO_ANSWER"), "not_answer", "createNotAnswer",
     {"callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "NO_ANSWER"}, None),
]


@pytest.mark.parametrize(("name", "params", "flow", "api", "fields", "phone1_field"), ROUTES, ids=[r[0] for r in ROUTES])
def test_call_end_routes(name, params, flow, api, fields, phone1_field):
    route = route_call_end(params, RULES, RECEIVED)
    assert route.flow == flow
    assert route.phone1_field == phone1_field
    if api is None:
        assert route.request is None
        assert route.expiry_request is not None
        assert route.expiry_request.fields["errorInfo1"] == route.status
        return
    assert route.request is not None and route.request.api == api
    assert list(route.request.body) == [ROOT_KEYS[api]]
    assert route.request.fields == fields


def test_phone2_fills_the_stored_phone1_status_or_unknown():
    phone2 = route_call_end(end(systemDisposition="BUSY", phoneList=TWO_PHONES, shareablePhonesDialIndex="1"),
                            RULES, RECEIVED)
    assert phone2.complete("PROVIDER_TEMP_FAILURE").fields == {
        "callId": 99999999, "callTime": NOW_TOKYO, "errorInfo1": "PROVIDER_TEMP_FAILURE", "errorInfo2": "BUSY"}
    assert phone2.complete(None).fields["errorInfo1"] == "UNKNOWN"
    connected2 = route_call_end(end(systemDisposition="CONNECTED", customerCRTId="c", phoneList=TWO_PHONES,
                                    shareablePhonesDialIndex="2"), RULES, RECEIVED)
    assert "errorInfo" not in connected2.complete(None).fields  # optional: left out, as the relay
    assert connected2.complete("NO_ANSWER").fields["errorInfo"] == "NO_ANSWER"


def test_phone1_and_phone2_share_gate_state_and_outbox_keys():
    phone1 = route_call_end(end(systemDisposition="NO_ANSWER", phoneList=TWO_PHONES), RULES, RECEIVED)
    phone2 = route_call_end(end(systemDisposition="BUSY", phoneList=TWO_PHONES, shareablePhonesDialIndex="1"),
                            RULES, RECEIVED)
    assert phone1.gate_key == phone2.gate_key == "end|crt-1|100|99999999"
    assert phone1.state_key == phone2.state_key == "100|99999999"
    assert not phone1.phone2 and phone2.phone2
    # The phone-1 expiry send and the combined send are one logical request: one outbox key.
    assert phone1.expiry_request.key == phone2.request.key == "createNotAnswer|99999999|100"


def test_largest_call_id_is_kept_exactly():
    route = route_call_end(end(unique_id="09223372036854775807", systemDisposition="NO_ANSWER"), RULES, RECEIVED)
    assert route.request.fields["callId"] == 2**63 - 1 and route.call_id == "9223372036854775807"


def test_gate_key_falls_back_to_customer_crt_id():
    route = route_call_end({**end(systemDisposition="NO_ANSWER"), "crtObjectId": "", "customerCRTId": "d9"},
                           RULES, RECEIVED)
    assert route.gate_key == "end|d9|100|99999999"


REJECTIONS = [
    ({k: v for k, v in end(systemDisposition="NO_ANSWER").items() if k != "unique_id"}, "unique_id"),
    (end(unique_id="12ab", systemDisposition="NO_ANSWER"), "unique_id"),
    (end(unique_id="１２３", systemDisposition="NO_ANSWER"), "unique_id"),  # full-width digits
    (end(systemDisposition="CONNECTED"), "customerCRTId"),
    (end(systemDisposition="CONNECTED", customerCRTId="c", userId=""), "userId"),
    ({"unique_id": "1", "userId": "u", "customerCRTId": "c", "systemDisposition": "CONNECTED"}, "dialledPhone"),
    (end(), "systemDisposition"),
    (end(unique_id="9223372036854775808", systemDisposition="NO_ANSWER"), "unique_id"),  # > 2**63 - 1
    (end(unique_id="0", systemDisposition="NO_ANSWER"), "unique_id"),  # the relay sends nothing for 0
    (end(unique_id="000", systemDisposition="NO_ANSWER"), "unique_id"),
]


@pytest.mark.parametrize(("params", "field"), REJECTIONS)
def test_call_end_rejections_name_the_field(params, field):
    with pytest.raises(CallbackRejected) as info:
        route_call_end(params, RULES, RECEIVED)
    assert info.value.field == field


def test_call_start():
    route = route_call_start({"callId": "", "cs_unique_id": "777", "userId": "agent7", "displayPhone": "",
                              "phone": "0901"}, RULES)
    assert route.flow == "call_start" and route.channel == "call_start"
    assert route.request.api == "createCallStart"
    assert route.request.body == {"predictiveCallCreateCallStart": {"callId": 777, "predictiveStaffId": "agent7",
                                                                    "targetTel": "0901"}}
    assert route.gate_key == "start|777|agent7|0901"
    assert route.decision["callId_from"] == "cs_unique_id"


@pytest.mark.parametrize(("params", "field"), [
    ({"userId": "u", "displayPhone": "1"}, "callId"),
    ({"sessionId": "abc-def", "userId": "u", "displayPhone": "1"}, "sessionId"),
    ({"callId": "1", "displayPhone": "1"}, "userId"),
    ({"callId": "1", "userId": "u"}, "displayPhone"),
])
def test_call_start_rejections(params, field):
    with pytest.raises(CallbackRejected) as info:
        route_call_start(params, RULES)
    assert info.value.field == field


def test_hangup_code_table():
    table = {code: status for code, (_, status) in RULES.hangup_codes.items()}
    assert len(table) == 126
    assert table["16"] == "CALL_HANGUP"
    assert {table[c] for c in ("17", "18", "19", "486", "600")} == {"BUSY"}
    assert {table[c] for c in ("0", "34", "408", "480", "487", "503")} == {"PROVIDER_TEMP_FAILURE"}
    assert {table[c] for c in ("1", "5", "404")} == {"NUMBER_FAILURE"}
    assert table["21"] == table["603"] == "NUMBER_TEMP_FAILURE"
    assert [table[c] for c in ("760", "761", "762", "763")] == ["ATTEMPT_FAILED", "NUMBER_FAILURE",
                                                                 "ATTEMPT_FAILED", "ATTEMPT_FAILED"]


def test_long_keys_are_hashed_to_fit_an_index():
    key = bounded_key("end", "x" * 300, "1")
    assert key.startswith("sha256:") and len(key) <= 150
    assert bounded_key("end", "x" * 300, "1") == key


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026/01/20 11:16:41 +0900", "2026-01-20 11:16:41"),
    ("2026/01/20 11:16:41  0900", "2026-01-20 11:16:41"),  # '+' decoded as a space in the query
    ("2026/01/20 02:16:41 +0000", "2026-01-20 11:16:41"),
    ("2026-01-20 11:16:41", "2026-01-20 11:16:41"),  # naive: the configured zone
    ("2026-01-20T02:16:41Z", "2026-01-20 11:16:41"),
    ("2026-01-20T11:16:41.250+09:00", "2026-01-20 11:16:41"),
    ("1768875401", "2026-01-20 11:16:41"),
    ("1768875401000", "2026-01-20 11:16:41"),
])
def test_time_forms(raw, expected):
    assert tops_time(parse_time(raw, TOKYO), TOKYO) == expected


@pytest.mark.parametrize("raw", ["", "now", "2026/13/01 00:00:00", "2026-01-20 25:00:00", "20260120",
                                 "1999-12-31 23:59:59", "2026-01-20 11:16:41 +2500", "123"])
def test_bad_times_raise(raw):
    with pytest.raises(ValueError):
        parse_time(raw, TOKYO)


def test_times_follow_the_configured_zone():
    utc = RoutingRules(zone=ZoneInfo("UTC"))
    route = route_call_end(end(systemDisposition="NO_ANSWER", callTime="2026/01/20 11:16:41 +0900"), utc, RECEIVED)
    assert route.request.fields["callTime"] == "2026-01-20 02:16:41"
