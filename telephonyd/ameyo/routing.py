"""Routing of Ameyo dialer callbacks to TopS.II requests (pure: no I/O, no clock).

The rules and field names come from the relay this replaces (see docs in ``upstreams.md``):

Call start (``/call_start.php``): ``callId`` = first non-empty of ``callId``, ``cs_unique_id``,
``crm_push_generated_time``, ``sessionId`` (must be numeric: TopS.II takes a number);
``predictiveStaffId`` = ``userId``; ``targetTel`` = ``displayPhone``, else ``phone``,
``dialledPhone``, ``dstPhone``. One createCallStart.

Call end / not answered (``/index.php``): the status of this attempt is ``systemDisposition`` when it
is a known status, else ``hangupCauseCode`` through `HANGUP_CODE_STATUS`. Connected means the status
is CONNECTED. Two or more distinct phones (``phoneList``, else phone1/phone2/cstmPhone/dialled phone)
make the two-phone flow; ``shareablePhonesDialIndex`` (default 0) says which phone this attempt
dialled. Rules:

1. connected (one phone, or dial index 0) -> createCallEnd, ``subCtiHistoryId`` = ``customerCRTId``;
2. connected, two phones, dial index >= 1 -> createCallEnd with ``errorInfo`` = stored phone-1 status;
3. not connected, one phone -> createNotAnswer with ``errorInfo1`` = this status;
4. not connected, two phones, dial index 0 -> store the phone-1 status and wait for phone 2, unless the
   status is final for phone 1 (``phone1_final_dispositions``): then rule 3 at once;
5. not connected, two phones, dial index >= 1 -> createNotAnswer with ``errorInfo1`` = stored phone-1
   status and ``errorInfo2`` = this status.

A stored phone-1 status that is missing reads ``UNKNOWN``. A callback that cannot be routed raises
`CallbackRejected` naming the query parameter at fault.

Keys: the dedupe gate key is ``end|crtObjectId|customerId|callId`` (``crtObjectId`` falls back to
``customerCRTId``) or ``start|callId|userId|displayPhone``; phone-1 state is keyed by
``customerId|callId``; the outbox key is ``<api>|callId|customerId`` (call start:
``createCallStart|callId|userId|targetTel``), so one logical TopS.II request is enqueued at most once
whichever callback (phone 2, a late duplicate, the phone-1 expiry) produces it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from .times import parse_time, tops_time

API_CALL_START = "createCallStart"
API_CALL_END = "createCallEnd"
API_NOT_ANSWER = "createNotAnswer"

ROOT_KEYS = {
    API_CALL_START: "predictiveCallCreateCallStart",
    API_CALL_END: "predictiveCallCreateCallEnd",
    API_NOT_ANSWER: "predictiveCallCreateNotAnswer",
}

CONNECTED = "CONNECTED"
UNKNOWN = "UNKNOWN"

KNOWN_STATUSES = frozenset({
    "CONNECTED", "CALL_DROP", "CALL_HANGUP", "NO_ANSWER", "PROVIDER_FAILURE", "BUSY",
    "PROVIDER_TEMP_FAILURE", "NUMBER_FAILURE", "CALL_NOT_PICKED", "ATTEMPT_FAILED", "NUMBER_TEMP_FAILURE",
})

#: ``hangupCauseCode`` (Q.850 or SIP) -> status, used when ``systemDisposition`` is empty or unknown.
#: The relay's table; it names no status for the SIT codes 760-763 (special information tones: the
#: network says the number cannot be reached), which are mapped to NUMBER_FAILURE here.
HANGUP_CODE_STATUS: dict[int, str] = {
    16: "CALL_HANGUP",
    17: "BUSY", 18: "BUSY", 19: "BUSY", 486: "BUSY", 600: "BUSY",
    404: "NUMBER_FAILURE",
    408: "PROVIDER_TEMP_FAILURE", 480: "PROVIDER_TEMP_FAILURE", 487: "PROVIDER_TEMP_FAILURE",
    503: "PROVIDER_TEMP_FAILURE",
    403: "PROVIDER_FAILURE_403",
    603: "NUMBER_TEMP_FAILURE",
    760: "NUMBER_FAILURE", 761: "NUMBER_FAILURE", 762: "NUMBER_FAILURE", 763: "NUMBER_FAILURE",
}

_MAX_KEY = 150
#: Largest callId: a signed 64-bit integer (TopS.II reads it as a number).
_MAX_CALL_ID = 2**63 - 1


class CallbackRejected(ValueError):
    """The callback cannot be routed; ``field`` is the query parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RoutingRules:
    """What routing needs from ``ameyo`` config: the zone for times and the final phone-1 statuses."""

    zone: tzinfo
    phone1_final: frozenset[str] = frozenset({"CALL_DROP"})


@dataclass(frozen=True)
class TopsRequest:
    """One TopS.II request: ``api`` (path stem), outbox ``key``, ``body`` = ``{root_key: fields}``."""

    api: str
    key: str
    body: dict[str, Any]

    @property
    def fields(self) -> dict[str, Any]:
        return self.body[ROOT_KEYS[self.api]]


@dataclass(frozen=True)
class Route:
    """The routing decision for one callback.

    ``request`` is the TopS.II request, or None when phone 1 waits for phone 2 (then ``expiry_request``
    is what to send if phone 2 never comes). ``phone1_field`` names the field to fill from the stored
    phone-1 status (``errorInfo`` or ``errorInfo1``; see `complete`). ``phone2`` lets this callback
    through a gate left ``waiting_phone2`` by phone 1.
    """

    channel: str
    flow: str
    gate_key: str
    call_id: str
    customer_id: str = ""
    request: TopsRequest | None = None
    phone1_field: str | None = None
    state_key: str | None = None
    status: str | None = None
    expiry_request: TopsRequest | None = None
    phone2: bool = False
    decision: dict[str, Any] = field(default_factory=dict)

    def complete(self, phone1_status: str | None) -> TopsRequest:
        """The request with the stored phone-1 status filled in (``UNKNOWN`` when there is none)."""
        assert self.request is not None
        if self.phone1_field is None:
            return self.request
        fields = {self.phone1_field: phone1_status or UNKNOWN, **self.request.fields}
        return TopsRequest(self.request.api, self.request.key, {ROOT_KEYS[self.request.api]: _ordered(fields)})


def bounded_key(*parts: str) -> str:
    """``parts`` joined with ``|``; a hash when too long for an indexed column."""
    text = "|".join(parts)
    if len(text) <= _MAX_KEY:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _first(params: Mapping[str, str], *names: str) -> tuple[str, str]:
    """(name, value) of the first non-empty parameter, else (names[0], '')."""
    for name in names:
        value = params.get(name, "")
        if value:
            return name, value
    return names[0], ""


def _numeric_call_id(name: str, value: str) -> str:
    if not value:
        raise CallbackRejected(name, f"missing {name}")
    if not value.isascii() or not value.isdigit():
        raise CallbackRejected(name, f"{name} must be numeric, got {value[:40]!r}")
    digits = value.lstrip("0") or "0"
    if len(digits) > 19 or int(digits) > _MAX_CALL_ID:
        raise CallbackRejected(name, f"{name} is too large for a callId ({len(value)} digits)")
    return digits


# -- call start -------------------------------------------------------------------------------------


def route_call_start(params: Mapping[str, str], rules: RoutingRules) -> Route:
    """The createCallStart for a ``/call_start.php`` callback; raises `CallbackRejected`."""
    id_field, raw_id = _first(params, "callId", "cs_unique_id", "crm_push_generated_time", "sessionId")
    call_id = _numeric_call_id(id_field, raw_id)
    staff = params.get("userId", "")
    if not staff:
        raise CallbackRejected("userId", "missing userId (predictiveStaffId)")
    tel_field, target = _first(params, "displayPhone", "phone", "dialledPhone", "dstPhone")
    if not target:
        raise CallbackRejected("displayPhone", "no target phone (displayPhone, phone, dialledPhone or dstPhone)")
    request = TopsRequest(
        API_CALL_START,
        bounded_key(API_CALL_START, call_id, staff, target),
        {ROOT_KEYS[API_CALL_START]: {"callId": int(call_id), "predictiveStaffId": staff, "targetTel": target}},
    )
    return Route(
        channel="call_start",
        flow="call_start",
        gate_key=bounded_key("start", call_id, staff, params.get("displayPhone", "") or target),
        call_id=call_id,
        request=request,
        decision={"flow": "call_start", "callId_from": id_field, "targetTel_from": tel_field},
    )


# -- call end / not answered ------------------------------------------------------------------------


def attempt_status(params: Mapping[str, str]) -> tuple[str, str]:
    """(status, source parameter) of this attempt; raises `CallbackRejected` when there is none."""
    disposition = params.get("systemDisposition", "").upper()
    if disposition in KNOWN_STATUSES:
        return disposition, "systemDisposition"
    code = params.get("hangupCauseCode", "")
    if code.isascii() and code.isdigit() and len(code) <= 6 and int(code) in HANGUP_CODE_STATUS:
        return HANGUP_CODE_STATUS[int(code)], "hangupCauseCode"
    if disposition:
        raise CallbackRejected("systemDisposition", f"unknown systemDisposition {disposition[:40]!r} "
                               "and no mappable hangupCauseCode")
    if code:
        raise CallbackRejected("hangupCauseCode", f"unmapped hangupCauseCode {code[:20]!r} and no systemDisposition")
    raise CallbackRejected("systemDisposition", "missing systemDisposition and hangupCauseCode")


def phone_list(params: Mapping[str, str]) -> list[str]:
    """The distinct phones of this customer, in order; raises `CallbackRejected` on a bad phoneList.

    ``phoneList`` is a JSON string ``{"phoneList": ["090...", "080..."]}`` (a bare JSON list is
    accepted too); without it the list is phone1, phone2, cstmPhone, the dialled phone.
    """
    raw = params.get("phoneList", "")
    if raw:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise CallbackRejected("phoneList", "phoneList is not JSON (or nested too deeply)") from None
        entries = data.get("phoneList") if isinstance(data, dict) else data
        if not isinstance(entries, list) or not all(isinstance(e, (str, int)) and not isinstance(e, bool) for e in entries):
            raise CallbackRejected("phoneList", 'phoneList must be {"phoneList": ["phone", ...]}')
        candidates = [str(e).strip() for e in entries]
    else:
        candidates = [params.get("phone1", ""), params.get("phone2", ""), params.get("cstmPhone", ""),
                      _first(params, "dialedPhone", "dialledPhone", "dstPhone")[1]]
    phones: list[str] = []
    for phone in candidates:
        if phone and phone not in phones:
            phones.append(phone)
    return phones


def _dial_index(params: Mapping[str, str]) -> int:
    raw = params.get("shareablePhonesDialIndex", "")
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
        raise CallbackRejected("shareablePhonesDialIndex",
                               f"shareablePhonesDialIndex must be a number from 0 to 9999, got {raw[:20]!r}")
    return int(raw)


def _time(params: Mapping[str, str], rules: RoutingRules, received: datetime, *names: str) -> tuple[str, str]:
    """(TopS time, source) from the first present parameter, else the time the callback arrived."""
    for name in names:
        raw = params.get(name, "")
        if raw:
            try:
                return tops_time(parse_time(raw, rules.zone), rules.zone), name
            except ValueError as exc:
                raise CallbackRejected(name, f"bad {name}: {exc}") from None
    return tops_time(received, rules.zone), "received"


def route_call_end(params: Mapping[str, str], rules: RoutingRules, received: datetime) -> Route:
    """The route of a ``/index.php`` callback (rules 1-5); raises `CallbackRejected`.

    ``received`` (aware) stands in for ``callEndTime``/``callTime``/``callStartTime`` when Ameyo
    sends none.
    """
    call_id = _numeric_call_id("unique_id", params.get("unique_id", ""))
    status, status_from = attempt_status(params)
    phones = phone_list(params)
    index = _dial_index(params)
    customer = params.get("customerId", "")
    crt_object = params.get("crtObjectId", "") or params.get("customerCRTId", "")
    two_phones = len(phones) >= 2
    phone2 = two_phones and index >= 1
    connected = status == CONNECTED
    base: dict[str, Any] = {
        "gate_key": bounded_key("end", crt_object, customer, call_id),
        "call_id": call_id,
        "customer_id": customer,
        "status": status,
        "phone2": phone2,
        "state_key": bounded_key(customer, call_id) if two_phones else None,
    }
    decision: dict[str, Any] = {"status": status, "status_from": status_from, "connected": connected,
                                "dial_index": index, "phones": phones, "two_phones": two_phones}
    if params.get("dispositionCode"):
        decision["dispositionCode"] = params["dispositionCode"]

    if connected:
        flow = "connected_phone2" if phone2 else "connected"
        sub_cti = params.get("customerCRTId", "")
        if not sub_cti:
            raise CallbackRejected("customerCRTId", "missing customerCRTId (subCtiHistoryId) on a connected call")
        staff = params.get("userId", "")
        if not staff:
            raise CallbackRejected("userId", "missing userId (predictiveStaffId) on a connected call")
        tel_field, target = _first(params, "dialedPhone", "dialledPhone", "dstPhone", "cstmPhone")
        if not target:
            raise CallbackRejected("dialledPhone", "no target phone (dialedPhone, dialledPhone, dstPhone or cstmPhone)")
        start, start_from = _time(params, rules, received, "callStartTime", "callConnectedTime")
        end, end_from = _time(params, rules, received, "callEndTime")
        fields = {"callId": int(call_id), "callStartTime": start, "callEndTime": end, "subCtiHistoryId": sub_cti,
                  "targetTel": target, "predictiveStaffId": staff}
        decision.update(flow=flow, targetTel_from=tel_field, callStartTime_from=start_from, callEndTime_from=end_from)
        request = TopsRequest(API_CALL_END, bounded_key(API_CALL_END, call_id, customer), {ROOT_KEYS[API_CALL_END]: fields})
        return Route(channel="call_end", flow=flow, request=request,
                     phone1_field="errorInfo" if phone2 else None, decision=decision, **base)

    call_time, time_from = _time(params, rules, received, "callTime")
    decision["callTime_from"] = time_from
    one_phone = TopsRequest(
        API_NOT_ANSWER,
        bounded_key(API_NOT_ANSWER, call_id, customer),
        {ROOT_KEYS[API_NOT_ANSWER]: {"callId": int(call_id), "callTime": call_time, "errorInfo1": status}},
    )
    if not two_phones:
        decision["flow"] = "not_answer"
        return Route(channel="not_answer", flow="not_answer", request=one_phone, decision=decision, **base)
    if index == 0:
        if status in rules.phone1_final:
            decision["flow"] = "phone1_final"
            return Route(channel="not_answer", flow="phone1_final", request=one_phone, decision=decision, **base)
        decision["flow"] = "phone1_wait"
        return Route(channel="not_answer", flow="phone1_wait", expiry_request=one_phone, decision=decision, **base)
    decision["flow"] = "not_answer_phone2"
    request = TopsRequest(
        API_NOT_ANSWER,
        one_phone.key,
        {ROOT_KEYS[API_NOT_ANSWER]: {"callId": int(call_id), "callTime": call_time, "errorInfo2": status}},
    )
    return Route(channel="not_answer", flow="not_answer_phone2", request=request, phone1_field="errorInfo1",
                 decision=decision, **base)


_FIELD_ORDER = ("callId", "callTime", "callStartTime", "callEndTime", "subCtiHistoryId", "targetTel",
                "predictiveStaffId", "errorInfo", "errorInfo1", "errorInfo2")


def _ordered(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields in the order of TopS.II's documentation (cosmetic: easier to compare in logs)."""
    return {k: fields[k] for k in sorted(fields, key=lambda k: _FIELD_ORDER.index(k) if k in _FIELD_ORDER else 99)}
