"""Ameyo callbacks: 400s that name the field and leave nothing behind, 401/403 access control,
and what the relay does when TopS.II refuses or fails."""

from __future__ import annotations

import json
import logging

import pytest

from telephonyd.ameyo.schema import gate, phone1_state
from telephonyd.config import AmeyoConfig
from tests.component.ameyo_harness import settled, start_node, stop_node
from tests.fakes.tops import Reply

END = "/index.php"
CALL = {"unique_id": "3003", "customerId": "9", "crtObjectId": "c9", "userId": "agent7", "dialledPhone": "0901"}


REJECTED = [
    (END, {**CALL, "unique_id": "", "systemDisposition": "NO_ANSWER"}, "unique_id"),
    (END, {**CALL, "unique_id": "A-17", "systemDisposition": "NO_ANSWER"}, "unique_id"),
    (END, {**CALL, "systemDisposition": "CONNECTED"}, "customerCRTId"),
    (END, {**CALL, "dialledPhone": "", "customerCRTId": "x", "systemDisposition": "CONNECTED"}, "dialledPhone"),
    (END, {**CALL, "unique_id": "0", "systemDisposition": "NO_ANSWER"}, "unique_id"),
    (END, {**CALL, "systemDisposition": "", "hangupCauseCode": ""}, "systemDisposition"),
    ("/call_start.php", {"callId": "1", "userId": "u"}, "displayPhone"),
    ("/call_start.php", {"sessionId": "s-1", "userId": "u", "displayPhone": "1"}, "sessionId"),
]


@pytest.mark.parametrize(("path", "params", "field"), REJECTED, ids=[r[2] + ":" + r[1].get("unique_id", "") for r in REJECTED])
async def test_unroutable_callbacks_answer_400_and_leave_no_gate(path, params, field, fake_tops, sqlite_url):
    node = await start_node(sqlite_url, fake_tops)
    try:
        status, body = await node.get(path, params)
        assert status == 400
        assert body["success"] is False and body["field"] == field and body["error"]
        log = await node.requests()
        assert [(r["outcome"], r["error_field"], r["http_status"], r["request_id"]) for r in log] == [
            ("rejected", field, 400, body["request_id"])]
        assert log[0]["query"] == params  # kept in the audit log as received
        assert await node.count(gate) == 0 and await node.count(phone1_state) == 0
        assert await node.outbox_rows() == []
        # The callback corrected afterwards goes through: nothing was left blocking it.
        if field == "customerCRTId":
            assert (await node.get(path, {**params, "customerCRTId": "d1"}))[0] == 200
            await settled(node)
            assert fake_tops.sends_by_call == {3003: 1}
    finally:
        await stop_node(node)


async def test_values_not_understood_are_forwarded_counted_and_logged(fake_tops, sqlite_url):
    """What the relay forwarded is forwarded: an unknown disposition as written, a code outside the
    table as UNKNOWN (counted), a broken phoneList as the single phone, a time in no known form as
    the arrival time with a warning in the request log."""
    node = await start_node(sqlite_url, fake_tops)
    cases = [
        ({"unique_id": "3101", "systemDisposition": "MOON_PHASE"}, "MOON_PHASE"),
        ({"unique_id": "3102", "hangupCauseCode": "12345"}, "UNKNOWN"),
        ({"unique_id": "3103", "systemDisposition": "NO_ANSWER", "phoneList": "[broken"}, "NO_ANSWER"),
        ({"unique_id": "3104", "systemDisposition": "NO_ANSWER", "callTime": "tomorrow"}, "NO_ANSWER"),
    ]
    try:
        for extra, _ in cases:
            assert (await node.get(END, {**CALL, **extra}))[0] == 200
        await settled(node)
        sent = {r.fields["callId"]: r.fields["errorInfo1"] for r in fake_tops.of("createNotAnswer")}
        assert sent == {int(extra["unique_id"]): status for extra, status in cases}
        assert node.service.health()["fallbacks"] == {"unmapped_hangup_code": 1, "time_not_understood": 1}
        rows = {r["call_id"]: r for r in await node.requests()}
        assert rows["3104"]["decision"]["callTime_from"] == "received (callTime not understood)"
        assert "tomorrow" in rows["3104"]["decision"]["warnings"][0]
        assert rows["3102"]["decision"]["status_from"] == "unmapped_hangupCauseCode"
        assert rows["3103"]["decision"]["phones_from"] == "params_after_bad_phoneList"
    finally:
        await stop_node(node)


async def test_token_required(fake_tops, sqlite_url, caplog):
    node = await start_node(sqlite_url, fake_tops, ameyo=AmeyoConfig(token="s3cret-token-value"))
    params = {**CALL, "systemDisposition": "NO_ANSWER"}
    try:
        with caplog.at_level(logging.WARNING):
            assert (await node.get(END, params))[0] == 401
            assert (await node.get(END, {**params, "token": "wrong"}))[0] == 401
            assert (await node.get(END, params, {"Authorization": "Bearer nope"}))[0] == 401
        assert (await node.get(END, {**params, "token": "s3cret-token-value"}))[0] == 200
        assert (await node.get(END, {**params, "unique_id": "3004"}, {"X-Ameyo-Token": "s3cret-token-value"}))[0] == 200
        status, _ = await node.get(END, {**params, "unique_id": "3005"}, {"Authorization": "Bearer s3cret-token-value"})
        assert status == 200
        log = await node.requests()
        assert len(log) == 3  # refused requests are not recorded
        assert all("token" not in r["query"] for r in log)
        assert "s3cret-token-value" not in json.dumps(log)
        assert "s3cret-token-value" not in caplog.text and "wrong" not in caplog.text
        assert "callback refused" in caplog.text
        assert node.service.health()["counts"]["unauthorized"] == 3
    finally:
        await stop_node(node)


async def test_networks(fake_tops, sqlite_url):
    node = await start_node(sqlite_url, fake_tops, ameyo=AmeyoConfig(allowed_networks=["10.0.0.0/8"]))
    try:
        status, body = await node.get(END, {**CALL, "systemDisposition": "NO_ANSWER"})
        assert (status, body["success"]) == (403, False)
        assert await node.requests() == []
    finally:
        await stop_node(node)
    ameyo = AmeyoConfig(allowed_networks=["127.0.0.0/8"], token="t0ken-xyz")
    node = await start_node(sqlite_url, fake_tops, ameyo=ameyo)
    try:
        assert (await node.get(END, {**CALL, "systemDisposition": "NO_ANSWER"}))[0] == 401
        assert (await node.get(END, {**CALL, "systemDisposition": "NO_ANSWER", "token": "t0ken-xyz"}))[0] == 200
    finally:
        await stop_node(node)


async def test_head_and_post_are_not_callbacks(fake_tops, sqlite_url):
    node = await start_node(sqlite_url, fake_tops)
    try:
        async with node.session.head(node.base_url + END, params=CALL) as resp:
            assert resp.status == 405
        async with node.session.post(node.base_url + END, data=CALL) as resp:
            assert resp.status == 405
        assert await node.requests() == []
    finally:
        await stop_node(node)


async def test_authentication_refusal_dead_letters_and_degrades_health(fake_tops, sqlite_url):
    fake_tops.default = Reply.fail("WTYP0030")
    node = await start_node(sqlite_url, fake_tops)
    try:
        params = {**CALL, "systemDisposition": "NO_ANSWER"}
        assert (await node.get(END, params))[0] == 200
        await settled(node)
        [row] = await node.requests()
        assert (row["outcome"], row["upstream_status"], row["attempts"]) == ("dead", 200, 1)
        assert row["upstream_error"].startswith("WTYP0030")
        assert json.loads(row["upstream_body"])["result"] == "fail"
        assert [r["state"] for r in await node.outbox_rows()] == ["dead"]
        assert set((await node.gates()).values()) == {"failed"}
        health = node.service.health()
        assert health["ok"] is False and health["state"] == "degraded" and health["tops_unhealthy"] is True
        # `failed` blocks nothing, but the dead letter holds the key: no second send without a person.
        assert (await node.get(END, params))[0] == 200
        await settled(node)
        assert fake_tops.sends_by_call == {3003: 1}
        assert [r["outcome"] for r in await node.requests()] == ["dead", "duplicate"]
    finally:
        await stop_node(node)


@pytest.mark.parametrize(("replies", "sends"), [
    ([Reply.fail("WTYP0010", "WPRDEXTC3201"), Reply.fail("WTYP0010", "WPRDEXTC3201")], 3),  # CallEnd overtook CallStart
    ([Reply.fail("ETYP0040")], 2),
    ([Reply.http(500), Reply.http(503)], 3),
    ([Reply.hang()], 2),  # no answer at all: the sender's timeout
])
async def test_transient_failures_are_retried_until_delivered(replies, sends, fake_tops, sqlite_url):
    fake_tops.script(3003, *replies)
    node = await start_node(sqlite_url, fake_tops)
    node.sender.config = node.sender.config.model_copy(update={"timeout_s": 0.3})
    try:
        assert (await node.get(END, {**CALL, "systemDisposition": "NO_ANSWER"}))[0] == 200
        await settled(node, timeout=10)
        assert fake_tops.sends_by_call == {3003: sends}
        assert fake_tops.accepted_by_call == {3003: 1}
        [row] = await node.requests()
        assert (row["outcome"], row["attempts"]) == ("delivered", sends)
        assert set((await node.gates()).values()) == {"processed"}
    finally:
        await stop_node(node)


async def test_call_missing_is_dead_after_the_configured_retries(fake_tops, sqlite_url):
    fake_tops.default = Reply.fail("WTYP0010", "WPRDEXTC3201")
    node = await start_node(sqlite_url, fake_tops)
    try:
        assert (await node.get(END, {**CALL, "systemDisposition": "NO_ANSWER"}))[0] == 200
        await settled(node, timeout=10)
        assert fake_tops.sends_by_call == {3003: 4}  # the first try + tops.call_missing_retries (3)
        [row] = await node.requests()
        assert row["outcome"] == "dead" and node.service.health()["tops_unhealthy"] is False
    finally:
        await stop_node(node)


async def test_reload_changes_the_token(fake_tops, sqlite_url):
    from telephonyd.config import Config

    node = await start_node(sqlite_url, fake_tops)
    params = {**CALL, "systemDisposition": "NO_ANSWER"}
    try:
        assert (await node.get(END, params))[0] == 200
        node.service.reconfigure(Config(ameyo=AmeyoConfig(token="n3w-token")))
        assert (await node.get(END, {**params, "unique_id": "3010"}))[0] == 401
        assert (await node.get(END, {**params, "unique_id": "3010", "token": "n3w-token"}))[0] == 200
    finally:
        await stop_node(node)


async def test_store_too_slow_answers_503_and_the_retry_is_deduped(fake_tops, tmp_path):
    import sqlite3

    path = tmp_path / "telephonyd.db"
    node = await start_node(f"sqlite+aiosqlite:///{path}", fake_tops, ameyo=AmeyoConfig(record_timeout_s=0.3))
    blocker = sqlite3.connect(path, isolation_level=None)
    params = {**CALL, "systemDisposition": "NO_ANSWER"}
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
        status, body = await node.get(END, params)
        assert (status, body["success"]) == (503, False)
        blocker.execute("COMMIT")  # the first callback's transaction now completes
        status, body = await node.get(END, params)  # Ameyo retries
        assert status == 200
        await settled(node)
        assert fake_tops.sends_by_call == {3003: 1}
        assert [r["outcome"] for r in await node.requests()] == ["delivered", "skipped"]
    finally:
        blocker.close()
        await stop_node(node)
