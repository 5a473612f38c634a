"""Where telephonyd decides to differ from the PHP relay, one class per decision (README, "Ameyo:
where telephonyd differs from the relay").

Each class has a reason and ``apply(scenario, requests)``: None when the scenario's callbacks do not
meet the class's condition (read from the inputs only); otherwise the requests telephonyd must send
instead, derived from the relay's requests. ``apply`` raises `NotExplained` when the relay's requests
do not have the shape the class explains, so a class never absorbs a difference it was not written
for. Requests are ``(api, fields)`` with times of the arrival instant written ``<received>``.

Roles of a two-phone attempt follow telephonyd's rules: phone 2 when the dial index is >= 1 or the
dialled phone is the second phone; phone 1 when the dialled phone is the first; otherwise by arrival
(phone-2 inference from a stored phone-1 state).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.tools.ameyo_scenarios import END, START, hangup_codes

Request = tuple[str, dict[str, Any]]
RECEIVED = "<received>"
TOPS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")

#: How telephonyd reads each time value of the corpus that is not already ``YYYY-MM-DD HH:mm:ss``
#: (decision ``times_read``): the instant in Asia/Tokyo, or the arrival time when not understood.
TIME_READINGS = {
    "2026/01/20 11:16:41": "2026-01-20 11:16:41",
    "2026/01/20 11:19:02": "2026-01-20 11:19:02",
    "2026-01-20T11:16:41": "2026-01-20 11:16:41",
    "2026-01-20 11:16:41 +0900": "2026-01-20 11:16:41",
    "2026/01/20 11:16:41 +0900": "2026-01-20 11:16:41",
    "2026/01/20 11:16:41  0900": "2026-01-20 11:16:41",  # '+' left unencoded: decoded as a space
    "2026/01/20 02:16:41 +0000": "2026-01-20 11:16:41",
    "2026/01/20 11:16:41 +09:00": "2026-01-20 11:16:41",
    "2026/1/2 3:04:05 +0900": "2026-01-02 03:04:05",
    "2026-1-20 1:16:41": "2026-01-20 01:16:41",
    "1768875401": "2026-01-20 11:16:41",
    "20/01/2026 11:16:41": RECEIVED,
    "20/01/2026 11:19:02": RECEIVED,
    "2026-02-30 11:16:41": RECEIVED,
    "2026/02/30 11:16:41 +0900": RECEIVED,
    "2026-01-20": RECEIVED,
    "garbage": RECEIVED,
}
FINAL_FOR_PHONE1 = {"CALL_DROP"}


class NotExplained(AssertionError):
    """The relay's requests are not what this decision explains."""


def params(callback: dict[str, Any]) -> dict[str, str]:
    """The query as PHP's ``$_GET`` and the relay's ``get_param`` read it: last value wins, trimmed."""
    pairs = (urllib.parse.parse_qsl(callback["raw_query"], keep_blank_values=True)
             if "raw_query" in callback else callback["query"])
    out: dict[str, str] = {}
    for name, value in pairs:
        out[name] = value.strip()
    return out


def status(p: dict[str, str]) -> tuple[str | None, str]:
    """(status, source) as the documented rules give it: ``disp``, ``code``, ``unmapped`` or ``none``."""
    table = {code: st for code, _, st in hangup_codes()}
    code, disp = p.get("hangupCauseCode", ""), p.get("systemDisposition", "")
    if disp:
        return ("PROVIDER_FAILURE_403" if disp == "PROVIDER_FAILURE" and code == "403" else disp), "disp"
    if code in table:
        return ("PROVIDER_FAILURE_403" if code == "403" else table[code]), "code"
    return ("UNKNOWN", "unmapped") if code else (None, "none")


def phones(p: dict[str, str]) -> list[str]:
    try:
        data = json.loads(p.get("phoneList", "") or "null")
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("phoneList"), list):
        raw = ["Array" if isinstance(e, (list, dict)) else "" if e is None else str(e) for e in data["phoneList"]]
    else:
        dialled = p.get("dialedPhone") or p.get("dialledPhone") or p.get("dstPhone", "")
        raw = [p.get("phone1", ""), p.get("phone2", ""), p.get("cstmPhone", ""), dialled]
    out: list[str] = []
    for phone in raw:
        if phone and phone != "0" and phone not in out:
            out.append(phone)
    return out


def dialled(p: dict[str, str]) -> str:
    return p.get("dialedPhone") or p.get("dialledPhone", "")


def role(p: dict[str, str], earlier_phone1: bool) -> int:
    """1 or 2 in a two-phone call (0: one phone); ``earlier_phone1``: a phone 1 of the call came before."""
    ph = phones(p)
    if len(ph) < 2:
        return 0
    index = p.get("shareablePhonesDialIndex", "")
    if re.fullmatch(r"\d+(\.\d*)?([eE]\d+)?", index) and int(float(index)) >= 1:
        return 2
    if dialled(p) == ph[1]:
        return 2
    if dialled(p) == ph[0]:
        return 1
    return 2 if earlier_phone1 else 1


def read_time(p: dict[str, str], *names: str) -> str:
    for name in names:
        raw = p.get(name, "")
        if raw:
            return TIME_READINGS[raw] if raw in TIME_READINGS or not TOPS_TIME.match(raw) else raw
    return RECEIVED


def connected(p: dict[str, str]) -> bool:
    return (status(p)[0] or "").upper() == "CONNECTED"


def routable_connected(p: dict[str, str]) -> bool:
    target = p.get("dialedPhone") or p.get("dialledPhone") or p.get("dstPhone") or p.get("cstmPhone")
    return bool(p.get("customerCRTId") and p.get("userId") and target)


def not_answer(p: dict[str, str], e1: str, e2: str | None = None) -> Request:
    fields = {"callId": int(p["unique_id"]), "callTime": read_time(p, "callTime"), "errorInfo1": e1}
    if e2 is not None:
        fields["errorInfo2"] = e2
    return "createNotAnswer", fields


def call_end(p: dict[str, str], error_info: str | None = None) -> Request:
    fields = {"callId": int(p["unique_id"]), "callStartTime": read_time(p, "callStartTime", "callConnectedTime"),
              "callEndTime": read_time(p, "callEndTime"), "subCtiHistoryId": p["customerCRTId"],
              "targetTel": p.get("dialedPhone") or p.get("dialledPhone") or p.get("dstPhone") or p["cstmPhone"],
              "predictiveStaffId": p["userId"]}
    if error_info is not None:
        fields["errorInfo"] = error_info
    return "createCallEnd", fields


def phone2_request(p2: dict[str, str], phone1_status: str | None) -> Request:
    if connected(p2):
        return call_end(p2, phone1_status)
    return not_answer(p2, phone1_status or "UNKNOWN", status(p2)[0])


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise NotExplained(what)


def attempts(scenario: dict[str, Any]) -> list[tuple[int, dict[str, str]]]:
    """(role, params) of each /index.php callback, in order."""
    out: list[tuple[int, dict[str, str]]] = []
    for cb in scenario["callbacks"]:
        if cb["path"] == END:
            p = params(cb)
            out.append((role(p, any(r == 1 for r, _ in out)), p))
    return out


# -- the decisions -----------------------------------------------------------------------------------


def strict_call_id(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    (cb, *more) = scenario["callbacks"]
    p = params(cb)
    names = ("unique_id",) if cb["path"] == END else ("callId", "cs_unique_id", "crm_push_generated_time", "sessionId")
    raw = next((p[n] for n in names if p.get(n)), "")
    if more or not raw or (raw.isdigit() and int(raw) < 2**63) or not requests:
        return None
    expect(len(requests) == 1 and requests[0][1]["callId"] != 0, "the relay sent its cast of the id")
    return []


def target_tel_fallbacks(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    (cb, *more) = scenario["callbacks"]
    p = params(cb)
    if more:
        return None
    if cb["path"] == START:
        target = p.get("phone") or p.get("dialledPhone") or p.get("dstPhone")
        if p.get("displayPhone") or not target or not p.get("callId", "").isdigit() or not p.get("userId"):
            return None
        expect(requests == [], "the relay sent nothing without displayPhone")
        return [("createCallStart", {"callId": int(p["callId"]), "predictiveStaffId": p["userId"], "targetTel": target})]
    if not connected(p) or dialled(p) or not routable_connected(p):
        return None
    expect(requests == [], "the relay sent nothing without dialedPhone/dialledPhone")
    return [call_end(p)]


def times_read(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    (cb, *more) = scenario["callbacks"]
    p = params(cb)
    names = ("callTime", "callStartTime", "callEndTime", "callConnectedTime")
    if more or cb["path"] != END or not requests or all(
            p.get(n, "") not in TIME_READINGS and TOPS_TIME.match(p.get(n, "") or "2026-01-20 00:00:00")
            for n in names):
        return None
    expect(len(requests) == 1, "the relay sent one request")
    api, fields = requests[0]
    rebuilt = call_end(p) if api == "createCallEnd" else not_answer(p, fields["errorInfo1"], fields.get("errorInfo2"))
    return [rebuilt]


def distinct_phones(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    (cb, *more) = scenario["callbacks"]
    p = params(cb)
    listed = [p.get(n, "") for n in ("phone1", "phone2", "cstmPhone") if p.get(n)]
    if more or "phoneList" in p or len(listed) == len(set(listed)):
        return None
    expect(len(requests) == 1 and requests[0][1].get("errorInfo2") == requests[0][1]["errorInfo1"],
           "the relay took the repeated number for a second phone")
    api, fields = requests[0]
    return [(api, {k: v for k, v in fields.items() if k != "errorInfo2"})]


def negative_dial_index(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    (cb, *more) = scenario["callbacks"]
    p = params(cb)
    if more or not p.get("shareablePhonesDialIndex", "").startswith("-"):
        return None
    st = status(p)[0]
    if connected(p):
        expect(requests == [], "the relay found no action for a negative index")
    else:
        expect(requests == [not_answer(p, st)], "the relay sent phone 1's form")
    expect(role(p, False) == 2, "the attempt is phone 2 by its dialled phone")
    return [phone2_request(p, None)]


def phone1_status_not_guessed(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    roles = attempts(scenario)
    firsts = [p for r, p in roles[:1] if r == 2 and not connected(p) and status(p)[1] == "code"
              and not p.get("shareablePhonesDialIndex", "").startswith("-")]  # see negative_dial_index
    if not firsts:
        return None
    st = status(firsts[0])[0]
    index = next((i for i, (api, f) in enumerate(requests)
                  if api == "createNotAnswer" and f.get("errorInfo1") == st == f.get("errorInfo2")), None)
    expect(index is not None, "the relay copied phone 2's status into errorInfo1")
    out = list(requests)
    out[index] = ("createNotAnswer", {**out[index][1], "errorInfo1": "UNKNOWN"})
    return out


def unmapped_code_forwarded(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    roles = attempts(scenario)
    if not any(status(p)[1] == "unmapped" for _, p in roles):
        return None
    if len(roles) == 1 and roles[0][0] == 0:
        expect(requests == [], "the relay sent nothing for a code outside its table")
        return [not_answer(roles[0][1], "UNKNOWN")]
    out = []
    phone1 = next((p for r, p in roles if r == 1), None)
    phone1_unmapped = phone1 is not None and status(phone1)[1] == "unmapped" and roles[0][0] == 1
    for api, fields in requests:
        fields = dict(fields)
        if api == "createNotAnswer" and "errorInfo2" not in fields and any(
                r == 2 and status(p)[1] == "unmapped" for r, p in roles):
            fields["errorInfo2"] = "UNKNOWN"
        if phone1_unmapped and api == "createNotAnswer":
            fields["errorInfo1"] = "UNKNOWN"
        if phone1_unmapped and api == "createCallEnd":
            expect("errorInfo" not in fields, "the relay stored an empty phone-1 status")
            fields["errorInfo"] = "UNKNOWN"
        out.append((api, {k: fields[k] for k in sorted(fields, key=list(_ORDER).index)}))
    return out


def phone1_repeat_is_not_phone2(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    cbs = scenario["callbacks"]
    roles = attempts(scenario)
    if len(cbs) != 3 or cbs[0] != cbs[1] or [r for r, _ in roles] != [1, 1, 2] or dialled(roles[0][1]) == "":
        return None
    p1, p2 = roles[0][1], roles[2][1]
    expect(requests == [not_answer(p1, status(p1)[0], status(p1)[0])], "the relay took the repeat for phone 2")
    return [phone2_request(p2, status(p1)[0])]


def phone1_waits_for_phone2(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    roles = attempts(scenario)
    if len(roles) < 2 or roles[0][0] != 1:
        return None
    p1 = roles[0][1]
    st1, source = status(p1)
    if connected(p1) or source != "disp" or st1.upper() in FINAL_FOR_PHONE1:
        return None
    p2 = next((p for r, p in roles[1:] if r == 2), None)
    expect(requests == [not_answer(p1, st1)], "the relay sent phone 1 at once and dropped phone 2")
    if p2 is None or (connected(p2) and not routable_connected(p2)):
        return None  # phone 2 cannot be routed: phone 1 goes alone at expiry, the same request
    return [phone2_request(p2, st1)]


def phone1_sent_at_expiry(scenario: dict[str, Any], requests: list[Request]) -> list[Request] | None:
    roles = attempts(scenario)
    if not roles or roles[0][0] != 1:
        return None
    p1 = roles[0][1]
    st1, source = status(p1)
    if connected(p1) or source not in ("code", "unmapped"):
        return None
    later = [p for r, p in roles[1:] if r == 2 and (not connected(p) or routable_connected(p)) and status(p)[0]]
    if later:
        return None
    expect(all(f["callId"] != int(p1["unique_id"]) for _, f in requests), "the relay kept phone 1 for good")
    return [*requests, not_answer(p1, st1)]


@dataclass(frozen=True)
class Decision:
    name: str
    reason: str
    apply: Callable[[dict[str, Any], list[Request]], list[Request] | None]


_ORDER = ("callId", "callTime", "callStartTime", "callEndTime", "subCtiHistoryId", "targetTel", "predictiveStaffId",
          "errorInfo", "errorInfo1", "errorInfo2")

DECISIONS = [
    Decision("strict_call_id", "a call id that is not digits (12abc, 1.5, -5, 1e3) or past a signed 64-bit "
             "number is refused with 400; the relay cast it to another call's id", strict_call_id),
    Decision("target_tel_fallbacks", "targetTel falls back to phone/dialledPhone/dstPhone (call start) and "
             "dstPhone/cstmPhone (call end); the relay dropped such callbacks", target_tel_fallbacks),
    Decision("times_read", "times are sent as YYYY-MM-DD HH:mm:ss: every form Ameyo uses is read, anything "
             "else becomes the arrival time with a warning; the relay forwarded them as written", times_read),
    Decision("distinct_phones", "the same number twice is one phone; the relay made it a two-phone call whose "
             "phone 1 repeats phone 2's status", distinct_phones),
    Decision("negative_dial_index", "a negative dial index counts as absent (phone 2 inferred from the dialled "
             "phone); the relay sent phone 1's form or nothing", negative_dial_index),
    Decision("phone1_repeat_is_not_phone2", "a repeat of the phone-1 callback (dialled phone = first phone) is "
             "a duplicate; the relay took it for phone 2 and then dropped the real phone 2",
             phone1_repeat_is_not_phone2),
    Decision("phone1_waits_for_phone2", "phone 1 with a systemDisposition that is not final waits for phone 2 "
             "and both go in one request; the relay sent phone 1 at once and dropped phone 2 at its gate",
             phone1_waits_for_phone2),
    Decision("unmapped_code_forwarded", "a code outside the table is forwarded as UNKNOWN (and counted); the "
             "relay sent nothing, or left the field out, or used phone 2's status", unmapped_code_forwarded),
    Decision("phone1_status_not_guessed", "phone 2 without a stored phone 1 reports errorInfo1 UNKNOWN; the "
             "relay copied phone 2's own status", phone1_status_not_guessed),
    Decision("phone1_sent_at_expiry", "a phone 1 whose phone 2 never comes is sent alone after "
             "phone1_state_ttl_s; the relay kept it for good", phone1_sent_at_expiry),
]
