"""Two relay instances (own Store, Outbox, listener) on one MariaDB: one upstream send per callback."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.component.ameyo_harness import settled, start_node, stop_node

pytestmark = pytest.mark.mariadb

END = "/index.php"
TWO = '{"phoneList":["09011112222","08033334444"]}'


def callback(call_id: int, index: int, status: str) -> dict[str, str]:
    return {"unique_id": str(call_id), "customerId": "100", "crtObjectId": f"crt-{call_id}", "userId": "a",
            "systemDisposition": status, "phoneList": TWO, "shareablePhonesDialIndex": str(index),
            "callTime": "2026-03-06 13:50:00"}


async def test_two_instances_on_one_mariadb_send_once(fake_tops, mariadb_url):
    a = await start_node(mariadb_url, fake_tops, node_id="a")
    b = await start_node(mariadb_url, fake_tops, node_id="b")
    try:
        nodes = itertools.cycle([a, b])
        calls = range(7001, 7011)
        # Every call: phone 1 and phone 2, each duplicated, spread over both instances at once.
        requests = [(next(nodes), callback(c, i, s)) for c in calls for i, s in ((0, "NO_ANSWER"), (1, "BUSY"))
                    for _ in range(3)]
        answers = await asyncio.gather(*(node.get(END, params) for node, params in requests))
        assert {status for status, _ in answers} == {200}
        await settled(a, b, timeout=15)
        assert fake_tops.violations == []
        assert fake_tops.sends_by_call == {c: 1 for c in calls}
        # Whether phone 1 or phone 2 won the race, no phone-1 state is left and no call lost a send.
        assert await a.phone1_states() == 0
        rows = await a.outbox_rows()
        assert len(rows) == len(calls) and {r["state"] for r in rows} == {"delivered"}
        # The gate stopped every duplicate itself (the outbox key never had to).
        log = await a.requests()
        assert len(log) == len(requests)
        assert {r["outcome"] for r in log} <= {"combined", "delivered", "skipped"}
    finally:
        await stop_node(a)
        await stop_node(b)


async def test_phone1_on_one_instance_phone2_on_the_other(fake_tops, mariadb_url):
    a = await start_node(mariadb_url, fake_tops, node_id="a")
    b = await start_node(mariadb_url, fake_tops, node_id="b")
    try:
        assert (await a.get(END, callback(8001, 0, "PROVIDER_TEMP_FAILURE")))[0] == 200
        assert (await b.get(END, callback(8001, 1, "NO_ANSWER")))[0] == 200
        await settled(a, b)
        assert [(r.api, r.fields) for r in fake_tops.received] == [
            ("createNotAnswer", {"callId": 8001, "callTime": "2026-03-06 13:50:00",
                                 "errorInfo1": "PROVIDER_TEMP_FAILURE", "errorInfo2": "NO_ANSWER"})]
    finally:
        await stop_node(a)
        await stop_node(b)
