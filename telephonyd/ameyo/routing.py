"""Routing of Ameyo dialer callbacks to TopS.II requests (pure: no I/O, no clock).

The rules and field names come from the relay this replaces (see docs in ``upstreams.md``):

Call start (``/call_start.php``): ``callId`` = first non-empty of ``callId``, ``cs_unique_id``,
``crm_push_generated_time``, ``sessionId`` (must be numeric: TopS.II takes a number);
``predictiveStaffId`` = ``userId``; ``targetTel`` = ``displayPhone``, else ``phone``,
``dialledPhone``, ``dstPhone``. One createCallStart.

Call end / not answered (``/index.php``): the status of this attempt, the phones and the dial index
are read as the relay reads them (`status`). Connected means the status is CONNECTED (any case).
Two or more distinct phones make the two-phone flow; ``shareablePhonesDialIndex`` (default 0) says
which phone this attempt dialled. Without an index >= 1, the attempt is phone 2 when its dialled
phone is the second phone, or (decided in the recorder, `Route.phone2_alt`) when a phone-1 state of
the call is stored and the attempt does not say it dialled the first phone. Rules:

1. connected (one phone, or dial index 0) -> createCallEnd, ``subCtiHistoryId`` = ``customerCRTId``;
2. connected, two phones, dial index >= 1 -> createCallEnd with ``errorInfo`` = stored phone-1 status;
3. not connected, one phone -> createNotAnswer with ``errorInfo1`` = this status;
4. not connected, two phones, dial index 0 -> store the phone-1 status and wait for phone 2, unless the
   status is final for phone 1 (``phone1_final_dispositions``): then rule 3 at once;
5. not connected, two phones, dial index >= 1 -> createNotAnswer with ``errorInfo1`` = stored phone-1
   status and ``errorInfo2`` = this status.

A stored phone-1 status that is missing reads ``UNKNOWN`` in createNotAnswer and leaves ``errorInfo``
out of createCallEnd (as the relay). A connected attempt of a two-phone call clears the phone-1
state. A time Ameyo sends in a form not understood is replaced by the time the callback arrived,
with a warning in the decision (the relay forwarded it as written). A callback that cannot be
routed (no call id, no status, a connected call without customerCRTId, userId or target phone)
raises `CallbackRejected` naming the query parameter at fault.

Keys: the dedupe gate key is ``end|crtObjectId|customerId|callId`` (``crtObjectId`` falls back to
``customerCRTId``) or ``start|callId|userId|displayPhone``; phone-1 state is keyed by
``customerId|callId``; the outbox key is ``<api>|callId|customerId`` (call start:
``createCallStart|callId|userId|targetTel``), so one logical TopS.II request is enqueued at most once
whichever callback (phone 2, a late duplicate, the phone-1 expiry) produces it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Any

from .status import (
    CONNECTED,
    UNKNOWN,
    CallbackRejected,
    attempt_status,
    dial_index,
    dialled_phone,
    hangup_causes,
    phone_list,
)
from .times import parse_time, tops_time

API_CALL_START = "createCallStart"
API_CALL_END = "createCallEnd"
API_NOT_ANSWER = "createNotAnswer"

ROOT_KEYS = {
    API_CALL_START: "predictiveCallCreateCallStart",
    API_CALL_END: "predictiveCallCreateCallEnd",
    API_NOT_ANSWER: "predictiveCallCreateNotAnswer",
}

_MAX_KEY = 150
#: Largest callId: a signed 64-bit integer (TopS.II reads it as a number).
_MAX_CALL_ID = 2**63 - 1


@dataclass(frozen=True)
class RoutingRules:
    """What routing needs: the zone for times, the final phone-1 statuses (``ameyo`` config) and the
    hangup code table (`status.hangup_causes`, read from the package data)."""

    zone: tzinfo
    phone1_final: frozenset[str] = frozenset({"CALL_DROP"})
    hangup_codes: Mapping[str, tuple[str, str]] = field(default_factory=hangup_causes)


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
    through a gate left ``waiting_phone2`` by phone 1 (phone 2, or any connected attempt of a
    two-phone call). ``phone2_alt`` is the route to take instead when a phone-1 state of the call is
    stored (phone-2 inference without the dial index). ``clears_phone1``: a connected phone 1 of a
    two-phone call, which discards a stored phone-1 state. ``warnings`` also appear in ``decision``.
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
    phone2_alt: Route | None = None
    clears_phone1: bool = False
    warnings: tuple[str, ...] = ()

    def complete(self, phone1_status: str | None) -> TopsRequest:
        """The request with the stored phone-1 status filled in; with none, ``errorInfo1`` reads
        ``UNKNOWN`` and ``errorInfo`` is left out (it is optional in createCallEnd)."""
        assert self.request is not None
        if self.phone1_field is None or (phone1_status is None and self.phone1_field == "errorInfo"):
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
    """The call id as canonical digits. Refused (as the relay, which sends nothing for callId 0):
    empty and zero; refused (decision, the relay cast them): anything but ASCII digits, or a number
    past a signed 64-bit integer."""
    if not value:
        raise CallbackRejected(name, f"missing {name}")
    if not value.isascii() or not value.isdigit():
        raise CallbackRejected(name, f"{name} must be numeric, got {value[:40]!r}")
    digits = value.lstrip("0") or "0"
    if digits == "0":
        raise CallbackRejected(name, f"{name} is 0 (TopS.II takes no callId 0)")
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


def _time(params: Mapping[str, str], rules: RoutingRules, received: datetime, warnings: list[str],
          *names: str) -> tuple[str, str]:
    """(TopS time, source) from the first present parameter, else the time the callback arrived.

    A value in no known form is replaced by the arrival time, with a warning (the relay forwarded
    such values as written, or used its clock for ``callConnectedTime``)."""
    for name in names:
        raw = params.get(name, "")
        if raw:
            try:
                return _tops_time_of(raw, rules.zone), name
            except ValueError as exc:
                warnings.append(f"{name}: {exc}; the time the callback arrived is used")
                return tops_time(received, rules.zone), f"received ({name} not understood)"
    return tops_time(received, rules.zone), "received"


@functools.lru_cache(maxsize=4096)
def _tops_time_of(raw: str, zone: tzinfo) -> str:
    """``tops_time(parse_time(raw, zone), zone)``, remembered: the callbacks of a busy second carry
    the same few time values (a value not understood raises `ValueError` each time, never cached)."""
    return tops_time(parse_time(raw, zone), zone)


def route_call_end(params: Mapping[str, str], rules: RoutingRules, received: datetime) -> Route:
    """The route of a ``/index.php`` callback (rules 1-5); raises `CallbackRejected`.

    ``received`` (aware) stands in for ``callEndTime``/``callTime``/``callStartTime`` when Ameyo
    sends none (or one in a form not understood).
    """
    call_id = _numeric_call_id("unique_id", params.get("unique_id", ""))
    status, status_from = attempt_status(params, rules.hangup_codes)
    phones, phones_from = phone_list(params)
    index, index_given = dial_index(params)
    dialled = dialled_phone(params)
    two_phones = len(phones) >= 2
    decision: dict[str, Any] = {"status": status, "status_from": status_from, "phones": phones,
                                "phones_from": phones_from, "two_phones": two_phones}
    if params.get("shareablePhonesDialIndex"):
        decision["dial_index"] = index if index_given else f"ignored: {params['shareablePhonesDialIndex'][:20]!r}"
    if params.get("dispositionCode"):
        decision["dispositionCode"] = params["dispositionCode"]
    if not two_phones or index >= 1:
        return _route_attempt(params, rules, received, call_id, status, two_phones, index >= 1, decision)
    if dialled and dialled == phones[1]:
        return _route_attempt(params, rules, received, call_id, status, True, True,
                              {**decision, "phone2_from": "dialled phone"})
    route = _route_attempt(params, rules, received, call_id, status, True, False, decision)
    if dialled == phones[0]:
        return route
    alt = _route_attempt(params, rules, received, call_id, status, True, True,
                         {**decision, "phone2_from": "stored phone-1 state"})
    return replace(route, phone2_alt=alt)


def _route_attempt(params: Mapping[str, str], rules: RoutingRules, received: datetime, call_id: str, status: str,
                   two_phones: bool, phone2: bool, decision: dict[str, Any]) -> Route:
    customer = params.get("customerId", "")
    crt_object = params.get("crtObjectId", "") or params.get("customerCRTId", "")
    connected = status.upper() == CONNECTED
    warnings: list[str] = []
    base: dict[str, Any] = {
        "gate_key": bounded_key("end", crt_object, customer, call_id),
        "call_id": call_id,
        "customer_id": customer,
        "status": status,
        "phone2": two_phones and (phone2 or connected),
        "state_key": bounded_key(customer, call_id) if two_phones else None,
    }
    decision = {**decision, "connected": connected, "phone2": phone2}

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
        start, start_from = _time(params, rules, received, warnings, "callStartTime", "callConnectedTime")
        end, end_from = _time(params, rules, received, warnings, "callEndTime")
        fields = {"callId": int(call_id), "callStartTime": start, "callEndTime": end, "subCtiHistoryId": sub_cti,
                  "targetTel": target, "predictiveStaffId": staff}
        decision.update(flow=flow, targetTel_from=tel_field, callStartTime_from=start_from, callEndTime_from=end_from)
        if warnings:
            decision["warnings"] = warnings
        request = TopsRequest(API_CALL_END, bounded_key(API_CALL_END, call_id, customer), {ROOT_KEYS[API_CALL_END]: fields})
        return Route(channel="call_end", flow=flow, request=request, phone1_field="errorInfo" if phone2 else None,
                     clears_phone1=two_phones and not phone2, decision=decision, warnings=tuple(warnings), **base)

    call_time, time_from = _time(params, rules, received, warnings, "callTime")
    decision["callTime_from"] = time_from
    if warnings:
        decision["warnings"] = warnings
    one_phone = TopsRequest(
        API_NOT_ANSWER,
        bounded_key(API_NOT_ANSWER, call_id, customer),
        {ROOT_KEYS[API_NOT_ANSWER]: {"callId": int(call_id), "callTime": call_time, "errorInfo1": status}},
    )
    common = {"channel": "not_answer", "decision": decision, "warnings": tuple(warnings), **base}
    if not two_phones:
        decision["flow"] = "not_answer"
        return Route(flow="not_answer", request=one_phone, **common)
    if not phone2:
        if status.upper() in rules.phone1_final:
            decision["flow"] = "phone1_final"
            return Route(flow="phone1_final", request=one_phone, **common)
        decision["flow"] = "phone1_wait"
        return Route(flow="phone1_wait", expiry_request=one_phone, **common)
    decision["flow"] = "not_answer_phone2"
    request = TopsRequest(
        API_NOT_ANSWER,
        one_phone.key,
        {ROOT_KEYS[API_NOT_ANSWER]: {"callId": int(call_id), "callTime": call_time, "errorInfo2": status}},
    )
    return Route(flow="not_answer_phone2", request=request, phone1_field="errorInfo1", **common)
_FIELD_ORDER = ("callId", "callTime", "callStartTime", "callEndTime", "subCtiHistoryId", "targetTel",
                "predictiveStaffId", "errorInfo", "errorInfo1", "errorInfo2")


def _ordered(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields in the order of TopS.II's documentation (cosmetic: easier to compare in logs)."""
    return {k: fields[k] for k in sorted(fields, key=lambda k: _FIELD_ORDER.index(k) if k in _FIELD_ORDER else 99)}
