"""Generated Ameyo callback queries against their parsing, access check and routing.

A callback either routes to a well-formed TopS.II request or is rejected with `CallbackRejected`
naming a query parameter; nothing else may escape (an escaping exception is an HTTP 500 that Ameyo
retries forever). The query goes through aiohttp's own parsing first, as it does in the listener.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from telephonyd.ameyo import times
from telephonyd.ameyo.routes import access_denied, callback_params
from telephonyd.ameyo.routing import (
    ROOT_KEYS,
    CallbackRejected,
    Route,
    RoutingRules,
    route_call_end,
    route_call_start,
)
from telephonyd.ameyo.status import KNOWN_STATUSES, hangup_causes, phone_list
from telephonyd.ameyo.times import parse_time
from telephonyd.config import AmeyoConfig

FUZZ = settings(max_examples=200, deadline=500, suppress_health_check=[HealthCheck.too_slow])
RULES = RoutingRules(zone=ZoneInfo("Asia/Tokyo"))
HANGUP_CODE_STATUS = hangup_causes()
RECEIVED = datetime(2026, 1, 20, 2, 16, 41, tzinfo=UTC)

FIELDS = [
    "callId", "cs_unique_id", "crm_push_generated_time", "sessionId", "userId", "displayPhone", "phone",
    "dialledPhone", "dialedPhone", "dstPhone", "unique_id", "systemDisposition", "hangupCauseCode", "phoneList",
    "phone1", "phone2", "cstmPhone", "shareablePhonesDialIndex", "customerId", "crtObjectId", "customerCRTId",
    "callStartTime", "callConnectedTime", "callEndTime", "callTime", "dispositionCode",
]  # fmt: skip

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
PHONES = st.recursive(
    st.one_of(st.text("0123456789+-", max_size=14), st.integers(-10, 10**12), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["phoneList", "x"]), inner,
                                                                        max_size=2)),
    max_leaves=8,
)
VALUES = st.one_of(
    st.just(""),
    st.text("0123456789", min_size=1, max_size=30),
    st.sampled_from(sorted(KNOWN_STATUSES) + ["connected", "Busy", "UNKNOWN_THING", " CONNECTED "]),
    st.sampled_from([str(c) for c in HANGUP_CODE_STATUS] + ["0", "-1", "16.0", "٣"]),
    st.sampled_from(["2026/01/20 11:16:41 +0900", "2026/01/20 11:16:41  0900", "2026-01-20T02:16:41Z",
                     "1768875401", "1768875401000", "2026-02-30 10:00:00", "1999/12/31 23:59:59",
                     "2026-01-20 11:16:41 +2500", "9999999999999"]),
    PHONES.map(json.dumps),
    TEXT,
)
NOISE = st.dictionaries(st.one_of(st.sampled_from(FIELDS), TEXT), VALUES, max_size=14)
DIGITS = st.text("0123456789", min_size=1, max_size=19)
PHONE = st.text("0123456789", min_size=10, max_size=11)
TIMES = st.sampled_from(["", "2026/01/20 11:16:41 +0900", "2026-01-20 11:16:41", "1768875401", "bad"])
START = st.fixed_dictionaries(
    {"callId": DIGITS, "userId": TEXT},
    optional={"displayPhone": PHONE, "phone": PHONE, "dialledPhone": PHONE, "cs_unique_id": DIGITS},
)
END = st.fixed_dictionaries(
    {"unique_id": DIGITS, "customerCRTId": DIGITS, "userId": TEXT, "dialledPhone": PHONE,
     "systemDisposition": st.sampled_from(sorted(KNOWN_STATUSES) + ["CONNECTED"] * 4 + ["", "connected"])},
    optional={
        "hangupCauseCode": st.sampled_from([str(c) for c in HANGUP_CODE_STATUS] + ["", "999"]),
        "customerId": TEXT, "crtObjectId": TEXT,
        "phone1": PHONE, "phone2": PHONE,
        "phoneList": st.one_of(st.lists(PHONE, max_size=3).map(lambda p: {"phoneList": p}), PHONES).map(json.dumps),
        "shareablePhonesDialIndex": st.sampled_from(["", "0", "1", "2", "x"]),
        "callTime": TIMES, "callStartTime": TIMES, "callEndTime": TIMES,
    },
)


def overlay(base: st.SearchStrategy[dict[str, str]]) -> st.SearchStrategy[dict[str, str]]:
    """Plausible callbacks with a few fields replaced by noise, or noise alone."""
    noisy = st.tuples(base, st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3)).map(lambda t: {**t[0], **t[1]})
    return st.one_of(noisy, NOISE)


def check_route(route: Route) -> None:
    requests = [r for r in (route.request, route.expiry_request) if r is not None]
    assert requests, "a route sends something now or on expiry"
    for request in requests:
        assert list(request.body) == [ROOT_KEYS[request.api]]
        assert isinstance(request.fields["callId"], int)
        json.dumps(request.body)  # the outbox stores it as JSON
        assert len(request.key) <= 150
    assert len(route.gate_key) <= 150
    if route.state_key is not None:
        assert len(route.state_key) <= 150


@FUZZ
@given(params=overlay(START))
def test_call_start_routes_or_rejects_naming_a_field(params: dict[str, str]) -> None:
    try:
        route = route_call_start(params, RULES)
    except CallbackRejected as exc:
        assert exc.field and exc.message
        event(f"rejected: {exc.field}")
        return
    event(f"routed: {route.flow}")
    check_route(route)
    assert route.request is not None and route.request.fields["predictiveStaffId"] == params["userId"]


@FUZZ
@given(params=overlay(END))
def test_call_end_routes_or_rejects_naming_a_field(params: dict[str, str]) -> None:
    try:
        route = route_call_end(params, RULES, RECEIVED)
    except CallbackRejected as exc:
        assert exc.field and exc.message
        event(f"rejected: {exc.field}")
        return
    event(f"routed: {route.flow}")
    check_route(route)


@FUZZ
@given(params=st.dictionaries(st.sampled_from(FIELDS + ["token"]), VALUES, max_size=12),
       raw=st.text(max_size=200), kind=st.sampled_from(["start", "end"]))
def test_queries_through_aiohttp_parsing(params: dict[str, str], raw: str, kind: str) -> None:
    """The listener's path: aiohttp parses the query, `callback_params` flattens it, routing runs."""
    for query in (urlencode(params), raw.replace("#", "%23")):
        request = make_mocked_request("GET", "/index.php?" + query)
        flat = callback_params(request)
        assert "token" not in flat and all(isinstance(v, str) and v == v.strip() for v in flat.values())
        try:
            route = route_call_start(flat, RULES) if kind == "start" else route_call_end(flat, RULES, RECEIVED)
        except CallbackRejected:
            continue
        check_route(route)


@FUZZ
@given(query_token=st.one_of(st.none(), TEXT), header=st.one_of(st.none(), st.text("abc -é\t", max_size=20)),
       auth=st.one_of(st.none(), st.sampled_from(["Bearer", "bearer", "Basic", ""]).flatmap(
           lambda scheme: TEXT.map(lambda t: f"{scheme} {t}"))),
       token=st.one_of(st.none(), st.sampled_from(["s3cret-ameyo", "トークン-0123"])))
def test_access_check_answers_or_refuses_never_raises(query_token: str | None, header: str | None,
                                                      auth: str | None, token: str | None) -> None:
    headers = {}
    if header is not None:
        headers["X-Ameyo-Token"] = header.encode("utf-8").decode("latin-1")
    if auth is not None:
        headers["Authorization"] = auth.encode("utf-8").decode("latin-1")
    query = "?" + urlencode({"token": query_token}) if query_token is not None else ""
    request = make_mocked_request("GET", "/index.php" + query, headers=headers)
    service = SimpleNamespace(config=AmeyoConfig(token=token))
    denied = access_denied(service, request)  # type: ignore[arg-type]
    if token is None:
        assert denied is None
    elif denied is None:
        presented = query_token or headers.get("X-Ameyo-Token") or auth.partition(" ")[2].strip()  # type: ignore[union-attr]
        assert presented == token
    else:
        assert denied[0] == 401


@FUZZ
@given(raw=st.one_of(TEXT, VALUES))
def test_times_parse_or_raise_value_error(raw: str) -> None:
    try:
        value = parse_time(raw, ZoneInfo("Asia/Tokyo"))
    except ValueError:
        return
    assert value.tzinfo is not None and 2000 <= value.year <= 2100


def _stamps() -> st.SearchStrategy[str]:
    """Times of the two shapes Ameyo sends, mostly well formed, with separators, digits (out of
    range too) and the offset perturbed now and then."""
    def two(top: int) -> st.SearchStrategy[str]:  # mostly in range, one past it at times
        return st.integers(0, top + 1).map(lambda n: f"{n:02d}")

    odd = st.sampled_from(["-", "/", ":", " ", "T", "+", "x", ""])
    date_sep = st.one_of(st.sampled_from(["-", "/"]), odd)
    time_sep = st.one_of(st.just(":"), odd)
    zone = st.one_of(st.just(""), st.tuples(st.sampled_from([" +", " -", "+", "  ", " "]), st.integers(0, 2400))
                     .map(lambda t: f"{t[0]}{t[1]:04d}"))
    return st.tuples(st.integers(1990, 2110).map(str), date_sep, two(12), date_sep, two(31),
                     st.sampled_from([" ", " ", "T", "  "]), two(23), time_sep, two(59), time_sep, two(59),
                     zone).map("".join)


@FUZZ
@given(raw=st.one_of(_stamps(), TEXT))
@example("2026/03/06 13:52:00 +1430").via("the offset limit")
@example("2026/03/06 13:52:00 -1400").via("the offset limit")
@example("2026-02-29 10:00:00").via("not a leap year")
def test_the_fast_time_parser_agrees_with_the_regular_expression(raw: str) -> None:
    zone = ZoneInfo("Asia/Tokyo")
    fast = times._fast(raw.strip(), zone)
    if fast is None:
        return
    event("fast path")
    try:
        slow = times._checked(times._parse_stamp(raw.strip(), raw, zone), raw)
    except ValueError:
        slow = None
    try:
        fast = times._checked(fast, raw)
    except ValueError:
        fast = None
    assert fast == slow and (fast is None or fast.utcoffset() == slow.utcoffset())


# -- found by fuzzing ------------------------------------------------------------------------------
# Query values that made routing raise something other than CallbackRejected (an HTTP 500, which
# Ameyo retries). They fit in aiohttp's 8190-byte request line. Fixed: a huge call id is rejected
# naming the parameter; a huge code or dial index is a value not understood (forwarded as UNKNOWN,
# read as no index); a deeply nested phoneList falls back to the phone parameters.

HUGE = "9" * 5000  # past Python's 4300-digit limit for int(str)
DEEP = "[" * 3000  # past the JSON decoder's recursion limit


@pytest.mark.parametrize("params", [
    {"callId": HUGE, "userId": "u1", "displayPhone": "0312345678"},
    {"unique_id": HUGE, "systemDisposition": "BUSY"},
])
def test_huge_call_ids_are_rejected(params: dict[str, str]) -> None:
    with pytest.raises(CallbackRejected):
        if "callId" in params:
            route_call_start(params, RULES)
        else:
            route_call_end(params, RULES, RECEIVED)


def test_huge_code_and_dial_index_are_values_not_understood() -> None:
    route = route_call_end({"unique_id": "1", "hangupCauseCode": HUGE}, RULES, RECEIVED)
    assert route.request.fields["errorInfo1"] == "UNKNOWN"
    route = route_call_end({"unique_id": "1", "systemDisposition": "BUSY", "shareablePhonesDialIndex": HUGE,
                            "phone1": "0901", "phone2": "0802"}, RULES, RECEIVED)
    assert route.flow == "phone1_wait" and route.decision["dial_index"].startswith("ignored")


def test_deeply_nested_phone_list_falls_back_to_the_phone_parameters() -> None:
    assert phone_list({"phoneList": DEEP, "dialledPhone": "0901"}) == (["0901"], "params_after_bad_phoneList")
