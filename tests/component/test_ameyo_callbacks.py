"""Ameyo callbacks over real HTTP -> AmeyoService -> real Outbox + Store -> TopsSender -> fake TopS.II.

Each scenario fires callbacks in order and checks the exact requests TopS.II received, and that
nothing was sent twice.
"""

from __future__ import annotations

import asyncio

import pytest

from telephonyd.config import AmeyoConfig
from tests.component.ameyo_harness import (
    crash_node,
    settled,
    start_node,
    stop_node,
    tops_config,
)
from tests.helpers import wait_until

END = "/index.php"
START = "/call_start.php"
TWO = '{"phoneList":["09011112222","08033334444"]}'
CALL = {"unique_id": "20260306", "customerId": "100", "crtObjectId": "crt-1", "userId": "agent7"}


def phone1(status: str, **extra: str) -> tuple[str, dict[str, str]]:
    return END, {**CALL, "systemDisposition": status, "phoneList": TWO, "shareablePhonesDialIndex": "0",
                 "dialledPhone": "09011112222", "callTime": "2026-03-06 13:50:00", **extra}


def phone2(status: str, **extra: str) -> tuple[str, dict[str, str]]:
    return END, {**CALL, "systemDisposition": status, "phoneList": TWO, "shareablePhonesDialIndex": "1",
                 "dialledPhone": "08033334444", "callTime": "2026-03-06 13:51:00", **extra}


CONNECTED_TIMES = {"callConnectedTime": "2026/03/06 13:52:00 +0900", "callEndTime": "2026-03-06 13:55:30"}

# (name, callbacks, requests TopS.II must receive in order as (api, fields))
SCENARIOS = [
    ("call start", [(START, {"callId": "555", "userId": "agent7", "displayPhone": "09011112222"})],
     [("createCallStart", {"callId": 555, "predictiveStaffId": "agent7", "targetTel": "09011112222"})]),
    ("/ameyo/call-start alias, callId from cs_unique_id, targetTel from phone",
     [("/ameyo/call-start", {"cs_unique_id": "556", "userId": "agent7", "phone": "0311112222"})],
     [("createCallStart", {"callId": 556, "predictiveStaffId": "agent7", "targetTel": "0311112222"})]),
    ("rule 1: one phone connected",
     [(END, {**CALL, "systemDisposition": "CONNECTED", "customerCRTId": "d336-1", "dialledPhone": "09011112222",
             **CONNECTED_TIMES})],
     [("createCallEnd", {"callId": 20260306, "callStartTime": "2026-03-06 13:52:00",
                         "callEndTime": "2026-03-06 13:55:30", "subCtiHistoryId": "d336-1",
                         "targetTel": "09011112222", "predictiveStaffId": "agent7"})]),
    ("rule 1: phone 1 of two connected is sent at once",
     [phone1("CONNECTED", customerCRTId="d336-1", **CONNECTED_TIMES)],
     [("createCallEnd", {"callId": 20260306, "callStartTime": "2026-03-06 13:52:00",
                         "callEndTime": "2026-03-06 13:55:30", "subCtiHistoryId": "d336-1",
                         "targetTel": "09011112222", "predictiveStaffId": "agent7"})]),
    ("rule 2: phone 1 failed, phone 2 connected -> errorInfo",
     [phone1("NO_ANSWER"), phone2("CONNECTED", customerCRTId="d336-2", **CONNECTED_TIMES)],
     [("createCallEnd", {"callId": 20260306, "callStartTime": "2026-03-06 13:52:00",
                         "callEndTime": "2026-03-06 13:55:30", "subCtiHistoryId": "d336-2",
                         "targetTel": "08033334444", "predictiveStaffId": "agent7", "errorInfo": "NO_ANSWER"})]),
    ("rule 3: one phone not answered (on /ameyo/call-end, status from hangupCauseCode)",
     [("/ameyo/call-end", {**CALL, "hangupCauseCode": "486", "dialledPhone": "0901", "callTime": "2026-03-06 13:50:00"})],
     [("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:50:00", "errorInfo1": "BUSY"})]),
    ("rules 4+5: both phones fail -> one createNotAnswer with both statuses",
     [phone1("PROVIDER_TEMP_FAILURE"), phone2("BUSY")],
     [("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:51:00",
                           "errorInfo1": "PROVIDER_TEMP_FAILURE", "errorInfo2": "BUSY"})]),
    ("a repeat of phone 1 while waiting is skipped",
     [phone1("NO_ANSWER"), phone1("NO_ANSWER"), phone2("CALL_NOT_PICKED")],
     [("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:51:00",
                           "errorInfo1": "NO_ANSWER", "errorInfo2": "CALL_NOT_PICKED"})]),
    ("phone 2 without phone 1 -> errorInfo1 UNKNOWN",
     [phone2("NO_ANSWER")],
     [("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:51:00",
                           "errorInfo1": "UNKNOWN", "errorInfo2": "NO_ANSWER"})]),
    ("a final phone-1 disposition is sent at once and closes the gate",
     [phone1("CALL_DROP"), phone2("BUSY")],
     [("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:50:00", "errorInfo1": "CALL_DROP"})]),
    ("phone 2 without a dial index, connected: inferred from the stored phone 1, errorInfo, nothing left",
     [(END, {**CALL, "hangupCauseCode": "480", "phoneList": TWO, "callTime": "2026-03-06 13:50:00"}),
      (END, {**CALL, "systemDisposition": "CONNECTED", "phoneList": TWO, "customerCRTId": "d336-2",
             "dstPhone": "08033334444", **CONNECTED_TIMES})],
     [("createCallEnd", {"callId": 20260306, "callStartTime": "2026-03-06 13:52:00",
                         "callEndTime": "2026-03-06 13:55:30", "subCtiHistoryId": "d336-2",
                         "targetTel": "08033334444", "predictiveStaffId": "agent7",
                         "errorInfo": "PROVIDER_TEMP_FAILURE"})]),
    ("phone 2 without a dial index, not answered: inferred from the stored phone 1",
     [(END, {**CALL, "hangupCauseCode": "480", "phoneList": TWO, "callTime": "2026-03-06 13:50:00"}),
      (END, {**CALL, "hangupCauseCode": "1", "phoneList": TWO, "callTime": "2026-03-06 13:51:00"})],
     [("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:51:00",
                           "errorInfo1": "PROVIDER_TEMP_FAILURE", "errorInfo2": "NUMBER_FAILURE"})]),
    ("connected on phone 1 after phone 1 failed: the stored failure is cleared, never sent later",
     [phone1("NO_ANSWER"), phone1("CONNECTED", customerCRTId="d336-1", **CONNECTED_TIMES)],
     [("createCallEnd", {"callId": 20260306, "callStartTime": "2026-03-06 13:52:00",
                         "callEndTime": "2026-03-06 13:55:30", "subCtiHistoryId": "d336-1",
                         "targetTel": "09011112222", "predictiveStaffId": "agent7"})]),
    ("the same callback twice is sent once",
     [phone2("BUSY"), phone2("BUSY")],
     [("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:51:00",
                           "errorInfo1": "UNKNOWN", "errorInfo2": "BUSY"})]),
]


@pytest.mark.parametrize(("name", "callbacks", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_scenarios(name, callbacks, expected, fake_tops, store_url):
    node = await start_node(store_url, fake_tops)
    try:
        for path, params in callbacks:
            status, body = await node.get(path, params)
            assert (status, body["success"], body["message"]) == (200, True, "Data Received")
            assert len(body["request_id"]) == 16
        await fake_tops.wait_for(lambda f: len(f.received) >= len(expected))
        await settled(node)
        assert [(r.api, r.fields) for r in fake_tops.received] == expected
        assert fake_tops.violations == []
        assert [r["state"] for r in await node.outbox_rows()] == ["delivered"] * len(expected)
        log = await node.requests()
        assert len(log) == len(callbacks)
        assert sum(r["outcome"] == "delivered" for r in log) == len(expected)
        assert {r["upstream_status"] for r in log if r["outcome"] == "delivered"} == {200}
        assert await node.phone1_states() == 0  # nothing left waiting
    finally:
        await stop_node(node)


async def test_identical_callbacks_fired_together_send_once(fake_tops, store_url):
    node = await start_node(store_url, fake_tops)
    try:
        path, params = phone2("BUSY")
        answers = await asyncio.gather(*(node.get(path, params) for _ in range(20)))
        assert {(s, b["success"]) for s, b in answers} == {(200, True)}
        await settled(node)
        assert fake_tops.sends_by_call == {20260306: 1}
        outcomes = sorted(r["outcome"] for r in await node.requests())
        assert outcomes == ["delivered"] + ["skipped"] * 19
    finally:
        await stop_node(node)


async def test_phone1_and_phone2_arriving_together_give_one_send(fake_tops, sqlite_url):
    node = await start_node(sqlite_url, fake_tops)
    try:
        answers = await asyncio.gather(*(node.get(*cb) for cb in [phone1("NO_ANSWER")] * 5 + [phone2("BUSY")] * 5))
        assert {s for s, _ in answers} == {200}
        await settled(node)
        assert fake_tops.sends_by_call[20260306] == 1
    finally:
        await stop_node(node)


async def test_phone2_inferred_from_the_stored_phone1_is_logged_as_phone2(fake_tops, sqlite_url):
    node = await start_node(sqlite_url, fake_tops)
    try:
        for code in ("480", "1"):  # neither callback carries shareablePhonesDialIndex nor a dialled phone
            assert (await node.get(END, {**CALL, "hangupCauseCode": code, "phoneList": TWO}))[0] == 200
        await settled(node)
        first, second = await node.requests()
        assert (first["flow"], first["outcome"]) == ("phone1_wait", "combined")
        assert (second["flow"], second["outcome"]) == ("not_answer_phone2", "delivered")
        assert second["decision"]["phone2_from"] == "stored phone-1 state"
        assert [r.fields["errorInfo1"] + "/" + r.fields["errorInfo2"] for r in fake_tops.received] == [
            "PROVIDER_TEMP_FAILURE/NUMBER_FAILURE"]
        assert await node.gates() == {"end|crt-1|100|20260306": "processed"}
    finally:
        await stop_node(node)


async def test_restart_between_phone1_and_phone2_gives_one_combined_send(fake_tops, sqlite_url):
    first = await start_node(sqlite_url, fake_tops)
    assert (await first.get(*phone1("NUMBER_TEMP_FAILURE")))[0] == 200
    await stop_node(first)
    second = await start_node(sqlite_url, fake_tops, node_id="n2")
    try:
        assert (await second.get(*phone2("NO_ANSWER")))[0] == 200
        await settled(second)
        assert [(r.api, r.fields) for r in fake_tops.received] == [
            ("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:51:00",
                                 "errorInfo1": "NUMBER_TEMP_FAILURE", "errorInfo2": "NO_ANSWER"})]
        outcomes = [(r["flow"], r["outcome"]) for r in await second.requests()]
        assert outcomes == [("phone1_wait", "combined"), ("not_answer_phone2", "delivered")]
    finally:
        await stop_node(second)


async def test_a_crash_after_the_answer_loses_nothing(fake_tops, sqlite_url):
    node = await start_node(sqlite_url, fake_tops, deliver=False)
    for path, params in [phone1("BUSY"), phone2("BUSY"), (START, {"callId": "9", "userId": "u", "displayPhone": "1"})]:
        assert (await node.get(path, params))[0] == 200
    await crash_node(node)
    assert fake_tops.received == []
    again = await start_node(sqlite_url, fake_tops, node_id="n2")
    try:
        await settled(again)
        assert sorted(r.api for r in fake_tops.received) == ["createCallStart", "createNotAnswer"]
        assert sum(fake_tops.sends_by_call.values()) == 2
    finally:
        await stop_node(again)


async def test_phone1_expiry_sends_phone1_alone_and_a_late_phone2_adds_nothing(fake_tops, sqlite_url):
    ameyo = AmeyoConfig(phone1_state_ttl_s=0.3, sweep_interval_s=0.05)
    node = await start_node(sqlite_url, fake_tops, ameyo=ameyo)
    try:
        assert (await node.get(*phone1("PROVIDER_TEMP_FAILURE")))[0] == 200
        await fake_tops.wait_for(lambda f: len(f.received) == 1, timeout=5)
        await settled(node)
        assert [(r.api, r.fields) for r in fake_tops.received] == [
            ("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:50:00",
                                 "errorInfo1": "PROVIDER_TEMP_FAILURE"})]
        log = await node.requests()
        assert [(r["flow"], r["outcome"]) for r in log] == [("phone1_wait", "expired"), ("phone1_expired", "delivered")]
        assert log[1]["related_request_id"] == log[0]["request_id"]
        # Phone 2 after the expiry: the gate (processed) or the outbox key keeps it from a second send.
        assert (await node.get(*phone2("BUSY")))[0] == 200
        await settled(node)
        assert fake_tops.sends_by_call[20260306] == 1
        assert await node.phone1_states() == 0
    finally:
        await stop_node(node)


async def test_expired_phone1_is_sent_on_read_when_phone2_comes_first(fake_tops, sqlite_url):
    # The sweeper runs only at start here: phone 2 finds the expired state itself.
    ameyo = AmeyoConfig(phone1_state_ttl_s=0.2, sweep_interval_s=3600)
    node = await start_node(sqlite_url, fake_tops, ameyo=ameyo)
    try:
        assert (await node.get(*phone1("NO_ANSWER")))[0] == 200
        await wait_until(lambda: _has_expired(node), what="phone-1 state to expire")
        assert (await node.get(*phone2("BUSY")))[0] == 200
        await settled(node)
        assert [(r.api, r.fields) for r in fake_tops.received] == [
            ("createNotAnswer", {"callId": 20260306, "callTime": "2026-03-06 13:50:00", "errorInfo1": "NO_ANSWER"})]
        decisions = {r["flow"]: r for r in await node.requests()}
        assert decisions["not_answer_phone2"]["decision"]["phone1_state"] == "expired"
        assert decisions["not_answer_phone2"]["outcome"] == "duplicate"
    finally:
        await stop_node(node)


async def _has_expired(node) -> bool:
    return bool(await node.service.recorder.expired_keys())


async def test_phone1_expiry_without_send_discards(fake_tops, sqlite_url):
    ameyo = AmeyoConfig(phone1_state_ttl_s=0.2, sweep_interval_s=0.05, send_phone1_on_expiry=False)
    node = await start_node(sqlite_url, fake_tops, ameyo=ameyo)
    try:
        assert (await node.get(*phone1("NO_ANSWER")))[0] == 200
        await wait_until(lambda: _outcomes_are(node, ["expired", "discarded"]), what="the discard")
        assert fake_tops.received == [] and await node.outbox_rows() == []
    finally:
        await stop_node(node)


async def _outcomes_are(node, outcomes) -> bool:
    return [r["outcome"] for r in await node.requests()] == outcomes


async def test_dry_run_records_every_payload_and_sends_nothing(fake_tops, sqlite_url):
    node = await start_node(sqlite_url, fake_tops, tops=tops_config(fake_tops, real_send=False))
    try:
        for cb in [phone1("NO_ANSWER"), phone2("BUSY"), (START, {"callId": "7", "userId": "u", "displayPhone": "1"})]:
            assert (await node.get(*cb))[0] == 200
        await settled(node)
        assert fake_tops.received == []
        log = await node.requests()
        assert [r["outcome"] for r in log] == ["combined", "dry_run", "dry_run"]
        assert log[1]["payload"] == {"predictiveCallCreateNotAnswer": {
            "callId": 20260306, "callTime": "2026-03-06 13:51:00", "errorInfo1": "NO_ANSWER", "errorInfo2": "BUSY"}}
        assert log[1]["decision"]["dry_run"] is True
        assert set((await node.gates()).values()) == {"processed"}
        assert node.service.health()["dry_run"] is True
    finally:
        await stop_node(node)
