"""Generator of Ameyo callback scenarios for the differential test against the PHP relay.

A scenario is a named sequence of Ameyo callbacks (``GET /index.php`` or ``/call_start.php``) that
one call produces, built from the relay's parameter list (vijayprakash644/tops at cee29d1:
``src/index_handler.php``, ``src/call_start_handler.php``), the full hangup code table
(``telephonyd/ameyo/hangup_causes.tsv``), the dispositions the relay lists, one and two phones in
both orders, missing and malformed fields, duplicates, repeated keys, odd time formats.

Shapes: ``{"name": str, "family": str, "callbacks": [callback, ...]}`` where a callback is
``{"path": str, "query": [[name, value], ...]}`` (names may repeat; encoded with
``urllib.parse.urlencode``) or ``{"path": str, "raw_query": str}`` (sent as written, e.g. an
unencoded ``+``). Every scenario has its own call id (``unique_id``/``callId``), so scenarios are
independent of each other. Deterministic: the same list on every run.

``python -m tests.tools.ameyo_scenarios`` prints the count per family.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().parents[2] / "telephonyd" / "ameyo" / "hangup_causes.tsv"

END = "/index.php"
START = "/call_start.php"
P1, P2 = "09011112222", "08033334444"
TWO_LIST = json.dumps({"phoneList": [P1, P2]}, separators=(",", ":"))
KNOWN = ["CONNECTED", "CALL_DROP", "CALL_HANGUP", "NO_ANSWER", "PROVIDER_FAILURE", "BUSY", "PROVIDER_TEMP_FAILURE",
         "NUMBER_FAILURE", "CALL_NOT_PICKED", "ATTEMPT_FAILED", "NUMBER_TEMP_FAILURE"]
CONNECTED_TIMES = [["callConnectedTime", "2026/01/20 11:16:41 +0900"], ["callEndTime", "2026-01-20 11:19:02"]]


def hangup_codes() -> list[tuple[str, str, str]]:
    """(code, category, status) rows of the package's table."""
    with TABLE.open(newline="") as fh:
        return [(r[0], r[1], r[2]) for r in csv.reader(fh, delimiter="\t") if r and not r[0].startswith("#")]


class _Builder:
    def __init__(self) -> None:
        self.scenarios: list[dict[str, Any]] = []

    def add(self, family: str, name: str, callbacks: list[dict[str, Any]]) -> None:
        self.scenarios.append({"name": f"{len(self.scenarios):03d}-{name}", "family": family, "callbacks": callbacks})

    @property
    def call_id(self) -> str:
        """The call id of the next scenario (unique per scenario)."""
        return str(7100000 + 10 * len(self.scenarios))

    @property
    def customer(self) -> str:
        return str(500 + len(self.scenarios))


def end(query: list[list[str]]) -> dict[str, Any]:
    return {"path": END, "query": query}


def start(query: list[list[str]]) -> dict[str, Any]:
    return {"path": START, "query": query}


def _base(b: _Builder, crt: str = "crt-a") -> list[list[str]]:
    return [["unique_id", b.call_id], ["customerId", b.customer], ["customerCRTId", crt], ["userId", "agent7"]]


def _status(kind: str, value: str) -> list[list[str]]:
    if kind == "code":
        return [["hangupCauseCode", value]]
    if kind == "disp":
        return [["systemDisposition", value]]
    if kind == "both":
        disp, code = value.split("/")
        return [["systemDisposition", disp], ["hangupCauseCode", code]]
    return []


def call_starts(b: _Builder) -> None:
    ids = ["callId", "cs_unique_id", "crm_push_generated_time", "sessionId"]
    for name in ids:
        b.add("call_start", f"start-id-from-{name}", [start([[name, b.call_id], ["userId", "agent7"],
                                                             ["displayPhone", P1]])])
    b.add("call_start", "start-callId-empty-falls-back", [start([["callId", ""], ["sessionId", b.call_id],
                                                                 ["userId", "agent7"], ["displayPhone", P1]])])
    for tel in ["phone", "dialledPhone", "dstPhone"]:
        b.add("call_start", f"start-target-from-{tel}", [start([["callId", b.call_id], ["userId", "agent7"],
                                                               [tel, P2]])])
    b.add("call_start", "start-displayPhone-wins", [start([["callId", b.call_id], ["userId", "agent7"],
                                                          ["phone", P2], ["displayPhone", P1]])])
    b.add("call_start", "start-no-callId", [start([["userId", "agent7"], ["displayPhone", P1]])])
    b.add("call_start", "start-no-userId", [start([["callId", b.call_id], ["displayPhone", P1]])])
    b.add("call_start", "start-no-phone", [start([["callId", b.call_id], ["userId", "agent7"]])])
    for bad in ["abc", "12abc", "0", "1.5", "99999999999999999999"]:
        b.add("call_start", f"start-callId-{bad}", [start([["callId", bad], ["userId", "agent7"], ["displayPhone", P1]])])
    cb = start([["callId", b.call_id], ["userId", "agent7"], ["displayPhone", P1]])
    b.add("call_start", "start-duplicate", [cb, cb])
    b.add("call_start", "start-repeated-userId-last-wins",
          [start([["callId", b.call_id], ["userId", "agent1"], ["userId", "agent7"], ["displayPhone", P1]])])
    b.add("call_start", "start-padded-values", [start([["callId", f" {b.call_id} "], ["userId", " agent7 "],
                                                      ["displayPhone", f" {P1}"]])])


def code_table(b: _Builder) -> None:
    for code, _category, _status_ in hangup_codes():
        b.add("code", f"code-{code}", [end(_base(b) + [["hangupCauseCode", code], ["dialledPhone", P1],
                                                       ["callTime", "2026-01-20 11:16:41"]])])
    for code in ["999", "1000", "abc", "016", "16.0", " 16 ", "-1", "10"]:
        b.add("code_unknown", f"code-unknown-{code.strip() or 'blank'}",
              [end(_base(b) + [["hangupCauseCode", code], ["dialledPhone", P1], ["callTime", "2026-01-20 11:16:41"]])])


def dispositions(b: _Builder) -> None:
    for disp in KNOWN + ["ABANDONED", "no_answer", "Connected", "CALL-DROP", "customer.busy", "UNKNOWN"]:
        extra = CONNECTED_TIMES if disp.upper() == "CONNECTED" else [["callTime", "2026-01-20 11:16:41"]]
        b.add("disposition", f"disp-{disp}", [end(_base(b) + [["systemDisposition", disp], ["dialledPhone", P1]] + extra)])
    for value in ["PROVIDER_FAILURE/403", "PROVIDER_FAILURE/404", "provider_failure/403", "BUSY/403", "NO_ANSWER/16",
                  "ABANDONED/999", "CONNECTED/16"]:
        extra = CONNECTED_TIMES if value.startswith("CONNECTED") else [["callTime", "2026-01-20 11:16:41"]]
        b.add("disposition", f"disp-and-code-{value.replace('/', '-')}",
              [end(_base(b) + _status("both", value) + [["dialledPhone", P1]] + extra)])
    b.add("disposition", "no-status-at-all", [end(_base(b) + [["dialledPhone", P1], ["callTime", "2026-01-20 11:16:41"]])])
    b.add("disposition", "empty-status-fields", [end(_base(b) + [["systemDisposition", ""], ["hangupCauseCode", ""],
                                                                 ["dialledPhone", P1]])])


PHONE1 = [("code", "480"), ("code", "486"), ("code", "999"), ("disp", "NO_ANSWER"), ("disp", "CALL_DROP"),
          ("both", "NUMBER_FAILURE/404")]
PHONE2 = [("disp", "CONNECTED"), ("code", "17"), ("disp", "CALL_NOT_PICKED"), ("code", "999")]


def _attempt(b: _Builder, phone: int, kind: str, value: str, index_mode: str, phones: str) -> dict[str, Any]:
    """One attempt of a two-phone call: ``index_mode`` explicit (0/1), absent, or dialled (no index,
    but the dialled phone is given)."""
    query = _base(b, crt="crt-a")
    if phones == "list":
        query.append(["phoneList", TWO_LIST])
    else:
        query += [["phone1", P1], ["phone2", P2]]
    if index_mode == "explicit":
        query.append(["shareablePhonesDialIndex", str(phone - 1)])
    if index_mode in ("explicit", "dialled"):
        query.append(["dialledPhone", P1 if phone == 1 else P2])
    query += _status(kind, value)
    if kind == "disp" and value == "CONNECTED":
        query += CONNECTED_TIMES
    else:
        query.append(["callTime", f"2026-01-20 11:1{5 + phone}:00"])
    return end(query)


def two_phones(b: _Builder) -> None:
    for k1, v1 in PHONE1:
        for k2, v2 in PHONE2:
            for mode in ("explicit", "absent", "dialled"):
                for order in ("1-2", "2-1"):
                    if order == "2-1" and mode == "absent":
                        continue  # without an index or a dialled phone the order is not visible
                    phones = "list" if (len(b.scenarios) % 2) else "params"
                    a1 = _attempt(b, 1, k1, v1, mode, phones)
                    a2 = _attempt(b, 2, k2, v2, mode, phones)
                    seq = [a1, a2] if order == "1-2" else [a2, a1]
                    b.add("two_phones", f"two-{mode}-{order}-p1{v1.replace('/', '-')}-p2{v2}", seq)
    for k1, v1 in PHONE1:
        for mode in ("explicit", "absent"):
            b.add("phone1_alone", f"phone1-alone-{mode}-{v1.replace('/', '-')}",
                  [_attempt(b, 1, k1, v1, mode, "list")])
    for k2, v2 in PHONE2:
        b.add("phone2_alone", f"phone2-alone-{v2}", [_attempt(b, 2, k2, v2, "explicit", "list")])
    # A connected phone 1 of two: sent at once; a later phone 2 is not expected.
    b.add("two_phones", "two-phone1-connected", [_attempt(b, 1, "disp", "CONNECTED", "explicit", "list")])
    # Duplicates inside a two-phone call.
    a1 = _attempt(b, 1, "code", "480", "explicit", "list")
    a2 = _attempt(b, 2, "code", "486", "explicit", "list")
    b.add("duplicates", "two-phone1-twice-then-phone2", [a1, a1, a2])
    a1 = _attempt(b, 1, "code", "480", "explicit", "list")
    a2 = _attempt(b, 2, "code", "486", "explicit", "list")
    b.add("duplicates", "two-phone2-twice", [a1, a2, a2])
    a1 = _attempt(b, 1, "code", "480", "dialled", "list")
    a2 = _attempt(b, 2, "code", "486", "dialled", "list")
    b.add("duplicates", "two-dialled-phone1-twice-then-phone2", [a1, a1, a2])
    a1 = _attempt(b, 1, "code", "480", "explicit", "list")
    a2 = _attempt(b, 2, "disp", "CONNECTED", "explicit", "list")
    b.add("duplicates", "two-phone2-connected-twice", [a1, a2, a2])
    # Phone 2 with another customerCRTId (a new CRT row per attempt).
    a1 = _attempt(b, 1, "code", "480", "absent", "list")
    a2 = _attempt(b, 2, "disp", "CONNECTED", "absent", "list")
    a2["query"] = [["customerCRTId", "crt-b"] if k == "customerCRTId" else [k, v] for k, v in a2["query"]]
    b.add("two_phones", "two-absent-phone2-other-crt-connected", [a1, a2])
    a1 = _attempt(b, 1, "code", "480", "absent", "list")
    a2 = _attempt(b, 2, "code", "17", "absent", "list")
    a2["query"] = [["customerCRTId", "crt-b"] if k == "customerCRTId" else [k, v] for k, v in a2["query"]]
    b.add("two_phones", "two-absent-phone2-other-crt-busy", [a1, a2])


def phone_lists(b: _Builder) -> None:
    lists = {
        "not-json": "{phoneList:[0901]}", "bare-list": json.dumps([P1, P2]), "string": '{"phoneList":"0901"}',
        "empty": '{"phoneList":[]}', "one": json.dumps({"phoneList": [P1]}),
        "same-twice": json.dumps({"phoneList": [P1, P1]}), "with-null": json.dumps({"phoneList": [P1, None, P2]}),
        "with-zero": json.dumps({"phoneList": ["0", P1]}), "numbers": '{"phoneList":[9011112222,8033334444]}',
        "three": json.dumps({"phoneList": [P1, P2, "07055556666"]}), "nested": '{"phoneList":[["0901"],"0802"]}',
        "padded": json.dumps({"phoneList": [f" {P1}", P2]}), "truncated": '{"phoneList":["0901',
    }
    for name, raw in lists.items():
        b.add("phone_list", f"phonelist-{name}",
              [end(_base(b) + [["phoneList", raw], ["hangupCauseCode", "486"], ["dialledPhone", P1],
                               ["callTime", "2026-01-20 11:16:41"]])])
    for name, raw in [("not-json", "{phoneList:[0901]}"), ("bare-list", json.dumps([P1, P2]))]:
        b.add("phone_list", f"phonelist-{name}-connected",
              [end(_base(b) + [["phoneList", raw], ["systemDisposition", "CONNECTED"], ["dialledPhone", P1]]
                   + CONNECTED_TIMES)])
    b.add("phone_list", "phones-same-twice-params", [end(_base(b) + [["phone1", P1], ["phone2", P1],
                                                                     ["hangupCauseCode", "486"], ["dialledPhone", P1]])])
    b.add("phone_list", "phones-phone1-and-cstmPhone-equal",
          [end(_base(b) + [["phone1", P1], ["cstmPhone", P1], ["hangupCauseCode", "486"], ["dialledPhone", P1]])])
    b.add("phone_list", "phones-cstmPhone-second",
          [end(_base(b) + [["phone1", P1], ["cstmPhone", P2], ["hangupCauseCode", "486"], ["dialledPhone", P2]])])
    b.add("phone_list", "phones-dstPhone-only", [end(_base(b) + [["dstPhone", P1], ["hangupCauseCode", "486"]])])
    b.add("phone_list", "phones-none", [end(_base(b) + [["hangupCauseCode", "486"]])])
    for index in ["abc", "-1", "1.5", "1e0", " 1", "2", "01"]:
        for kind, value in (("code", "486"), ("disp", "CONNECTED")):
            q = _base(b) + [["phoneList", TWO_LIST], ["shareablePhonesDialIndex", index], ["dialledPhone", P2]]
            q += _status(kind, value) + (CONNECTED_TIMES if value == "CONNECTED" else [])
            b.add("dial_index", f"index-{index.strip()}-{value}", [end(q)])


def missing_fields(b: _Builder) -> None:
    def q(*drop: str, **set_: str) -> list[list[str]]:
        query = _base(b) + [["systemDisposition", "CONNECTED"], ["dialledPhone", P1]] + CONNECTED_TIMES
        query = [[k, set_.pop(k, v)] for k, v in query if k not in drop]
        return query + [[k, v] for k, v in set_.items()]

    b.add("missing", "connected-no-customerCRTId", [end(q("customerCRTId"))])
    b.add("missing", "connected-no-userId", [end(q("userId"))])
    b.add("missing", "connected-no-dialled", [end(q("dialledPhone"))])
    b.add("missing", "connected-dialedPhone", [end(q("dialledPhone", dialedPhone=P2))])
    b.add("missing", "connected-dialedPhone-and-dialledPhone", [end(q(dialedPhone=P2))])
    b.add("missing", "connected-dstPhone-only", [end(q("dialledPhone", dstPhone=P2))])
    b.add("missing", "connected-cstmPhone-only", [end(q("dialledPhone", cstmPhone=P2))])
    b.add("missing", "connected-no-customerId", [end(q("customerId"))])
    b.add("missing", "connected-customerId-abc", [end(q(customerId="abc"))])
    b.add("missing", "connected-no-times", [end(q("callConnectedTime", "callEndTime"))])
    b.add("missing", "connected-callStartTime-wins", [end(q(callStartTime="2026-01-20 11:16:00"))])
    for uid in ["", "0", "00", "abc", "12abc", "1.5", " 42 ", "99999999999999999999", "-5", "0x1A", "1e3"]:
        query = _base(b)
        query[0] = ["unique_id", uid]
        b.add("unique_id", f"unique_id-{uid.strip() or 'empty'}",
              [end(query + [["hangupCauseCode", "486"], ["dialledPhone", P1], ["callTime", "2026-01-20 11:16:41"]])])
    query = _base(b)[1:]
    b.add("unique_id", "unique_id-absent", [end(query + [["hangupCauseCode", "486"], ["dialledPhone", P1]])])
    b.add("missing", "not-answered-no-userId-no-crt",
          [end([["unique_id", b.call_id], ["customerId", b.customer], ["hangupCauseCode", "486"]])])
    b.add("missing", "rejected-then-fixed",
          [end(q("customerCRTId")), end(q())])


TIMES = ["2026-01-20 11:16:41", "2026/01/20 11:16:41", "20/01/2026 11:16:41", "2026-01-20T11:16:41",
         "2026-01-20 11:16:41 +0900", "2026/01/20 11:16:41 +0900", "1768875401", "2026-1-20 1:16:41", "garbage",
         "2026-02-30 11:16:41", "2026-01-20"]
CONNECTED_AT = ["2026/01/20 11:16:41 +0900", "2026/01/20 02:16:41 +0000", "2026/01/20 11:16:41 +09:00",
                "2026-01-20 11:16:41", "2026/01/20 11:16:41", "20/01/2026 11:16:41", "2026/02/30 11:16:41 +0900",
                "garbage", "2026/1/2 3:04:05 +0900"]


def times(b: _Builder) -> None:
    for value in TIMES:
        b.add("time", f"callTime-{value}", [end(_base(b) + [["hangupCauseCode", "486"], ["dialledPhone", P1],
                                                            ["callTime", value]])])
    for value in CONNECTED_AT:
        b.add("time", f"callConnectedTime-{value}",
              [end(_base(b) + [["systemDisposition", "CONNECTED"], ["dialledPhone", P1], ["callConnectedTime", value],
                               ["callEndTime", "2026-01-20 11:19:02"]])])
    for value in ["20/01/2026 11:19:02", "2026/01/20 11:19:02", "garbage"]:
        b.add("time", f"callEndTime-{value}",
              [end(_base(b) + [["systemDisposition", "CONNECTED"], ["dialledPhone", P1],
                               ["callConnectedTime", "2026/01/20 11:16:41 +0900"], ["callEndTime", value]])])
        b.add("time", f"callStartTime-{value}",
              [end(_base(b) + [["systemDisposition", "CONNECTED"], ["dialledPhone", P1], ["callStartTime", value],
                               ["callEndTime", "2026-01-20 11:19:02"]])])
    # The '+' of the offset left unencoded by Ameyo: PHP decodes it as a space.
    query = "&".join(f"{k}={v}" for k, v in _base(b)) + (
        f"&systemDisposition=CONNECTED&dialledPhone={P1}&callConnectedTime=2026/01/20%2011:16:41%20+0900"
        "&callEndTime=2026-01-20%2011:19:02")
    b.add("time", "callConnectedTime-plus-unencoded", [{"path": END, "raw_query": query}])


def duplicates_and_repeats(b: _Builder) -> None:
    cb = end(_base(b) + [["hangupCauseCode", "486"], ["dialledPhone", P1], ["callTime", "2026-01-20 11:16:41"]])
    b.add("duplicates", "not-answered-twice", [cb, cb])
    cb = end(_base(b) + [["systemDisposition", "CONNECTED"], ["dialledPhone", P1]] + CONNECTED_TIMES)
    b.add("duplicates", "connected-twice", [cb, cb])
    cb = end(_base(b) + [["systemDisposition", "NO_ANSWER"], ["dialledPhone", P1], ["callTime", "2026-01-20 11:16:41"]])
    b.add("duplicates", "not-answered-three-times", [cb, cb, cb])
    cid = b.call_id
    b.add("repeats", "repeat-unique_id-last-wins",
          [end([["unique_id", "1"], ["unique_id", cid]] + _base(b)[1:] + [["hangupCauseCode", "486"],
                                                                        ["dialledPhone", P1]])])
    b.add("repeats", "repeat-systemDisposition-last-wins",
          [end(_base(b) + [["systemDisposition", "BUSY"], ["systemDisposition", "NO_ANSWER"], ["dialledPhone", P1]])])
    b.add("repeats", "repeat-hangupCauseCode-last-wins",
          [end(_base(b) + [["hangupCauseCode", "16"], ["hangupCauseCode", "486"], ["dialledPhone", P1]])])
    b.add("repeats", "repeat-last-empty-wins",
          [end(_base(b) + [["systemDisposition", "BUSY"], ["systemDisposition", ""], ["hangupCauseCode", "17"],
                           ["dialledPhone", P1]])])
    b.add("repeats", "repeat-dialledPhone-last-wins",
          [end(_base(b) + [["systemDisposition", "CONNECTED"], ["dialledPhone", P2], ["dialledPhone", P1]]
               + CONNECTED_TIMES)])


def scenarios() -> list[dict[str, Any]]:
    """Every scenario, in a fixed order."""
    b = _Builder()
    for family in (call_starts, code_table, dispositions, two_phones, phone_lists, missing_fields, times,
                   duplicates_and_repeats):
        family(b)
    return b.scenarios


def main() -> None:
    found = scenarios()
    for family, n in sorted(Counter(s["family"] for s in found).items()):
        print(f"{family:14s} {n}")
    print(f"{'total':14s} {len(found)} scenarios, {sum(len(s['callbacks']) for s in found)} callbacks")


if __name__ == "__main__":
    main()
